"""Extractive QA scores: exact match and F1, best over a question's reference answers, in percent.

``word``: the official SQuAD v1.1 evaluation script: lower case, drop punctuation and the articles
a/an/the, collapse whitespace; F1 over the words both share. ``char``: JGLUE's convention for
Japanese, which puts no spaces between words: strip whitespace and a trailing "。"; F1 over the
characters both share. SQuAD v2 questions with no answer are right when the prediction is "" too,
and v2 reports the answerable (HasAns) and unanswerable (NoAns) questions apart.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from typing import Sequence

UNITS = ("word", "char")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize(text: str, unit: str = "word") -> str:
    if unit == "char":
        return re.sub(r"\s+", "", text).rstrip("。")
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _pieces(text: str, unit: str) -> list[str]:
    normal = normalize(text, unit)
    return list(normal) if unit == "char" else normal.split()


def exact_match(prediction: str, reference: str, unit: str = "word") -> float:
    return float(normalize(prediction, unit) == normalize(reference, unit))


def f1(prediction: str, reference: str, unit: str = "word") -> float:
    predicted, expected = _pieces(prediction, unit), _pieces(reference, unit)
    if not predicted or not expected:  # a no-answer matches only a no-answer
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(predictions: Sequence[str], references: Sequence[Sequence[str]], unit: str = "word",
                  version_2: bool = False) -> dict[str, float]:
    """``exact_match`` and ``f1`` in percent over the questions (each the best over its references; a
    question with no reference answer expects ""); with ``version_2`` also HasAns_/NoAns_ scores."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, not {unit!r}")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} questions")
    scored = []
    for prediction, answers in zip(predictions, references):
        answers = list(answers) or [""]
        scored.append((bool(answers[0]), max(exact_match(prediction, a, unit) for a in answers),
                       max(f1(prediction, a, unit) for a in answers)))
    out = _percent(scored)
    if version_2:
        for name, keep in (("HasAns", True), ("NoAns", False)):
            part = [s for s in scored if s[0] == keep]
            if part:
                em, score = _percent(part).values()
                out.update({f"{name}_exact": em, f"{name}_f1": score, f"{name}_total": float(len(part))})
    return out


def _percent(scored: list[tuple[bool, float, float]]) -> dict[str, float]:
    n = max(len(scored), 1)
    return {"exact_match": round(100 * sum(s[1] for s in scored) / n, 4),
            "f1": round(100 * sum(s[2] for s in scored) / n, 4)}
