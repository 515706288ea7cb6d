"""Sequence classification: one label per text (sentiment first).

build():    load and check the data, tokenize it with ``datasets.map`` (batched; no padding here: the
            collator pads each batch to its own longest text), put a fresh classification head on
            the encoder.
evaluate_run(): reload a finished run and score a split with the batched inference engine (what
            ``pipeline evaluate`` and the end of training both call), write metrics and the confusion matrix.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from transformers import DataCollatorWithPadding

from pipeline.config.schema import RunConfig
from pipeline.data.augment import augment_split
from pipeline.data.tasks import load_text_classification, run_split, split_summary
from pipeline.errors import PipelineError
from pipeline.inference.engines import TextClassifier
from pipeline.log import log
from pipeline.metrics.scores import (
    classification_metrics,
    confusion,
    confusion_text,
    plot_confusion,
)
from pipeline.models.pretrained import load_pretrained, load_tokenizer
from pipeline.recipe import Recipe, Task
from pipeline.runs import run_folder
from pipeline.runs.loading import LoadOptions, label_kwargs


class SequenceClassification(Recipe):
    name = "sequence_classification"
    summary = "one label per text (sentiment, topics); full, head or any peft method"
    auto_class = "AutoModelForSequenceClassification"
    peft_task_type = "SEQ_CLS"
    fresh_head = True
    metric = "accuracy"
    commands = frozenset({"train", "evaluate", "compare", "tune", "predict", "serve", "inspect", "export", "push"})
    usage = 'pipeline predict {run} --text "A true cinematic achievement!"'
    augments = True

    def build(self, config: RunConfig) -> Task:
        data = load_text_classification(config.dataset, config.seed)
        splits, label_names = data.splits, data.label_names
        log.info(split_summary(splits, label_names))
        tokenizer = load_tokenizer(config.model, config.trust_remote_code)
        if config.augment.factor:
            before = len(splits["train"])
            splits["train"] = augment_split(splits["train"], config.augment, config.seed, tokenizer)
            log.info(f"augment: {before:,} training rows + {len(splits['train']) - before:,} augmented copies")
        max_length = config.dataset.max_length
        model_limit = getattr(tokenizer, "model_max_length", None) or 10**9
        if max_length > model_limit:
            raise PipelineError(f"dataset.max_length={max_length} exceeds the model's limit of {model_limit} tokens; "
                                f"set dataset.max_length={model_limit} or less")
        encoded = tokenize(splits.filter(lambda row: row["label"] >= 0), tokenizer, max_length)
        log.info(length_report(encoded["train"], max_length))
        model = load_pretrained(self.model_class(config), config.model, config.trust_remote_code,
                                config.allow_pickle, **label_kwargs(label_names))
        if tokenizer.pad_token is None:  # decoders (Llama, GPT-2) ship without one
            tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
        labelled = tuple(name for name, split in splits.items()
                         if name != "train" and len(split) and min(split["label"]) >= 0)
        return Task(model=model, tokenizer=tokenizer, train_dataset=encoded["train"],
                    eval_dataset=encoded["validation"], collator=DataCollatorWithPadding(tokenizer),
                    compute_metrics=partial(compute_metrics, label_names=label_names), label_names=label_names,
                    final_splits=labelled)

    def evaluate_run(self, run_dir: Path, split: str, batch_size: int | None = None,
                     options: LoadOptions = LoadOptions()) -> dict[str, Any]:
        config = run_folder.load_run_config(run_dir)
        classifier = TextClassifier.from_run(run_dir, batch_size=batch_size, options=options)
        rows, label_names = run_split(config, split, load_text_classification)
        if min(rows["label"]) < 0:
            raise PipelineError(f"the {split} split has no labels (GLUE test sets are unlabelled); "
                                f"use pipeline predict for its predictions")
        if label_names != classifier.label_names:
            raise PipelineError(f"the data's labels {label_names} differ from the run's "
                                f"{classifier.label_names}; evaluate on the data the run was trained on")
        return record_scores(classifier, rows, Path(run_dir), split)


def tokenize(splits: Any, tokenizer: Any, max_length: int) -> Any:
    """Token ids truncated at ``max_length``; ``length`` feeds length-grouped batching and
    ``full_length`` (before truncation) the length report."""

    def encode(batch: dict[str, list]) -> dict[str, list]:
        encoded = tokenizer(batch["text"], truncation=True, max_length=max_length)
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        encoded["full_length"] = tokenizer(batch["text"], return_length=True, return_attention_mask=False,
                                           return_token_type_ids=False, verbose=False)["length"]
        return encoded

    return splits.map(encode, batched=True, remove_columns=["text"], desc="tokenizing")


def length_report(split: Any, max_length: int) -> str:
    lengths = np.asarray(split["full_length"])
    truncated = float((lengths > max_length).mean())
    return (f"tokens per text: mean {lengths.mean():.1f}, p95 {np.percentile(lengths, 95):.0f}, "
            f"max {lengths.max()}; {truncated:.1%} truncated at max_length {max_length}")


def compute_metrics(eval_pred: Any, label_names: list[str]) -> dict[str, float]:
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    logits = logits[0] if isinstance(logits, tuple) else logits
    return classification_metrics(labels, logits.argmax(-1), label_names)


def record_scores(classifier: TextClassifier, rows: Any, run_dir: Path, split_name: str) -> dict[str, Any]:
    """Score one labelled split and record it in the run folder: metrics.json and the confusion matrix."""
    label_names = classifier.label_names
    predictions = classifier.probabilities(rows["text"]).argmax(-1)
    labels = np.asarray(rows["label"])
    metrics = classification_metrics(labels, predictions, label_names)
    matrix = confusion(labels, predictions, len(label_names))
    run_folder.save_metrics(run_dir, {split_name: {**metrics, "rows": len(labels), "confusion_matrix": matrix}})
    stem = "confusion_matrix" + ("" if split_name == "validation" else f"_{split_name}")
    text = confusion_text(matrix, label_names)
    (run_dir / f"{stem}.txt").write_text(text + "\n", encoding="utf-8")
    plot_confusion(matrix, label_names, run_dir / f"{stem}.png", f"{run_dir.name}: {split_name} ({len(labels)} rows)")
    run_folder.record_outputs(run_dir, [run_folder.METRICS_FILE, f"{stem}.txt", f"{stem}.png"])
    log.info(f"{split_name}: " + " | ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    log.info(text)
    return metrics


RECIPE = SequenceClassification()
