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
from pathlib import Path
from typing import Any

from transformers import AutoModelForMaskedLM, BertForPreTraining

from pipeline.config.schema import RunConfig
from pipeline.data.language_modeling import (
    MaskingCollator,
    group_into_blocks,
    lm_metrics,
    lm_scores,
    next_sentence_pairs,
    premask,
    require_blocks,
    scores_from_logits,
)
from pipeline.data.tasks import load_text_corpus
from pipeline.errors import PipelineError
from pipeline.log import log
from pipeline.models.pretrained import load_pretrained, load_tokenizer
from pipeline.recipe import Recipe, Task
from pipeline.runs import run_folder
from pipeline.runs.loading import LoadOptions, load_run_model


class MaskedLM(Recipe):
    name = "masked_lm"
    summary = "BERT-style pretraining: 15% masking (80/10/10), whole-word masking, next-sentence prediction"
    auto_class = "AutoModelForMaskedLM"
    peft_task_type = None  # peft has no masked-LM task type; the generic wrapper fits
    metric = "loss"
    greater_is_better = False
    head_on_labelled_tokens = True
    commands = frozenset({"train", "evaluate", "compare", "fill-mask", "inspect", "export", "push"})
    usage = 'pipeline fill-mask {run} "The movie was [MASK]." --top-k 5'

    def model_class(self, config: RunConfig) -> Any:
        from transformers import AutoModelForPreTraining

        return AutoModelForPreTraining if config.lm.next_sentence_prediction else AutoModelForMaskedLM

    def build(self, config: RunConfig) -> Task:
        corpus = load_text_corpus(config.dataset, config.seed)
        tokenizer = load_tokenizer(config.model, config.trust_remote_code)
        if tokenizer.mask_token is None:
            raise PipelineError(f"model {config.model!r} has no mask token; masked_lm needs an encoder such as "
                                f"bert-tiny-mlm or minilm (for a decoder use the causal_lm recipe)")
        if config.lm.whole_word_mask and not getattr(tokenizer, "is_fast", False):
            raise PipelineError("lm.whole_word_mask needs a fast tokenizer (word offsets); set it to false")
        model_class = BertForPreTraining if config.lm.next_sentence_prediction else AutoModelForMaskedLM
        model = load_pretrained(model_class, config.model, config.trust_remote_code, config.allow_pickle)
        encoded, validation, collator = examples(config, corpus, tokenizer)
        lm = config.lm
        kind = "sentence pairs" if lm.next_sentence_prediction else f"blocks of {block_size(config, tokenizer)} tokens"
        log.info(f"data: {len(encoded['train']):,} training and {len(validation):,} validation {kind}; "
              f"{lm.mlm_probability:.0%} of tokens masked{' by whole word' if lm.whole_word_mask else ''}")
        return Task(model=model, tokenizer=tokenizer, train_dataset=encoded["train"], eval_dataset=validation,
                    collator=collator, compute_metrics=partial(lm_metrics, causal=False),
                    preprocess_logits=partial(scores_from_logits, causal=False),
                    score=partial(lm_scores, dataset=validation, collator=collator, causal=False))

    def training_defaults(self, config: RunConfig) -> dict[str, Any]:
        fields = ["labels", "next_sentence_label"] if config.lm.next_sentence_prediction else ["labels"]
        # the collator needs the special-token mask and word offsets, which the model does not take
        return {"label_names": fields, "remove_unused_columns": False}

    def evaluate_run(self, run_dir: Path, split: str, batch_size: int | None = None,
                     options: LoadOptions = LoadOptions()) -> dict[str, Any]:
        config = run_folder.load_run_config(run_dir)
        if split != "validation":
            raise PipelineError(f"masked_lm runs hold out a validation split only, not {split!r}; use --split validation")
        loaded = load_run_model(run_dir, self.model_class(config), options=options)
        _, validation, collator = examples(config, load_text_corpus(config.dataset, config.seed), loaded.tokenizer)
        scores = lm_scores(loaded.model, validation, collator, causal=False, batch_size=batch_size or 32)
        return run_folder.record_scores(run_dir, split, scores)


def block_size(config: RunConfig, tokenizer: Any) -> int:
    limit = getattr(tokenizer, "model_max_length", None) or config.lm.block_size
    return min(config.lm.block_size, limit)


def examples(config: RunConfig, corpus: Any, tokenizer: Any) -> tuple[Any, Any, MaskingCollator]:
    """Training examples (blocks, or NSP sentence pairs), the validation set masked once, and the collator."""
    lm = config.lm
    block = block_size(config, tokenizer)
    if lm.next_sentence_prediction:
        encoded = {split: pair_features(docs["text"], tokenizer, block, config.seed + i)
                   for i, (split, docs) in enumerate(corpus.items())}
    else:
        encoded = corpus.map(partial(_tokenize, tokenizer=tokenizer, offsets=lm.whole_word_mask), batched=True,
                             remove_columns=["text"], desc="tokenizing")
        encoded = encoded.map(partial(group_into_blocks, block_size=block), batched=True, batch_size=1000,
                              desc=f"grouping into blocks of {block}")
    require_blocks(encoded, block)
    # With whole-word masking transformers replaces every chosen piece by [MASK] (no 10/10 split).
    collator = MaskingCollator(tokenizer, mlm_probability=lm.mlm_probability, whole_word_mask=lm.whole_word_mask,
                               mask_replace_prob=1.0 if lm.whole_word_mask else 0.8,
                               random_replace_prob=0.0 if lm.whole_word_mask else 0.1)
    return encoded, premask(encoded["validation"], collator, config.seed), collator


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


RECIPE = MaskedLM()
