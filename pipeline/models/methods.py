"""Training methods: what trains, and how it is added to the model.

- ``full``: every weight trains.
- ``head``: the encoder is frozen; the task head trains (the "feature extraction" baseline).
- through peft: ``lora`` (low-rank updates of chosen linear layers), ``dora`` (LoRA with a separate
  magnitude), ``adalora`` (LoRA whose rank budget is reallocated during training), ``ia3`` (learned
  scaling of keys, values and feed-forward activations), ``prompt`` (learned input embeddings) and
  ``prefix`` (learned keys and values in every layer).

``apply_method`` takes a model with a task head and returns the model to train; ``parameter_report``
says how many parameters train.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch

from pipeline.config.schema import ALL_LINEAR
from pipeline.errors import PipelineError
from pipeline.models.architectures import (
    block_linear_layers,
    has_default_targets,
    head_modules,
    head_parameters_to_save,
    ia3_targets,
    linear_layer_names,
    lora_targets,
    model_type_of,
)
from pipeline.models.pretrained import load_model_config, skeleton

# Learning rates that work for each method when the user sets none: full fine-tuning moves
# pretrained weights and wants a small step; a fresh head, LoRA matrices (B starts at zero), IA3
# scales and virtual tokens start from scratch and want larger ones (the ranges the methods' papers
# and peft's examples use for BERT-size models).
DEFAULT_LEARNING_RATE = {"full": 2e-5, "head": 1e-3, "lora": 5e-4, "dora": 5e-4, "adalora": 1e-3,
                         "ia3": 5e-3, "prompt": 3e-2, "prefix": 1e-2,
                         # setfit: the encoder's rate on sentence pairs; with our fewer pairs, 3e-5 beat 5e-5 on
                         # each of four seeds at 128 sentences (bench/small_data.py; the library: 2e-5, every pair)
                         "setfit": 3e-5}

PEFT_METHODS = ("lora", "dora", "adalora", "ia3", "prompt", "prefix")

# Short target names for the weights the LoRA paper names: W_o, the attention output projection,
# is "attention.output.dense" in BERT-family models, where a bare "output" would name a container.
TARGET_ALIASES = {"output": "attention.output.dense"}


def expand_target_aliases(module_names: list[str], targets: list[str]) -> list[str]:
    """Replace an alias by its module name where the model has that module."""
    return [TARGET_ALIASES[t] if t in TARGET_ALIASES and any(n.endswith("." + TARGET_ALIASES[t]) for n in module_names)
            else t for t in targets]


LORA_FAMILY = ("lora", "dora", "adalora")


def resolve_lora_targets(config: Any) -> None:
    """Fill ``lora.target_modules`` with the architecture's query/value projections when the user set
    none, or with every linear layer of the transformer blocks for ``[all-linear]``, so that run_config.yaml
    records what was adapted and a resume compares like with like."""
    if config.method not in LORA_FAMILY:
        return
    from_scratch = config.recipe == "causal_lm" and config.lm.from_scratch
    if config.lora.target_modules == [ALL_LINEAR]:
        model_config = load_model_config("gpt2" if from_scratch else config.model)
        config.lora.target_modules = block_linear_layers(skeleton(model_config))
        return
    if config.lora.target_modules:
        return
    model_type = "gpt2" if from_scratch else load_model_config(config.model).model_type
    names = None
    if not has_default_targets(model_type):  # recognise it by its layer names
        names = [n for n, _ in skeleton(load_model_config(config.model)).named_modules()]
    config.lora.target_modules = lora_targets(model_type, names)


def apply_method(model: torch.nn.Module, config: Any, task_type: str | None,
                 fresh_head: bool = True, new_token_ids: list[int] | None = None) -> torch.nn.Module:
    """Prepare ``model`` for ``config.method``; ``task_type`` is a peft TaskType name such as ``SEQ_CLS``
    (None: peft's generic wrapper). A ``fresh_head`` (a classifier: ``architectures.head_modules``)
    trains in full under every method but prompt tuning: it starts from random weights, and BERT's
    pooler feeds it. A language model's pretrained head is left to the method. ``new_token_ids``
    (tokens added to the vocabulary, such as ChatML's) have fresh embedding rows: under LoRA and its
    relatives those rows train and are saved with the adapter (peft's trainable tokens)."""
    method = config.method
    if method == "full":
        return model
    if method == "head":
        heads = head_modules(model) if fresh_head else []
        if not heads:
            raise PipelineError(f"method head needs a model with a separate task head; "
                                f"{type(model).__name__} has none, use method full or lora")
        for name, param in model.named_parameters():  # the encoder freezes; the head (and pooler) trains
            param.requires_grad = any(name.startswith(h + ".") for h in heads)
        return model
    if method not in PEFT_METHODS:
        raise PipelineError(f"method {method!r} is unknown; choose full, head or one of {', '.join(PEFT_METHODS)}")
    from peft import get_peft_model

    peft_config = _peft_config(model, config, task_type, fresh_head)
    if new_token_ids:
        if not hasattr(peft_config, "trainable_token_indices"):
            raise PipelineError(f"method {method} cannot train the embeddings of the {len(new_token_ids)} tokens added "
                                f"for the chat template; choose lora, dora, adalora or full, or a model that ships "
                                f"a chat template")
        peft_config.trainable_token_indices = new_token_rows(model, new_token_ids)
    try:
        return get_peft_model(model, peft_config)
    except ValueError as exc:  # peft's own refusals, e.g. prefix tuning on a model without a KV cache
        first = str(exc).strip().splitlines()[0]
        raise PipelineError(f"method {method} does not fit {type(model).__name__}: {first}; "
                            f"choose another method (lora works on every model)") from None


def _peft_config(model: torch.nn.Module, config: Any, task_type: str | None, fresh_head: bool) -> Any:
    import peft

    method, lora = config.method, config.lora
    names = [name for name, _ in model.named_modules()]

    def matches(target: str) -> list[str]:
        # peft's rule: a target names a module by its last dotted parts ("value", "output.dense").
        return [n for n in names if n == target or n.endswith("." + target)]

    task = getattr(peft.TaskType, task_type) if task_type else None  # None: any model (masked LMs)
    if method in ("prompt", "prefix"):
        if method == "prompt" and task_type in ("TOKEN_CLS", "QUESTION_ANS"):
            what = "token classification: the virtual tokens shift every tag position" if task_type == "TOKEN_CLS" \
                else "question answering: the virtual tokens shift every answer position"
            raise PipelineError(f"method prompt does not fit {what}; choose lora, dora, adalora or ia3")
        if method == "prefix" and task_type != "CAUSAL_LM" and \
                "past_key_values" not in inspect.signature(model.forward).parameters:
            # peft's classification path looks for a past_key_values argument: BERT-family encoders
            # have none in transformers 5, decoders take it under another name; the causal-LM path works.
            raise PipelineError(f"method prefix needs a model that takes past keys and values; "
                                f"{type(model).__name__} takes none under the name peft looks for, so prefix "
                                f"tuning runs with the causal_lm recipe only; choose prompt or lora here")
        cls = peft.PromptTuningConfig if method == "prompt" else peft.PrefixTuningConfig
        return cls(task_type=task, num_virtual_tokens=config.prompt.num_virtual_tokens)
    if task_type == "QUESTION_ANS":
        # peft's question-answering wrapper hands the model neither token_type_ids nor position_ids
        # outside prompt learning (peft 0.21): a BERT-family span reader would train without its
        # segment embeddings and answer differently once merged. The generic wrapper passes every
        # input through; the span head is saved below as any fresh head is.
        task = None
    extra = head_parameters_to_save(model) if fresh_head else []
    if method == "ia3":
        ours = ia3_targets(model_type_of(model))  # else peft knows the architecture's layers
        targets = dict(target_modules=ours[0], feedforward_modules=ours[1]) if ours else {}
        return peft.IA3Config(task_type=task, modules_to_save=extra or None, **targets)
    if not lora.target_modules:  # set by resolve_lora_targets for a run; here for direct callers
        lora.target_modules = lora_targets(model_type_of(model), names)
    targets = expand_target_aliases(names, list(lora.target_modules))
    missing = [m for m in targets if not matches(m)]
    if missing:
        linear = sorted(linear_layer_names(model))
        raise PipelineError(f"lora.target_modules {missing} are not modules of {type(model).__name__}; "
                            f"its linear layers are named {', '.join(linear)} (or leave lora.target_modules "
                            f"unset for the architecture's query/value projections)")
    adapted = {n for m in targets for n in matches(m)}
    # A head module that LoRA already adapts (target "dense" reaches the pooler) is not also trained in full.
    extra = [h for h in extra if h not in adapted]
    # GPT-2's projections are Conv1D, weights stored transposed: peft needs to be told (else it warns)
    conv1d = any(type(module).__name__ == "Conv1D" for name, module in model.named_modules() if name in adapted)
    common = dict(task_type=task, r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                  target_modules=targets, modules_to_save=extra or None, fan_in_fan_out=conv1d)
    if method == "adalora":
        # total_step is set from the Trainer's real step count when training starts (AdaLoraSchedule).
        return peft.AdaLoraConfig(init_r=lora.r, target_r=max(1, lora.r // 2), total_step=1_000_000,
                                  **{k: v for k, v in common.items() if k != "r"})
    return peft.LoraConfig(use_dora=method == "dora", **common)


def new_token_rows(model: torch.nn.Module, token_ids: list[int]) -> dict[str, list[int]]:
    """peft's trainable-token targets for ``token_ids``: the input embedding's rows, and the output
    layer's where it is not tied to the embedding (peft ties a tied one itself). The output rows
    matter: an added end-of-turn token must be predicted for the model to stop."""
    modules = {id(module): name for name, module in model.named_modules()}
    embedding, output = model.get_input_embeddings(), model.get_output_embeddings()
    rows = {modules[id(embedding)].rsplit(".", 1)[-1]: list(token_ids)}
    if output is not None and output.weight is not embedding.weight:
        rows[modules[id(output)].rsplit(".", 1)[-1]] = list(token_ids)
    return rows


def parameter_report(model: torch.nn.Module) -> dict[str, float]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": trainable, "total": total, "percent": 100.0 * trainable / max(total, 1)}
