"""Extractive question answering at inference: answers decoded from start and end logits over every
window of a context, and the engine behind ``pipeline qa``, ``evaluate``, ``serve``'s ``/qa`` and
``pipeline.load`` on a QA run, on any backend.

Decoding follows the Hugging Face ``run_qa.py`` example: in each window the ``n_best`` highest start
and end logits form candidate spans inside the context, at most ``max_answer_length`` tokens long,
scored by start + end logit; the best over all windows wins, mapped back to an exact character span
of the context. With ``version_2`` the null answer (both logits on the first token, the lowest over
the windows) wins when it beats the best span by more than ``null_threshold``. Scores are the
softmax over the kept candidates.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline.data.question_answering import context_offsets, windows
from pipeline.errors import PipelineError
from pipeline.inference.backends import Runner, TorchRunner, load_engine
from pipeline.runs import run_folder
from pipeline.runs.loading import LoadOptions

AUTO_CLASS = "AutoModelForQuestionAnswering"


@dataclass(frozen=True)
class Decoding:
    """How answers are read from the logits (the run's ``qa`` settings)."""
    max_answer_length: int = 30
    n_best: int = 20
    version_2: bool = False
    null_threshold: float = 0.0

    @classmethod
    def of(cls, qa: Any) -> "Decoding":
        return cls(qa.max_answer_length, qa.n_best, qa.version_2, qa.null_threshold)


def decode(context: str, logits: Sequence[np.ndarray], offsets: Sequence[Sequence[Any]],
           decoding: Decoding) -> list[dict[str, Any]]:
    """The n-best answers to one question from its windows' logits ((tokens, 2) each: start, end) and
    character offsets (None off the context), best first: ``{"answer", "score", "start", "end"}``,
    ``context[start:end] == answer``; the null answer is ``{"answer": "", "start": 0, "end": 0}``."""
    candidates: dict[tuple[int, int], float] = {}
    null = None
    for window_logits, window_offsets in zip(logits, offsets):
        tokens = min(len(window_offsets), len(window_logits))
        start_logits, end_logits = window_logits[:tokens, 0], window_logits[:tokens, 1]
        here = float(start_logits[0] + end_logits[0])
        null = here if null is None else min(null, here)
        starts = np.argsort(-start_logits)[:decoding.n_best]
        ends = np.argsort(-end_logits)[:decoding.n_best]
        for s in starts:
            if window_offsets[s] is None:
                continue
            for e in ends:
                if window_offsets[e] is None or e < s or e - s + 1 > decoding.max_answer_length:
                    continue
                span = (int(window_offsets[s][0]), int(window_offsets[e][1]))
                score = float(start_logits[s] + end_logits[e])
                if score > candidates.get(span, -np.inf):
                    candidates[span] = score
    ranked = sorted(candidates.items(), key=lambda item: -item[1])[:decoding.n_best]
    answers = [(context[a:b], score, a, b) for (a, b), score in ranked]
    if decoding.version_2 and null is not None:
        best_span = answers[0][1] if answers else -np.inf
        no_answer = ("", null, 0, 0)
        answers = [no_answer, *answers] if null - best_span > decoding.null_threshold else [*answers, no_answer]
    if not answers:
        return [{"answer": "", "score": 0.0, "start": 0, "end": 0}]
    scores = np.array([score for _, score, _, _ in answers])
    probabilities = np.exp(scores - scores.max())
    probabilities /= probabilities.sum()
    return [{"answer": text, "score": float(p), "start": a, "end": b}
            for (text, _, a, b), p in zip(answers, probabilities)]


class QuestionAnswerer:
    """Questions with their contexts in, answers out: windows batched by length on any backend."""

    def __init__(self, runner: Runner, tokenizer: Any, max_length: int, doc_stride: int, decoding: Decoding,
                 batch_size: int = 32):
        self.runner = runner if hasattr(runner, "backend") else TorchRunner(runner)
        self.tokenizer, self.max_length, self.doc_stride = tokenizer, max_length, doc_stride
        self.decoding, self.batch_size = decoding, batch_size

    @classmethod
    def from_run(cls, run_dir: str | Path, batch_size: int | None = None, max_length: int | None = None,
                 options: LoadOptions = LoadOptions()) -> "QuestionAnswerer":
        """Load a finished QA run; ``batch_size`` defaults to 32 windows (128 on a GPU)."""
        config = run_folder.load_run_config(run_dir)
        engine = load_engine(run_dir, AUTO_CLASS, None, options)
        return cls(engine.runner, engine.tokenizer, max_length or engine.max_length, config.qa.doc_stride,
                   Decoding.of(config.qa), batch_size or engine.batch_size(32))

    def n_best(self, questions: Sequence[str], contexts: Sequence[str]) -> list[list[dict[str, Any]]]:
        """The ranked answers to each question (``Decoding.n_best`` at most)."""
        questions, contexts = check_pairs(questions, contexts)
        encoded = windows(self.tokenizer, questions, contexts, self.max_length, self.doc_stride)
        example = encoded["overflow_to_sample_mapping"]
        lengths = [len(ids) for ids in encoded["input_ids"]]
        order = np.argsort([-n for n in lengths], kind="stable")
        groups = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        names = [name for name in encoded if name not in ("offset_mapping", "overflow_to_sample_mapping")]
        batches = [dict(self.tokenizer.pad({k: [encoded[k][i] for i in idx] for k in names}, return_tensors="np"))
                   for idx in groups]
        logits: list[np.ndarray | None] = [None] * len(lengths)
        for idx, out in zip(groups, self.runner.run_batches(batches)):
            for row, i in enumerate(idx):
                logits[i] = out[row, :lengths[i]]
        per_question: list[list[int]] = [[] for _ in questions]
        for i, q in enumerate(example):
            per_question[q].append(i)
        return [decode(contexts[q], [logits[i] for i in found], [context_offsets(encoded, i) for i in found],
                       self.decoding) for q, found in enumerate(per_question)]

    def answers(self, questions: Sequence[str], contexts: Sequence[str], top_k: int | None = None) -> list[Any]:
        """Per question ``{"question", "answer", "score", "start", "end"}``, or with ``top_k`` a list of
        the k best such dicts."""
        if top_k is not None and top_k <= 0:
            raise PipelineError(f"--top-k must be positive, got {top_k}")
        ranked = self.n_best(questions, contexts)
        if top_k is None:
            return [{"question": q, **best[0]} for q, best in zip(questions, ranked)]
        return [[{"question": q, **a} for a in best[:top_k]] for q, best in zip(questions, ranked)]


def check_pairs(questions: Sequence[Any], contexts: Sequence[Any]) -> tuple[list[str], list[str]]:
    questions, contexts = list(questions), list(contexts)
    if not questions:
        raise PipelineError("no questions to answer; give --question with --context, or --file")
    if len(questions) != len(contexts):
        raise PipelineError(f"{len(questions)} questions but {len(contexts)} contexts; give one context per question")
    for i, (question, context) in enumerate(zip(questions, contexts)):
        for what, text in (("question", question), ("context", context)):
            if not isinstance(text, str):
                raise PipelineError(f"{what} {i + 1} is a {type(text).__name__}, not a string")
            if not text.strip():
                raise PipelineError(f"{what} {i + 1} is empty; give some words")
    return questions, contexts
