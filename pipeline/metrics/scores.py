"""Metrics: classification scores, the confusion matrix as text and as a picture.

Scores come from scikit-learn, which computes them locally (``evaluate.load`` would fetch metric
scripts from the Hub).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

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


def entity_metrics(true_tags: list[list[str]], pred_tags: list[list[str]]) -> dict[str, Any]:
    """Entity-level precision/recall/F1 (seqeval, strict IOB2 spans) overall and per type, and token
    accuracy."""
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2

    report = classification_report(true_tags, pred_tags, mode="strict", scheme=IOB2, output_dict=True,
                                   zero_division=0)
    tokens = [(t, p) for ts, ps in zip(true_tags, pred_tags) for t, p in zip(ts, ps)]
    result: dict[str, Any] = {
        "precision": float(report["micro avg"]["precision"]),
        "recall": float(report["micro avg"]["recall"]),
        "f1": float(report["micro avg"]["f1-score"]),
        "token_accuracy": sum(t == p for t, p in tokens) / max(len(tokens), 1),
    }
    result["per_type"] = {name: {"precision": float(v["precision"]), "recall": float(v["recall"]),
                                 "f1": float(v["f1-score"]), "support": int(v["support"])}
                          for name, v in report.items() if "avg" not in name}
    return result


def entity_spans(tags: list[str]) -> list[tuple[int, int, str]]:
    """(start, end exclusive, type) of each IOB2 entity; a stray I- starts an entity too."""
    spans = []
    start, kind = None, None
    for i, tag in enumerate(list(tags) + ["O"]):
        inside = tag.startswith("I-") and kind == tag[2:]
        if start is not None and not inside:
            spans.append((start, i, kind))
            start, kind = None, None
        if tag.startswith("B-") or (tag.startswith("I-") and not inside):
            start, kind = i, tag[2:]
    return spans


def type_confusion(true_tags: list[list[str]], pred_tags: list[list[str]]) -> dict[str, dict[str, int]]:
    """For each gold entity type, what the prediction on the same words was: the same type, another
    type (a span match with the wrong type), a partial overlap, or missed ("O")."""
    table: dict[str, dict[str, int]] = {}
    for gold, pred in zip(true_tags, pred_tags):
        predicted = {(s, e): k for s, e, k in entity_spans(pred)}
        for s, e, kind in entity_spans(gold):
            if (s, e) in predicted:
                outcome = predicted[(s, e)]
            elif any(p.startswith(("B-", "I-")) for p in pred[s:e]):
                outcome = "partial"
            else:
                outcome = "O"
            row = table.setdefault(kind, {})
            row[outcome] = row.get(outcome, 0) + 1
    return table


def type_confusion_text(table: dict[str, dict[str, int]]) -> str:
    columns = sorted({c for row in table.values() for c in row} - {"O", "partial"}) + ["partial", "O"]
    width = max(10, *(len(c) for c in columns), *(len(k) for k in table))
    lines = ["gold \\ predicted".ljust(width) + " " + " ".join(c.rjust(width) for c in columns)]
    for kind in sorted(table):
        lines.append(kind.ljust(width) + " " + " ".join(str(table[kind].get(c, 0)).rjust(width) for c in columns))
    return "\n".join(lines)


def plot_curves(log_path: str | Path, path: str | Path, metric: str) -> None:
    """Training loss and the validation metric against the step, from the run's metrics.jsonl."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    evals = [(r["step"], r[f"eval_{metric}"]) for r in records if f"eval_{metric}" in r]
    fig, loss_ax = plt.subplots(figsize=(7, 4))
    if train:
        loss_ax.plot(*zip(*train), color="tab:blue", label="training loss")
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("training loss", color="tab:blue")
    if evals:
        metric_ax = loss_ax.twinx()
        metric_ax.plot(*zip(*evals), color="tab:orange", marker="o", label=f"validation {metric}")
        metric_ax.set_ylabel(f"validation {metric}", color="tab:orange")
    loss_ax.set_title(f"{Path(path).parent.name}: training curves")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
