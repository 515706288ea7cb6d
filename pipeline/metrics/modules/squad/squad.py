"""Extractive question answering: exact match and F1 in percent, best over each question's reference
answers, with the official SQuAD v1.1 normalisation (unit "word") or JGLUE's character F1 for
Japanese (unit "char"); version_2 adds the HasAns / NoAns split. The numbers finetune-pipeline records."""
import datasets
import evaluate

from pipeline.metrics.squad import squad_metrics


class Squad(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=__doc__, citation="", inputs_description="predictions: answer strings (\"\" for no "
            "answer); references: lists of reference answers (empty: no answer); unit: word or char; version_2",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Sequence(datasets.Value("string"))}))

    def _compute(self, predictions, references, unit="word", version_2=False):
        return squad_metrics(predictions, references, unit, version_2)
