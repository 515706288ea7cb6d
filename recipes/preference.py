"""Preference tuning: a decoder taught to prefer the chosen reply of each pair over the rejected one.

build():    read the pairs (prompt/chosen/rejected as strings or messages, ShareGPT ``conversations`` with
            ``chosen`` and ``rejected`` turns, or whole conversations sharing their prompt), ready the
            chat template (ChatML for a model without one, saved with the run), and hand them to TRL's
            trainer for ``preference.objective``: ``dpo`` (Direct Preference Optimization; the
            reference is the starting model, whose log-probabilities are computed once before
            training, so no second model, nor a reference adapter, stays in memory) or ``orpo``
            (odds-ratio preference optimization: reference-free, with the chosen reply's language-model
            loss). TRL tokenizes the pairs through the template with ``datasets.map``; our run folder,
            schema, callbacks and one-line errors stay around it. The held-out loss of the objective
            picks the best checkpoint.
evaluate_run(): on held-out pairs, against the starting model as DPO's reference: the DPO loss and
            the implicit rewards' accuracy and margin; how often the model alone prefers the chosen
            reply per token; the loss and perplexity on the chosen replies; and the generation check
            (stop rate, ROUGE-L against the chosen reply).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from transformers import AutoModelForCausalLM

from pipeline.config.schema import RunConfig
from pipeline.data.chat_scores import (
    generation_check,
    preference_scores,
    reply_collator,
    reply_log_probs,
    reply_token_scores,
)
from pipeline.data.conversations import prepare_chat_tokenizer, tokenize_conversations
from pipeline.data.preference import Pair, as_conversation, load_pairs
from pipeline.errors import PipelineError, require
from pipeline.log import log
from pipeline.models.pretrained import load_causal_lm, load_tokenizer
from pipeline.recipe import Recipe, Task
from pipeline.runs import run_folder
from pipeline.runs.loading import LoadOptions, load_run_model

# Preference objectives move a model that already follows instructions, and small steps keep it
# close to where it started: rates well below supervised fine-tuning's (TRL's examples use 5e-7 to
# 5e-6 for full weights; LoRA's fresh matrices want more).
LEARNING_RATE = {"full": 1e-6, "lora": 5e-5, "dora": 5e-5, "adalora": 1e-4, "ia3": 5e-4, "prompt": 1e-2,
                 "prefix": 1e-3}


class Preference(Recipe):
    name = "preference"
    summary = "preference tuning of a decoder on chosen/rejected reply pairs: DPO or ORPO, computed by TRL"
    auto_class = "AutoModelForCausalLM"
    peft_task_type = "CAUSAL_LM"
    metric = "loss"
    greater_is_better = False
    causal = True
    chat = True
    commands = frozenset({"train", "evaluate", "compare", "generate", "chat", "serve", "inspect", "export", "push"})
    usage = 'pipeline generate {run} "Which is heavier, a kilogram of feathers or of steel?" --max-new-tokens 60'
    augment_refusal = "augment edits words of single texts; it does not apply to preference pairs"

    def build(self, config: RunConfig) -> Task:
        trainer_class, arguments_class, arguments = trl_objective(config)
        pairs = load_pairs(config.dataset, config.chat, config.seed)
        tokenizer = prepare_chat_tokenizer(load_tokenizer(config.model, config.trust_remote_code), config.model)
        model, new_tokens = load_causal_lm(config.model, tokenizer, config.trust_remote_code, config.allow_pickle)
        if new_tokens and config.method != "full":  # TRL's fused log-probabilities read the output layer's own rows
            raise PipelineError(f"model {config.model!r} has no chat template, and method {config.method} cannot teach "
                                f"it ChatML's new tokens while preferring; chat-tune it first (an instruction run, "
                                f"then `pipeline export RUN OUT --merge`) and prefer on that, or use method full")
        fitting = {split: fitting_pairs(rows, tokenizer, config.dataset.max_length, split) for split, rows in pairs.items()}
        left_out = {split: len(pairs[split]) - len(fitting[split][0]) for split in pairs}
        log.info(f"data: {len(fitting['train'][0]):,} training and {len(fitting['validation'][0]):,} held-out pairs; "
                 f"left out {left_out['train']:,} and {left_out['validation']:,} whose prompt fills dataset.max_length "
                 f"{config.dataset.max_length}")
        train, validation = (trl_rows(fitting[split][0]) for split in ("train", "validation"))
        held_out, held_out_replies = fitting["validation"]

        def score(model: Any) -> dict[str, float]:  # before training the model is its own reference
            return held_out_scores(model, tokenizer, held_out, held_out_replies, config, reference=None)

        return Task(model=model, tokenizer=tokenizer, train_dataset=train, eval_dataset=validation, collator=None,
                    compute_metrics=None, score=score, trainer_class=trainer_class, arguments_class=arguments_class,
                    arguments=arguments, new_token_ids=new_tokens)

    def training_defaults(self, config: RunConfig) -> dict[str, Any]:
        # TRL's collator pads each batch itself; Trainer must keep the pair columns it reads. TRL turns
        # gradient checkpointing on by default (memory for about a fifth more time): here it is the
        # user's choice, recorded with the run like every other setting.
        defaults: dict[str, Any] = {"train_sampling_strategy": "random", "remove_unused_columns": False,
                                    "gradient_checkpointing": False}
        if "learning_rate" not in config.training and config.method in LEARNING_RATE:
            defaults["learning_rate"] = LEARNING_RATE[config.method]
        return defaults

    def evaluate_run(self, run_dir: Path, split: str, batch_size: int | None = None,
                     options: LoadOptions = LoadOptions()) -> dict[str, Any]:
        config = run_folder.load_run_config(run_dir)
        if split != "validation":
            raise PipelineError(f"preference runs hold out a validation split only, not {split!r}; use --split validation")
        loaded = load_run_model(run_dir, AutoModelForCausalLM, options=options)
        pairs, replies = fitting_pairs(load_pairs(config.dataset, config.chat, config.seed)["validation"],
                                       loaded.tokenizer, config.dataset.max_length, split)
        device = next(loaded.model.parameters()).device
        reference = starting_log_probs(config, loaded.tokenizer, replies, options, device, batch_size or 8)
        scores = held_out_scores(loaded.model, loaded.tokenizer, pairs, replies, config, reference, batch_size or 8)
        return run_folder.record_scores(run_dir, split, scores)


def trl_objective(config: RunConfig) -> tuple[Any, type, dict[str, Any]]:
    """TRL's trainer and config classes for ``preference.objective``, with the settings our config
    gives them."""
    preference, max_length = config.preference, config.dataset.max_length
    require("trl")  # one line naming the extra when TRL is not installed
    if preference.objective == "dpo":
        from trl import DPOConfig, DPOTrainer

        return (dpo_trainer_without_reference_copy(DPOTrainer), DPOConfig,
                dict(beta=preference.beta, max_length=max_length,
                     precompute_ref_log_probs=preference.precompute_reference))
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # ORPO lives in TRL's experimental namespace
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    return ORPOTrainer, ORPOConfig, dict(beta=preference.beta, max_length=max_length)


def dpo_trainer_without_reference_copy(dpo_trainer: type) -> type:
    """TRL's DPOTrainer, less the reference adapter it copies beside a PEFT model's own. With the
    reference's log-probabilities computed before training, the copy is never read again; without
    them, the reference is the base model with the adapter switched off (equal to the starting
    model: LoRA's B matrices start at zero). Either way nothing of a second model stays in memory,
    and the saved run holds the trained adapter alone."""

    class PipelineDPOTrainer(dpo_trainer):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            peft_config = getattr(self.model, "peft_config", {})
            if "ref" in peft_config:
                self.model.delete_adapter("ref")

    return PipelineDPOTrainer


def trl_rows(pairs: list[Pair]) -> Any:
    """Pairs in TRL's conversational preference format: the prompt's messages, each reply an
    assistant message."""
    import datasets

    return datasets.Dataset.from_list([
        {"prompt": pair["prompt"], "chosen": [{"role": "assistant", "content": pair["chosen"]}],
         "rejected": [{"role": "assistant", "content": pair["rejected"]}]} for pair in pairs])


def pair_replies(pairs: list[Pair], tokenizer: Any, max_length: int) -> tuple[list[Pair], Any]:
    """The pairs whose replies keep some tokens within ``max_length`` (TRL drops the others from
    training too), and their prompts with the chosen replies followed by the same prompts with the
    rejected ones, labelled on the final reply's tokens (earlier assistant turns are prompt)."""
    conversations = [as_conversation(p, "chosen") for p in pairs] + [as_conversation(p, "rejected") for p in pairs]
    replies = tokenize_conversations(conversations, tokenizer, max_length, last_turn_only=True)
    kept_tokens = replies["assistant_tokens"]
    keep = [i for i in range(len(pairs)) if kept_tokens[i] and kept_tokens[len(pairs) + i]]
    rows = keep + [len(pairs) + i for i in keep]
    return [pairs[i] for i in keep], replies.select(rows).select_columns(["input_ids", "labels"])


def fitting_pairs(pairs: list[Pair], tokenizer: Any, max_length: int, split: str) -> tuple[list[Pair], Any]:
    """``pair_replies``, stopping in one line when no pair of ``split`` fits."""
    kept, replies = pair_replies(pairs, tokenizer, max_length)
    if not kept:
        raise PipelineError(f"every {split} pair's prompt fills dataset.max_length {max_length}; raise it")
    return kept, replies


def starting_log_probs(config: RunConfig, tokenizer: Any, replies: Any, options: LoadOptions, device: Any,
                       batch_size: int) -> Any:
    """The starting model's log-probabilities of ``replies`` (from ``pair_replies``): DPO's reference."""
    base = load_causal_lm(config.model, tokenizer, options.trust_remote_code, options.allow_pickle)[0].to(device)
    return reply_log_probs(base, replies, reply_collator(tokenizer), batch_size)


def held_out_scores(model: Any, tokenizer: Any, pairs: list[Pair], replies: Any, config: RunConfig, reference: Any,
                    batch_size: int = 8) -> dict[str, float]:
    """On the held-out ``pairs`` that fit ``max_length`` and their ``replies`` (both from
    ``pair_replies``): DPO's loss and the preference scores against ``reference`` (None: the model
    is its own reference, as before training), the language-model loss, perplexity and accuracy on
    the chosen replies (``chosen_*``), and the generation check."""
    collator = reply_collator(tokenizer)
    policy = reply_log_probs(model, replies, collator, batch_size)
    scores = {"pairs": float(len(pairs)),
              **preference_scores(policy, reference if reference is not None else policy, config.preference.beta)}
    chosen = reply_token_scores(policy, slice(0, len(pairs)))  # the chosen replies come first
    scores.update({f"chosen_{name}": value for name, value in chosen.items()})
    held_out = [as_conversation(p, "chosen") for p in pairs[:config.chat.generation_samples]]
    scores.update(generation_check(model, tokenizer, held_out, config.chat.max_new_tokens))
    return scores


RECIPE = Preference()
