"""Accuracy, precision, recall and F1 of a classifier, exactly as finetune-pipeline records them:
binary (positive class = id 1) for two classes, else macro averages plus one F1 per class."""
import datasets
import evaluate

from pipeline.metrics.scores import classification_metrics


class Classification(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=__doc__, citation="", inputs_description="predictions and references: label ids; "
            "num_labels: how many classes (default: the largest id seen + 1)",
            features=datasets.Features({"predictions": datasets.Value("int64"),
                                        "references": datasets.Value("int64")}))

    def _compute(self, predictions, references, num_labels=None):
        num_labels = num_labels or max(max(predictions), max(references)) + 1
        return classification_metrics(references, predictions, [str(i) for i in range(num_labels)])
