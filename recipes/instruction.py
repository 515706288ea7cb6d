"""Instruction tuning: a decoder fine-tuned on conversations, the loss on the assistant's replies.

build():    read the rows as conversations (alpaca, messages, ShareGPT or prompt/completion), render
            each with the tokenizer's chat template (ChatML for a model without one, saved with the
            run), label the assistant's replies and end-of-turn tokens (``chat.train_on_prompt``:
            every token) with ``datasets.map``, report what ``max_length`` cuts, and batch either
            padded to each batch's longest conversation or packed (``dataset.packing``: one row of
            several conversations, position ids restarting at each, no padding, so transformers'
            attention keeps them apart). The held-out loss on reply tokens picks the best checkpoint.
evaluate_run(): the held-out reply loss and perplexity, and a generation check on held-out prompts:
            the share of replies that end with the end-of-turn token within ``chat.max_new_tokens``
            (stop rate) and ROUGE-L against the reference reply.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import AutoModelForCausalLM, DataCollatorWithFlattening

from pipeline.config.schema import RunConfig
from pipeline.data.chat_scores import generation_check, reply_collator, reply_scores
from pipeline.data.conversations import load_conversations, prepare_chat_tokenizer, tokenize_conversations
from pipeline.errors import PipelineError
from pipeline.log import log
from pipeline.models.pretrained import load_causal_lm, load_tokenizer
from pipeline.recipe import Recipe, Task
from pipeline.runs import run_folder
from pipeline.runs.loading import LoadOptions, load_run_model


class Instruction(Recipe):
    name = "instruction"
    summary = "chat fine-tuning of a decoder: conversations through its chat template, loss on the assistant's replies"
    auto_class = "AutoModelForCausalLM"
    peft_task_type = "CAUSAL_LM"
    metric = "loss"
    greater_is_better = False
    causal = True
    chat = True
    commands = frozenset({"train", "evaluate", "compare", "generate", "chat", "serve", "inspect", "export", "push"})
    usage = 'pipeline generate {run} "Name three primary colours." --max-new-tokens 60'
    augment_refusal = "augment edits words of single texts; it does not apply to conversations"

    def build(self, config: RunConfig) -> Task:
        conversations = load_conversations(config.dataset, config.chat, config.seed)
        tokenizer = prepare_chat_tokenizer(load_tokenizer(config.model, config.trust_remote_code), config.model)
        model, new_tokens = load_causal_lm(config.model, tokenizer, config.trust_remote_code, config.allow_pickle)
        splits = {split: tokenized(rows, tokenizer, config) for split, rows in conversations.items()}
        log.info(length_report(splits, config.dataset.max_length))
        collator = batch_collator(tokenizer, config.dataset.packing)
        eval_collator = batch_collator(tokenizer, packing=False)
        columns = ["input_ids", "labels"]
        train, validation = (splits[s].select_columns(columns) for s in ("train", "validation"))
        held_out = conversations["validation"][:config.chat.generation_samples]

        def score(model: Any) -> dict[str, float]:  # the starting model's numbers, as evaluate_run scores the end
            return {**reply_scores(model, validation, eval_collator),
                    **generation_check(model, tokenizer, held_out, config.chat.max_new_tokens)}

        return Task(model=model, tokenizer=tokenizer, train_dataset=train, eval_dataset=validation,
                    collator=collator, compute_metrics=None, score=score, new_token_ids=new_tokens)

    def training_defaults(self, config: RunConfig) -> dict[str, Any]:
        # packing feeds one row of several conversations: Trainer must not regroup rows by length
        grouping = {"train_sampling_strategy": "random"} if config.dataset.packing else {}
        return {"label_names": ["labels"], **grouping}

    def evaluate_run(self, run_dir: Path, split: str, batch_size: int | None = None,
                     options: LoadOptions = LoadOptions()) -> dict[str, Any]:
        config = run_folder.load_run_config(run_dir)
        if split != "validation":
            raise PipelineError(f"instruction runs hold out a validation split only, not {split!r}; use --split validation")
        loaded = load_run_model(run_dir, AutoModelForCausalLM, options=options)
        conversations = load_conversations(config.dataset, config.chat, config.seed)["validation"]
        validation = tokenized(conversations, loaded.tokenizer, config).select_columns(["input_ids", "labels"])
        scores = reply_scores(loaded.model, validation, batch_collator(loaded.tokenizer, packing=False),
                              batch_size=batch_size or 8)
        scores.update(generation_check(loaded.model, loaded.tokenizer, conversations[:config.chat.generation_samples],
                                       config.chat.max_new_tokens))
        return run_folder.record_scores(run_dir, split, scores)


def tokenized(conversations: list[list[dict[str, str]]], tokenizer: Any, config: RunConfig) -> Any:
    return tokenize_conversations(conversations, tokenizer, config.dataset.max_length, config.chat.train_on_prompt)


def length_report(splits: dict[str, Any], max_length: int) -> str:
    train = splits["train"]
    over = sum(1 for n in train["length"] if n > max_length)
    cut = sum(train["assistant_tokens_cut"])
    kept = sum(train["assistant_tokens"])
    return (f"data: {len(train):,} training and {len(splits['validation']):,} held-out conversations; "
            f"{over:,} longer than max_length {max_length} (cut there: {cut:,} of {kept + cut:,} reply tokens lost)")


def batch_collator(tokenizer: Any, packing: bool) -> Any:
    if packing:
        return PackedBatches()
    return reply_collator(tokenizer)


class PackedBatches(DataCollatorWithFlattening):
    """A batch as one row of its conversations, position ids restarting at each and no padding.
    transformers keeps packed sequences apart (a block-diagonal causal mask, or the FlashAttention
    kernel's sequence boundaries) only when no attention mask and no cache are given, so the batch
    turns the cache off; a model left to build its cache would let each conversation attend to
    the ones before it."""

    def __init__(self) -> None:
        super().__init__(return_position_ids=True, separator_id=-100)

    def __call__(self, features: list[dict[str, Any]], return_tensors: str | None = None) -> dict[str, Any]:
        return {**super().__call__(features, return_tensors), "use_cache": False}


RECIPE = Instruction()
