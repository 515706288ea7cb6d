"""Metrics: classification scores, the confusion matrix as text and as a picture.

Scores come from scikit-learn, which computes them locally (``evaluate.load`` would fetch metric
scripts from the Hub).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def classification_metrics(labels: Sequence[int], predictions: Sequence[int],
                           label_names: Sequence[str]) -> dict[str, float]:
    """Accuracy, precision, recall, F1: binary (positive class = id 1) for two classes, else macro
    averages plus one score per class."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    labels, predictions = np.asarray(labels), np.asarray(predictions)
    ids = list(range(len(label_names)))
    result = {"accuracy": float(accuracy_score(labels, predictions))}
    if len(label_names) == 2:
        p, r, f, _ = precision_recall_fscore_support(labels, predictions, average="binary", pos_label=1,
                                                     labels=ids, zero_division=0)
        result.update(precision=float(p), recall=float(r), f1=float(f))
        return result
    p, r, f, _ = precision_recall_fscore_support(labels, predictions, average="macro", labels=ids, zero_division=0)
    result.update(precision=float(p), recall=float(r), f1=float(f))
    per_p, per_r, per_f, _ = precision_recall_fscore_support(labels, predictions, average=None, labels=ids,
                                                             zero_division=0)
    for i, name in enumerate(label_names):
        result[f"f1_{name}"] = float(per_f[i])
    return result


def confusion(labels: Sequence[int], predictions: Sequence[int], n_labels: int) -> list[list[int]]:
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(labels, predictions, labels=list(range(n_labels))).tolist()


def confusion_text(matrix: list[list[int]], label_names: Sequence[str]) -> str:
    """Rows are true labels, columns predicted."""
    width = max(8, *(len(n) for n in label_names), *(len(str(v)) for row in matrix for v in row))
    lines = ["true \\ pred".ljust(width) + " " + " ".join(n.rjust(width) for n in label_names)]
    for name, row in zip(label_names, matrix):
        lines.append(name.ljust(width) + " " + " ".join(str(v).rjust(width) for v in row))
    return "\n".join(lines)


def plot_confusion(matrix: list[list[int]], label_names: Sequence[str], path: str | Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    size = max(4.0, 0.6 * len(label_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=list(label_names)).plot(
        ax=ax, cmap="Blues", colorbar=False, values_format="d")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
