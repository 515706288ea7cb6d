"""What the language-model recipes share: documents to sentences, next-sentence pairs, fixed-length
blocks, the masking collator, and the held-out scores (token accuracy, perplexity, NSP accuracy).

Scores are computed from the logits of each evaluation batch as it comes (argmax, summed negative
log-likelihood and the count of scored tokens), so evaluation never holds a vocabulary-sized array
for the whole set.
"""
from __future__ import annotations

import math
import random
import re
from typing import Any

import numpy as np
import torch
from transformers import DataCollatorForLanguageModeling

from pipeline.errors import PipelineError

IS_NEXT, NOT_NEXT = 0, 1  # BertForPreTraining's next_sentence_label: 0 = B continues A

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'A-Z0-9])")


def sentences(document: str) -> list[str]:
    """A document's sentences: its lines when it has several (one sentence per line is BERT's
    pretraining format), else a split after . ! ? followed by a capital."""
    lines = [line.strip() for line in document.splitlines() if line.strip()]
    if len(lines) > 1:
        return lines
    return [s.strip() for s in _SENTENCE_END.split(document.replace("<br />", " ")) if s.strip()]


def next_sentence_pairs(documents: list[str], seed: int) -> dict[str, list]:
    """BERT's NSP data: for each sentence that has a successor, a pair whose second half is the
    true next sentence (IsNext) or, with probability 0.5, a sentence from another document (NotNext)."""
    docs = [s for s in (sentences(d) for d in documents) if s]
    if len(docs) < 2:
        raise PipelineError("next-sentence prediction needs at least two documents with text; "
                            "give more text or set lm.next_sentence_prediction=false")
    rng = random.Random(seed)
    first, second, labels = [], [], []
    for d, sents in enumerate(docs):
        for i in range(len(sents) - 1):
            if rng.random() < 0.5:
                first.append(sents[i]), second.append(sents[i + 1]), labels.append(IS_NEXT)
            else:
                other = rng.randrange(len(docs) - 1)
                other += other >= d  # any document but this one
                first.append(sents[i]), second.append(rng.choice(docs[other])), labels.append(NOT_NEXT)
    if not first:
        raise PipelineError("next-sentence prediction found no document with two sentences; "
                            "separate sentences by lines or end them with . ! ?")
    return {"first": first, "second": second, "next_sentence_label": labels}


def group_into_blocks(batch: dict[str, list], block_size: int) -> dict[str, list]:
    """Concatenate tokenized texts and cut them into ``block_size`` blocks (the remainder of the
    batch is dropped), as the Hugging Face run_mlm / run_clm examples do."""
    joined = {k: sum(batch[k], []) for k in batch}
    total = (len(joined["input_ids"]) // block_size) * block_size
    return {k: [v[i:i + block_size] for i in range(0, total, block_size)] for k, v in joined.items()}


def require_blocks(splits: Any, block_size: int) -> None:
    """Every split must hold at least one training example after grouping."""
    for split, data in splits.items():
        if len(data) == 0:
            raise PipelineError(f"the {split} text is shorter than one block of {block_size} tokens; "
                                f"lower lm.block_size or give more text")


class MaskingCollator(DataCollatorForLanguageModeling):
    """Masks each training batch afresh (``mlm_probability``; of the chosen tokens 80% become [MASK],
    10% a random token, 10% stay). Evaluation examples arrive already masked (``premask``), so every
    evaluation, before and after training, scores the same masked tokens."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        if "labels" not in examples[0]:
            return super().torch_call(examples)
        labels = [list(e["labels"]) for e in examples]
        rest = [{k: v for k, v in e.items() if k != "labels"} for e in examples]
        batch = self.tokenizer.pad(rest, return_tensors="pt")
        width = batch["input_ids"].shape[1]
        batch["labels"] = torch.tensor([row + [-100] * (width - len(row)) for row in labels])
        batch.pop("special_tokens_mask", None)
        batch.pop("offset_mapping", None)
        return batch


def premask(dataset: Any, collator: MaskingCollator, seed: int) -> Any:
    """Mask an evaluation set once, reproducibly: input_ids with masks in, labels (-100 elsewhere)."""
    fixed = MaskingCollator(collator.tokenizer, mlm_probability=collator.mlm_probability,
                            whole_word_mask=collator.whole_word_mask, mask_replace_prob=collator.mask_replace_prob,
                            random_replace_prob=collator.random_replace_prob, seed=seed)

    def mask(example: dict[str, Any]) -> dict[str, Any]:
        out = fixed([example])
        return {"input_ids": out["input_ids"][0].tolist(), "labels": out["labels"][0].tolist()}

    drop = [c for c in ("special_tokens_mask", "offset_mapping") if c in dataset.column_names]
    return dataset.map(mask, remove_columns=drop, desc="masking the evaluation set")


def scores_from_logits(logits: Any, labels: Any, causal: bool) -> tuple[torch.Tensor, ...]:
    """Per example: predicted ids, summed negative log-likelihood and scored-token count; plus the
    NSP prediction when the model has that head. (Trainer's ``preprocess_logits_for_metrics``.)"""
    nsp = None
    if isinstance(logits, tuple):
        logits, nsp = logits[0], (logits[1] if len(logits) > 1 and logits[1].dim() == 2 else None)
    if isinstance(labels, (tuple, list)):
        labels = labels[0]
    if causal:  # position t predicts token t + 1
        logits, labels = logits[:, :-1], labels[:, 1:]
    nll = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=-100,
                                            reduction="none")
    scored = labels != -100
    out = (logits.argmax(-1), (nll * scored).sum(1), scored.sum(1))
    return out + (nsp.argmax(-1),) if nsp is not None else out


def lm_metrics(eval_pred: Any, causal: bool) -> dict[str, float]:
    """Token accuracy on the scored tokens (masked ones for MLM, every next token for CLM),
    perplexity = exp(mean negative log-likelihood), and NSP accuracy when present."""
    preds, labels = eval_pred.predictions, eval_pred.label_ids
    nsp_labels = None
    if isinstance(labels, (tuple, list)):
        labels, nsp_labels = labels[0], (labels[1] if len(labels) > 1 else None)
    predicted, nll, count = preds[0], preds[1], preds[2]
    if causal:
        labels = labels[:, 1:]
    width = min(predicted.shape[1], labels.shape[1])
    predicted, labels = predicted[:, :width], labels[:, :width]
    scored = labels != -100
    metrics = {"accuracy": float((predicted[scored] == labels[scored]).mean()) if scored.any() else 0.0,
               "perplexity": float(math.exp(min(float(nll.sum()) / max(float(count.sum()), 1.0), 50.0)))}
    if len(preds) > 3 and nsp_labels is not None:
        metrics["nsp_accuracy"] = float((np.asarray(preds[3]) == np.asarray(nsp_labels)).mean())
    return metrics


def token_scores(nll: float, correct: int, scored: int) -> dict[str, float]:
    """From the summed negative log-likelihood of the scored tokens, how many of them were the top
    guess, and their count: ``loss`` (the mean), ``accuracy`` and ``perplexity`` (exp of the loss)."""
    loss = nll / max(scored, 1)
    return {"loss": round(loss, 6), "accuracy": round(correct / max(scored, 1), 6),
            "perplexity": round(math.exp(min(loss, 50.0)), 6)}


def lm_scores(model: Any, dataset: Any, collator: Any, causal: bool, batch_size: int = 32) -> dict[str, float]:
    """Validation scores of a language model, batch by batch in fp32 on the model's device: ``loss``
    (mean negative log-likelihood of the scored tokens), ``accuracy`` and ``perplexity`` (exp of the
    loss), and ``nsp_accuracy`` for a model with a next-sentence head. The end of training and
    ``pipeline evaluate`` both score through here, so their numbers agree exactly."""
    device = next(model.parameters()).device
    nll, correct, scored, nsp_right, nsp_total = 0.0, 0, 0, 0, 0
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(dataset), batch_size):
            batch = collator([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            labels = batch.pop("labels")
            nsp_labels = batch.pop("next_sentence_label", None)
            out = model(**{k: v.to(device) for k, v in batch.items()})
            logits = out.logits if "logits" in out else out.prediction_logits
            nsp = out.get("seq_relationship_logits")
            predicted, summed, count = scores_from_logits(logits, labels.to(device), causal)[:3]
            kept = (labels[:, 1:] if causal else labels).to(device)
            correct += int(((predicted == kept) & (kept != -100)).sum())
            nll += float(summed.sum())
            scored += int(count.sum())
            if nsp is not None and nsp_labels is not None:
                nsp_right += int((nsp.argmax(-1).cpu() == nsp_labels).sum())
                nsp_total += len(nsp_labels)
    model.train(was_training)
    scores = token_scores(nll, correct, scored)
    if nsp_total:
        scores["nsp_accuracy"] = round(nsp_right / nsp_total, 6)
    return scores
