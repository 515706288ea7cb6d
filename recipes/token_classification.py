"""Token classification (NER): one IOB2 tag per word, scored by entity with seqeval.

build():    read CoNLL-style sentences (IOB1 converted to IOB2), tokenize words into sub-tokens with
            ``datasets.map`` and align the tags (first sub-token labelled, the rest ignored, or all
            with ``dataset.label_all_subtokens``), put a fresh token-classification head on the encoder.
evaluate_run(): reload a finished run and tag a split with the batched tagger; entity precision/recall/F1 overall and per type,
            token accuracy, and which types are confused with which.
"""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from transformers import DataCollatorForTokenClassification

from pipeline.config.schema import RunConfig
from pipeline.data.tasks import load_token_classification, run_split, split_summary
from pipeline.data.words import encode_words, require_word_alignment
from pipeline.errors import PipelineError
from pipeline.inference.engines import TokenTagger
from pipeline.log import log
from pipeline.metrics.scores import entity_metrics, type_confusion, type_confusion_text
from pipeline.models.pretrained import load_pretrained, load_tokenizer
from pipeline.recipe import Recipe, Task
from pipeline.runs import run_folder
from pipeline.runs.loading import LoadOptions, label_kwargs

IGNORE = -100  # positions the loss and the metrics skip


class TokenClassification(Recipe):
    name = "token_classification"
    summary = "one tag per word (NER, IOB2), entity-level F1 with seqeval; full, head or peft"
    auto_class = "AutoModelForTokenClassification"
    peft_task_type = "TOKEN_CLS"
    fresh_head = True
    metric = "f1"
    commands = frozenset({"train", "evaluate", "compare", "tune", "ner", "inspect", "export", "push"})
    usage = 'pipeline ner {run} --text "Apple Inc. is looking at buying a U.K. startup."'
    augment_refusal = ("augment works on sentence-level labels; token classification would need every edit to "
                       "move its tags too")

    def build(self, config: RunConfig) -> Task:
        data = load_token_classification(config.dataset, config.seed)
        splits, label_names = data.splits, data.label_names
        log.info(split_summary(splits, label_names, unit="sentences", labels="tags"))
        tokenizer = word_tokenizer(config.model, config.trust_remote_code)
        encoded = splits.map(partial(align, tokenizer=tokenizer, max_length=config.dataset.max_length,
                                     label_names=label_names, label_all=config.dataset.label_all_subtokens),
                             batched=True, remove_columns=["tokens", "tags"], desc="tokenizing")
        for name, split in encoded.items():
            cut = int(np.sum(split["truncated"]))
            if cut:
                log.info(f"data: {cut} {name} sentence(s) longer than max_length {config.dataset.max_length} tokens "
                      f"were truncated; their last words are not trained on and are tagged O at evaluation")
        model = load_pretrained(self.model_class(config), config.model, config.trust_remote_code,
                                config.allow_pickle, **label_kwargs(label_names))
        return Task(model=model, tokenizer=tokenizer, train_dataset=encoded["train"],
                    eval_dataset=encoded["validation"], collator=DataCollatorForTokenClassification(tokenizer),
                    compute_metrics=partial(compute_metrics, label_names=label_names), label_names=label_names,
                    final_splits=tuple(name for name in ("validation", "test") if name in splits))

    def evaluate_run(self, run_dir: Path, split: str, batch_size: int | None = None,
                     options: LoadOptions = LoadOptions()) -> dict[str, Any]:
        config = run_folder.load_run_config(run_dir)
        tagger = TokenTagger.from_run(run_dir, batch_size=batch_size, options=options)
        rows, label_names = run_split(config, split, load_token_classification)
        if label_names != tagger.label_names:
            raise PipelineError(f"the data's tags differ from the run's ({json.dumps(tagger.label_names)}); "
                                f"evaluate on the data the run was trained on")
        return record_scores(tagger, rows, Path(run_dir), split)


def word_tokenizer(model: str, trust_remote_code: bool) -> Any:
    """The model's tokenizer, ready for text given as words: byte-level BPE tokenizers (RoBERTa,
    GPT-2) must then add the space before each word that running text would have."""
    tokenizer = load_tokenizer(model, trust_remote_code)
    if getattr(tokenizer, "add_prefix_space", None) is False:
        tokenizer = load_tokenizer(model, trust_remote_code, add_prefix_space=True)
    require_word_alignment(tokenizer, model)
    return tokenizer


def align(batch: dict[str, list], tokenizer: Any, max_length: int, label_names: list[str],
          label_all: bool) -> dict[str, list]:
    """Sub-token labels from word tags: the first sub-token of a word carries its tag; the others
    carry IGNORE, or (``label_all``) the word's tag with B- turned into I-."""
    encoded, word_ids = encode_words(tokenizer, batch["tokens"], max_length)
    inside = {i: label_names.index("I-" + n[2:]) if n.startswith("B-") and "I-" + n[2:] in label_names else i
              for i, n in enumerate(label_names)}
    labels, truncated = [], []
    for row, tags in enumerate(batch["tags"]):
        previous, row_labels = None, []
        for word in word_ids[row]:
            if word is None:
                row_labels.append(IGNORE)
            elif word != previous:
                row_labels.append(tags[word])
            else:
                row_labels.append(inside[tags[word]] if label_all else IGNORE)
            previous = word
        labels.append(row_labels)
        seen = [w for w in word_ids[row] if w is not None]
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


def record_scores(tagger: TokenTagger, split: Any, run_dir: Path, split_name: str) -> dict[str, Any]:
    """Tag one split word by word and record entity-level scores in the run folder."""
    label_names = tagger.label_names
    sentences = [list(words) for words in split["tokens"]]
    predicted, _, truncated = tagger.tag_words(sentences)
    gold = [[label_names[t] for t in tags] for tags in split["tags"]]
    metrics = entity_metrics(gold, predicted)
    confusion = type_confusion(gold, predicted)
    run_folder.save_metrics(run_dir, {split_name: {**metrics, "sentences": len(gold), "truncated": truncated,
                                             "type_confusion": confusion}})
    text = type_confusion_text(confusion)
    name = "entity_confusion" + ("" if split_name == "validation" else f"_{split_name}") + ".txt"
    (run_dir / name).write_text(text + "\n", encoding="utf-8")
    run_folder.record_outputs(run_dir, [run_folder.METRICS_FILE, name])
    log.info(f"{split_name}: entity precision {metrics['precision']:.4f} | recall {metrics['recall']:.4f} | "
          f"f1 {metrics['f1']:.4f} | token accuracy {metrics['token_accuracy']:.4f}")
    for kind, scores in metrics["per_type"].items():
        log.info(f"  {kind:16s} f1 {scores['f1']:.4f}  (support {scores['support']})")
    log.info(text)
    return metrics


RECIPE = TokenClassification()
