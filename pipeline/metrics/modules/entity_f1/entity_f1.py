"""Entity-level precision, recall and F1 (seqeval, strict IOB2 spans) and token accuracy, exactly as
finetune-pipeline records them for token classification."""
import datasets
import evaluate

from pipeline.metrics.scores import entity_metrics


class EntityF1(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=__doc__, citation="", inputs_description="predictions and references: one list of "
            "IOB2 tags per sentence",
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("string")),
                                        "references": datasets.Sequence(datasets.Value("string"))}))

    def _compute(self, predictions, references):
        scores = entity_metrics([list(r) for r in references], [list(p) for p in predictions])
        return {key: scores[key] for key in ("precision", "recall", "f1", "token_accuracy")}
