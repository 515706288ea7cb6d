"""Masked language modelling (BERT's pretraining objective), optionally with next-sentence prediction.

build(): documents from any text source, tokenized with ``datasets.map`` and cut into
         ``lm.block_size`` blocks (or, with NSP, sentence pairs: half true successors, half from
         other documents); 15% of tokens chosen per batch, 80/10/10 [MASK]/random/kept; a model with
         an MLM head (the packaged ``bert-tiny-mlm``), or an encoder given a fresh head (``minilm``).
         The held-out set is masked once, so masked-token accuracy and perplexity before and after
         training are measured on the same tokens.

Domain-adaptive pretraining is this recipe on in-domain text (``dataset.name: imdb``), then the
classification recipe with ``model:`` set to this run's folder.
"""
from __future__ import annotations

from functools import partial
from typing import Any

from transformers import AutoModelForMaskedLM, BertForPreTraining

from pipeline.config import RunConfig
from pipeline.data import load_text_corpus
from pipeline.errors import PipelineError
from pipeline.language_modeling import (MaskingCollator, group_into_blocks, lm_metrics, next_sentence_pairs, premask,
                                        require_blocks, scores_from_logits)
from pipeline.models import load_pretrained, load_tokenizer
from pipeline.training import Task

PEFT_TASK_TYPE = ""  # peft has no masked-LM task type; the generic wrapper fits
METRIC = "loss"
AUTO_CLASS = "AutoModelForMaskedLM"
CLI_EXAMPLE = 'pipeline fill-mask {run} "The movie was [MASK]." --top-k 5'


def build(config: RunConfig) -> Task:
    lm = config.lm
    corpus = load_text_corpus(config.dataset, config.seed)
    tokenizer = load_tokenizer(config.model, config.trust_remote_code)
    if tokenizer.mask_token is None:
        raise PipelineError(f"model {config.model!r} has no mask token; masked_lm needs an encoder such as "
                            f"bert-tiny-mlm or minilm (for a decoder use the causal_lm recipe)")
    block = min(lm.block_size, getattr(tokenizer, "model_max_length", lm.block_size) or lm.block_size)
    offsets = lm.whole_word_mask  # whole-word masking finds word starts from the character offsets
    if offsets and not getattr(tokenizer, "is_fast", False):
        raise PipelineError("lm.whole_word_mask needs a fast tokenizer (word offsets); set it to false")
    if lm.next_sentence_prediction:
        encoded = {split: pair_features(docs["text"], tokenizer, block, config.seed + i)
                   for i, (split, docs) in enumerate(corpus.items())}
        fields = ["labels", "next_sentence_label"]
        model = load_pretrained(BertForPreTraining, config.model, config.trust_remote_code, config.allow_pickle)
    else:
        encoded = corpus.map(partial(_tokenize, tokenizer=tokenizer, offsets=offsets), batched=True,
                             remove_columns=["text"], desc="tokenizing")
        encoded = encoded.map(partial(group_into_blocks, block_size=block), batched=True, batch_size=1000,
                              desc=f"grouping into blocks of {block}")
        fields = ["labels"]
        model = load_pretrained(AutoModelForMaskedLM, config.model, config.trust_remote_code, config.allow_pickle)
    require_blocks(encoded, block)
    # With whole-word masking transformers replaces every chosen piece by [MASK] (no 10/10 split).
    collator = MaskingCollator(tokenizer, mlm_probability=lm.mlm_probability, whole_word_mask=lm.whole_word_mask,
                               mask_replace_prob=1.0 if lm.whole_word_mask else 0.8,
                               random_replace_prob=0.0 if lm.whole_word_mask else 0.1)
    validation = premask(encoded["validation"], collator, config.seed)
    kind = "sentence pairs" if lm.next_sentence_prediction else f"blocks of {block} tokens"
    print(f"data: {len(encoded['train']):,} training and {len(validation):,} validation {kind}; "
          f"{lm.mlm_probability:.0%} of tokens masked{' by whole word' if lm.whole_word_mask else ''}")
    return Task(model=model, tokenizer=tokenizer, train_dataset=encoded["train"], eval_dataset=validation,
                collator=collator, compute_metrics=partial(lm_metrics, causal=False), metric=METRIC,
                peft_task_type=PEFT_TASK_TYPE, greater_is_better=False,
                preprocess_logits=partial(scores_from_logits, causal=False),
                score_before_training=True,
                # the collator needs the special-token mask and word offsets, which the model does not take
                training_defaults={"label_names": fields, "remove_unused_columns": False})


def _tokenize(batch: dict[str, list], tokenizer: Any, offsets: bool) -> dict[str, list]:
    return tokenizer(batch["text"], return_special_tokens_mask=True, return_offsets_mapping=offsets,
                     return_token_type_ids=False, verbose=False)


def pair_features(documents: list[str], tokenizer: Any, block: int, seed: int) -> Any:
    """NSP pairs, tokenized as [CLS] A [SEP] B [SEP] (token types 0 and 1), cut to the block size."""
    import datasets

    pairs = next_sentence_pairs(documents, seed)
    encoded = tokenizer(pairs["first"], pairs["second"], truncation="longest_first", max_length=block,
                        return_special_tokens_mask=True)
    return datasets.Dataset.from_dict({**encoded, "next_sentence_label": pairs["next_sentence_label"]})
