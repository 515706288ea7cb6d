"""Extractive question answering: the answer to a question is a span of its context (SQuAD).

build():    load and check the questions, cut each context into overlapping windows with
            ``datasets.map`` (the window holding the answer points at its tokens, the others at
            [CLS]; batches padded to their own longest window), put a fresh span head
            (``AutoModelForQuestionAnswering``) on the encoder. Exact match and F1 over whole
            questions pick the best checkpoint.
evaluate_run(): reload a finished run, answer a split's questions with the engine that ``pipeline qa``
            and ``serve`` use, record exact match and F1 and write every question's n-best answers.
"""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from transformers import DataCollatorWithPadding

from pipeline.config.schema import RunConfig
from pipeline.data.question_answering import eval_windows, load_question_answering, train_windows
from pipeline.errors import PipelineError
from pipeline.inference.question_answering import Decoding, QuestionAnswerer, decode
from pipeline.log import log
from pipeline.metrics.squad import squad_metrics
from pipeline.models.pretrained import load_pretrained, load_tokenizer
from pipeline.recipe import Recipe, Task
from pipeline.runs import run_folder
from pipeline.runs.loading import LoadOptions


class QuestionAnswering(Recipe):
    name = "question_answering"
    summary = "answers as spans of a context (SQuAD), exact match and F1; full, head or any peft method but prompt"
    auto_class = "AutoModelForQuestionAnswering"
    peft_task_type = "QUESTION_ANS"
    fresh_head = True
    metric = "f1"
    commands = frozenset({"train", "evaluate", "compare", "tune", "qa", "serve", "inspect", "export", "push"})
    usage = 'pipeline qa {run} --question "Who wrote it?" --context "It was written by Ada Lovelace in 1843."'
    augment_refusal = "augment edits words, which would move every answer span"

    def build(self, config: RunConfig) -> Task:
        data = load_question_answering(config.dataset, config.seed, config.qa.f1_unit)
        splits = data.splits
        log.info("data: " + ", ".join(f"{name} {len(split):,}" for name, split in splits.items()) + " questions"
                 + "".join(f"; {n:,} {name} questions have no answer" for name, n in data.unanswerable.items() if n))
        tokenizer = qa_tokenizer(config.model, config.trust_remote_code)
        max_length, stride = config.dataset.max_length, config.qa.doc_stride
        columns = splits["train"].column_names
        train = splits["train"].map(partial(train_windows, tokenizer=tokenizer, max_length=max_length,
                                            doc_stride=stride), batched=True, remove_columns=columns,
                                    desc="windows (train)")
        validation = splits["validation"]
        eval_features = validation.map(partial(eval_windows, tokenizer=tokenizer, max_length=max_length,
                                               doc_stride=stride), batched=True, with_indices=True,
                                       remove_columns=columns, desc="windows (validation)")
        log.info(window_report(train, len(splits["train"]), max_length, stride))
        model = load_pretrained(self.model_class(config), config.model, config.trust_remote_code, config.allow_pickle)
        decoding, unit = Decoding.of(config.qa), data.f1_unit
        score = partial(score_model, tokenizer=tokenizer, rows=validation, max_length=max_length, stride=stride,
                        decoding=decoding, unit=unit)
        return Task(model=model, tokenizer=tokenizer, train_dataset=train, eval_dataset=eval_features,
                    collator=DataCollatorWithPadding(tokenizer),
                    compute_metrics=partial(compute_metrics, features=eval_features, rows=validation,
                                            decoding=decoding, unit=unit),
                    final_splits=tuple(name for name in ("validation", "test") if name in splits), score=score)

    def training_defaults(self, config: RunConfig) -> dict[str, Any]:
        return {"label_names": ["start_positions", "end_positions"]}

    def evaluate_run(self, run_dir: Path, split: str, batch_size: int | None = None,
                     options: LoadOptions = LoadOptions()) -> dict[str, Any]:
        config = run_folder.load_run_config(run_dir)
        answerer = QuestionAnswerer.from_run(run_dir, batch_size=batch_size, options=options)
        data = load_question_answering(config.dataset, config.seed, config.qa.f1_unit)
        if split not in data.splits:
            raise PipelineError(f"the run's data has no {split} split (splits: {', '.join(data.splits)})")
        rows = data.splits[split]
        ranked = answerer.n_best(rows["question"], rows["context"])
        metrics = squad_metrics([r[0]["answer"] for r in ranked], [a["text"] for a in rows["answers"]],
                                data.f1_unit, config.qa.version_2)
        metrics["questions"] = len(rows)
        run_folder.save_metrics(Path(run_dir), {split: metrics})
        name = "qa_predictions" + ("" if split == "validation" else f"_{split}") + ".jsonl"
        with open(Path(run_dir) / name, "w", encoding="utf-8") as out:
            for row, answers in zip(rows, ranked):
                out.write(json.dumps({"id": row["id"], "question": row["question"], **answers[0],
                                      "references": row["answers"]["text"], "n_best": answers},
                                     ensure_ascii=False) + "\n")
        run_folder.record_outputs(Path(run_dir), [run_folder.METRICS_FILE, name])
        log.info(f"{split}: exact_match {metrics['exact_match']:.2f} | f1 {metrics['f1']:.2f} "
                 f"({len(rows):,} questions; answers with their n-best in {name})")
        return metrics


def qa_tokenizer(model: str, trust_remote_code: bool) -> Any:
    """The model's tokenizer, which must give character offsets (a fast tokenizer) to map answers back."""
    tokenizer = load_tokenizer(model, trust_remote_code)
    if not getattr(tokenizer, "is_fast", False):
        raise PipelineError(f"question answering maps answers to characters through the tokenizer's offsets, "
                            f"which {type(tokenizer).__name__} (a slow tokenizer) does not give; choose a model "
                            f"with a fast tokenizer (tokenizer.json)")
    if getattr(tokenizer, "padding_side", "right") != "right":
        tokenizer.padding_side = "right"  # windows put the question first and pad after the context
    return tokenizer


def window_report(train: Any, questions: int, max_length: int, stride: int) -> str:
    answered = int(np.sum(np.asarray(train["start_positions"]) > 0))
    return (f"windows: {len(train):,} training windows from {questions:,} questions at max_length {max_length}, "
            f"doc_stride {stride}; {answered:,} hold their answer, the rest point at [CLS]")


def decode_all(features: Any, rows: Any, starts: np.ndarray, ends: np.ndarray, decoding: Decoding) -> list[str]:
    """The best answer to each question from the logits of every evaluation window."""
    per_question: list[list[int]] = [[] for _ in range(len(rows))]
    for i, example in enumerate(features["example"]):
        per_question[example].append(i)
    offsets, contexts = features["offsets"], rows["context"]
    return [decode(contexts[q], [np.stack([starts[i], ends[i]], -1) for i in found],
                   [offsets[i] for i in found], decoding)[0]["answer"] for q, found in enumerate(per_question)]


def compute_metrics(eval_pred: Any, features: Any, rows: Any, decoding: Decoding, unit: str) -> dict[str, float]:
    starts, ends = eval_pred.predictions[:2]
    answers = decode_all(features, rows, np.asarray(starts), np.asarray(ends), decoding)
    return squad_metrics(answers, [a["text"] for a in rows["answers"]], unit, decoding.version_2)


def score_model(model: Any, tokenizer: Any, rows: Any, max_length: int, stride: int, decoding: Decoding,
                unit: str) -> dict[str, float]:
    """The model in memory (before training: its fresh head) scored on the validation questions."""
    from pipeline.models.span_logits import span_logits

    answerer = QuestionAnswerer(span_logits(model.eval()), tokenizer, max_length, stride, decoding)
    ranked = answerer.n_best(rows["question"], rows["context"])
    return squad_metrics([r[0]["answer"] for r in ranked], [a["text"] for a in rows["answers"]], unit,
                         decoding.version_2)


RECIPE = QuestionAnswering()
