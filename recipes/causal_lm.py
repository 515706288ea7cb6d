"""Causal language modelling: next-token prediction, from scratch or continued from a decoder.

build(): documents (each ended by the end-of-text token) tokenized with ``datasets.map``,
         concatenated and cut into ``lm.block_size`` blocks whose labels are their own tokens
         (the model shifts them). ``lm.from_scratch: true`` trains a byte-level BPE tokenizer on
         the training text (``lm.vocab_size``) and builds a fresh GPT-2 of ``lm.n_layer`` /
         ``lm.n_head`` / ``lm.n_embd``; otherwise ``model`` is a pretrained decoder (``smollm2``,
         a Hub id, a folder), trained in full or with LoRA (``lora.target_modules: [q_proj, v_proj]``).
         Validation loss and perplexity are measured before and after training.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from transformers import AutoModelForCausalLM, default_data_collator

from pipeline.config.schema import RunConfig
from pipeline.data.language_modeling import (
    group_into_blocks,
    lm_metrics,
    lm_scores,
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

END_OF_TEXT = "<|endoftext|>"


class CausalLM(Recipe):
    name = "causal_lm"
    summary = "next-token prediction: GPT-2 from scratch with its own BPE tokenizer, or a decoder continued"
    auto_class = "AutoModelForCausalLM"
    peft_task_type = "CAUSAL_LM"
    metric = "loss"
    greater_is_better = False
    causal = True
    commands = frozenset({"train", "evaluate", "compare", "generate", "chat", "serve", "inspect", "export", "push"})
    usage = 'pipeline generate {run} "ROMEO:" --max-new-tokens 60'

    def build(self, config: RunConfig) -> Task:
        lm = config.lm
        corpus = load_text_corpus(config.dataset, config.seed)
        if lm.from_scratch:
            tokenizer = train_tokenizer(corpus["train"]["text"], lm.vocab_size)
            model = fresh_gpt2(tokenizer, lm)
            log.info(f"model: a fresh GPT-2 ({lm.n_layer} layers, {lm.n_head} heads, width {lm.n_embd}) with a "
                  f"{len(tokenizer):,}-token BPE vocabulary trained on the corpus")
        else:
            tokenizer = load_tokenizer(config.model, config.trust_remote_code)
            model = load_pretrained(AutoModelForCausalLM, config.model, config.trust_remote_code, config.allow_pickle)
        if tokenizer.eos_token is None:
            raise PipelineError(f"model {config.model!r} has no end-of-text token; causal_lm needs a decoder "
                                f"(smollm2, a GPT-2 or Llama-type model)")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        blocks = examples(config, corpus, tokenizer, model.config)
        log.info(f"data: {len(blocks['train']):,} training and {len(blocks['validation']):,} validation blocks of "
              f"{len(blocks['train'][0]['input_ids'])} tokens")
        return Task(model=model, tokenizer=tokenizer, train_dataset=blocks["train"], eval_dataset=blocks["validation"],
                    collator=default_data_collator, compute_metrics=partial(lm_metrics, causal=True),
                    preprocess_logits=partial(scores_from_logits, causal=True),
                    score=partial(lm_scores, dataset=blocks["validation"], collator=default_data_collator, causal=True))

    def training_defaults(self, config: RunConfig) -> dict[str, Any]:
        return {"label_names": ["labels"]}

    def evaluate_run(self, run_dir: Path, split: str, batch_size: int | None = None,
                     options: LoadOptions = LoadOptions()) -> dict[str, Any]:
        config = run_folder.load_run_config(run_dir)
        if split != "validation":
            raise PipelineError(f"causal_lm runs hold out a validation split only, not {split!r}; use --split validation")
        loaded = load_run_model(run_dir, AutoModelForCausalLM, options=options)
        corpus = load_text_corpus(config.dataset, config.seed)
        blocks = examples(config, corpus, loaded.tokenizer, loaded.model.config)
        scores = lm_scores(loaded.model, blocks["validation"], default_data_collator, causal=True, batch_size=batch_size or 32)
        return run_folder.record_scores(run_dir, split, scores)


def examples(config: RunConfig, corpus: Any, tokenizer: Any, model_config: Any) -> Any:
    """Documents ended by end-of-text, concatenated and cut into blocks whose labels are their tokens."""
    limit = getattr(model_config, "max_position_embeddings", None) or getattr(model_config, "n_positions", None)
    block = min(config.lm.block_size, limit or config.lm.block_size)
    encoded = corpus.map(partial(_tokenize, tokenizer=tokenizer), batched=True, remove_columns=["text"],
                         desc="tokenizing")
    blocks = encoded.map(partial(_blocks_with_labels, block_size=block), batched=True, batch_size=1000,
                         desc=f"grouping into blocks of {block}")
    require_blocks(blocks, block)
    return blocks


def _tokenize(batch: dict[str, list], tokenizer: Any) -> dict[str, list]:
    encoded = tokenizer(batch["text"], return_attention_mask=False, verbose=False)
    eos = tokenizer.eos_token_id
    return {"input_ids": [ids + [eos] for ids in encoded["input_ids"]]}


def _blocks_with_labels(batch: dict[str, list], block_size: int) -> dict[str, list]:
    blocks = group_into_blocks(batch, block_size)
    blocks["labels"] = [list(ids) for ids in blocks["input_ids"]]
    return blocks


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer (GPT-2's scheme) trained on ``texts`` with ``tokenizers``."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=[END_OF_TEXT],
                            show_progress=False)
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=END_OF_TEXT, eos_token=END_OF_TEXT,
                                   unk_token=END_OF_TEXT, pad_token=END_OF_TEXT)


def fresh_gpt2(tokenizer: Any, lm: Any) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=len(tokenizer), n_positions=lm.block_size, n_embd=lm.n_embd, n_layer=lm.n_layer,
                        n_head=lm.n_head, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    return GPT2LMHeadModel(config)


RECIPE = CausalLM()
