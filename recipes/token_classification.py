"""Token classification (NER): one IOB2 tag per word, scored by entity with seqeval.

build():    read CoNLL-style sentences (IOB1 converted to IOB2), tokenize words into sub-tokens with
            ``datasets.map`` and align the tags (first sub-token labelled, the rest ignored, or all
            with ``dataset.label_all_subtokens``), put a fresh token-classification head on the encoder.
evaluate(): tag a split with the batched tagger; entity precision/recall/F1 overall and per type,
            token accuracy, and which types are confused with which.
"""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from transformers import AutoModelForTokenClassification, DataCollatorForTokenClassification

from pipeline import runs
from pipeline.config import RunConfig
from pipeline.data import load_token_classification
from pipeline.errors import PipelineError
from pipeline.inference import TokenTagger
from pipeline.metrics import entity_metrics, type_confusion, type_confusion_text
from pipeline.models import load_pretrained, load_tokenizer
from pipeline.training import Task

PEFT_TASK_TYPE = "TOKEN_CLS"
METRIC = "f1"
AUTO_CLASS = "AutoModelForTokenClassification"
CLI_EXAMPLE = 'pipeline ner {run} --text "Apple Inc. is looking at buying a U.K. startup."'
IGNORE = -100  # positions the loss and the metrics skip


def build(config: RunConfig) -> Task:
    if config.augment.factor:
        raise PipelineError("augment works on sentence-level labels; token classification would need every "
                            "edit to move its tags too. Set augment.factor=0")
    data = load_token_classification(config.dataset, config.seed)
    splits, label_names = data.splits, data.label_names
    print("data: " + ", ".join(f"{name} {len(split):,}" for name, split in splits.items()) +
          f" sentences; tags: {', '.join(label_names)}")
    tokenizer = load_tokenizer(config.model, config.trust_remote_code)
    if not getattr(tokenizer, "is_fast", False):
        raise PipelineError(f"model {config.model!r} has no fast tokenizer; token classification needs word ids")
    encoded = splits.map(partial(align, tokenizer=tokenizer, max_length=config.dataset.max_length,
                                 label_names=label_names, label_all=config.dataset.label_all_subtokens),
                         batched=True, remove_columns=["tokens", "tags"], desc="tokenizing")
    for name, split in encoded.items():
        cut = int(np.sum(split["truncated"]))
        if cut:
            print(f"data: {cut} {name} sentence(s) longer than max_length {config.dataset.max_length} tokens were "
                  f"truncated; their last words are not trained on and are tagged O at evaluation")
    model = load_pretrained(AutoModelForTokenClassification, config.model, config.trust_remote_code,
                            config.allow_pickle, num_labels=len(label_names),
                            id2label=dict(enumerate(label_names)),
                            label2id={name: i for i, name in enumerate(label_names)})
    return Task(model=model, tokenizer=tokenizer, train_dataset=encoded["train"],
                eval_dataset=encoded["validation"], collator=DataCollatorForTokenClassification(tokenizer),
                compute_metrics=partial(compute_metrics, label_names=label_names), metric=METRIC,
                peft_task_type=PEFT_TASK_TYPE, label_names=label_names,
                eval_splits={name: splits[name] for name in ("validation", "test") if name in splits})


def align(batch: dict[str, list], tokenizer: Any, max_length: int, label_names: list[str],
          label_all: bool) -> dict[str, list]:
    """Sub-token labels from word tags: the first sub-token of a word carries its tag; the others
    carry IGNORE, or (``label_all``) the word's tag with B- turned into I-."""
    encoded = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
    inside = {i: label_names.index("I-" + n[2:]) if n.startswith("B-") and "I-" + n[2:] in label_names else i
              for i, n in enumerate(label_names)}
    labels, truncated = [], []
    for row, tags in enumerate(batch["tags"]):
        previous, row_labels = None, []
        for word in encoded.word_ids(row):
            if word is None:
                row_labels.append(IGNORE)
            elif word != previous:
                row_labels.append(tags[word])
            else:
                row_labels.append(inside[tags[word]] if label_all else IGNORE)
            previous = word
        labels.append(row_labels)
        seen = [w for w in encoded.word_ids(row) if w is not None]
        truncated.append(bool(tags) and (not seen or max(seen) + 1 < len(tags)))
    encoded["labels"] = labels
    encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
    encoded["truncated"] = truncated
    return encoded


def compute_metrics(eval_pred: Any, label_names: list[str]) -> dict[str, float]:
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    predictions = (logits[0] if isinstance(logits, tuple) else logits).argmax(-1)
    true, pred = [], []
    for p_row, l_row in zip(predictions, labels):
        keep = l_row != IGNORE
        true.append([label_names[i] for i in l_row[keep]])
        pred.append([label_names[i] for i in p_row[keep]])
    metrics = entity_metrics(true, pred)
    return {k: v for k, v in metrics.items() if isinstance(v, float)}


def evaluate(model: Any, tokenizer: Any, config: RunConfig, label_names: list[str], split: Any,
             run_dir: Path, split_name: str) -> dict[str, Any]:
    """Tag one split word by word and record entity-level scores in the run folder."""
    tagger = TokenTagger(model, tokenizer, label_names, config.dataset.max_length)
    sentences = [list(words) for words in split["tokens"]]
    predicted, _, truncated = tagger.tag_words(sentences)
    gold = [[label_names[t] for t in tags] for tags in split["tags"]]
    metrics = entity_metrics(gold, predicted)
    confusion = type_confusion(gold, predicted)
    runs.save_metrics(run_dir, {split_name: {**metrics, "sentences": len(gold), "truncated": truncated,
                                             "type_confusion": confusion}})
    text = type_confusion_text(confusion)
    suffix = "" if split_name == "validation" else f"_{split_name}"
    (run_dir / f"entity_confusion{suffix}.txt").write_text(text + "\n", encoding="utf-8")
    print(f"{split_name}: entity precision {metrics['precision']:.4f} | recall {metrics['recall']:.4f} | "
          f"f1 {metrics['f1']:.4f} | token accuracy {metrics['token_accuracy']:.4f}")
    for kind, scores in metrics["per_type"].items():
        print(f"  {kind:16s} f1 {scores['f1']:.4f}  (support {scores['support']})")
    print(text)
    return metrics


def evaluate_run(run_dir: Path, split_name: str, batch_size: int = 32) -> dict[str, Any]:
    config = runs.load_run_config(run_dir)
    tagger = TokenTagger.from_run(run_dir, batch_size=batch_size)
    data = load_token_classification(config.dataset, config.seed)
    if split_name not in data.splits:
        raise PipelineError(f"the run's data has no {split_name} split (splits: {', '.join(data.splits)})")
    if data.label_names != tagger.label_names:
        raise PipelineError(f"the data's tags differ from the run's ({json.dumps(tagger.label_names)}); "
                            f"evaluate on the data the run was trained on")
    return evaluate(tagger.model, tagger.tokenizer, config, tagger.label_names, data.splits[split_name],
                    Path(run_dir), split_name)
