"""What differs between architectures, kept as data: where LoRA and IA3 go, and which parts of a
task model are its head.

LoRA's default targets are the attention query and value projections (the LoRA paper's choice),
named the way each architecture names them: peft's own table where it has the model type, ours for
the rest, and for a model type neither knows, the first query/value naming found in the model. The
head is found from the model itself: every part outside the base model (BERT's classifier,
DistilBERT's pre_classifier + classifier, DeBERTa's pooler + classifier, ModernBERT's head +
classifier, Llama's score), plus the base model's pooler where the task model uses one (BERT,
ALBERT). Under a peft method the head trains in full and is saved with the adapter.
"""
from __future__ import annotations

from typing import Any

import torch

from pipeline.errors import PipelineError

# Query/value projections for model types peft's table lacks (peft 0.21: distilbert, albert, modernbert).
LORA_TARGETS: dict[str, list[str]] = {
    "distilbert": ["q_lin", "v_lin"],
    "albert": ["query", "value"],
    "modernbert": ["Wqkv"],  # query, key and value share one fused projection
}

# IA3 scales keys, values and the feed-forward input: (targets, feed-forward modules among them).
IA3_TARGETS: dict[str, tuple[list[str], list[str]]] = {
    "distilbert": (["k_lin", "v_lin", "lin2"], ["lin2"]),
    "albert": (["key", "value", "ffn_output"], ["ffn_output"]),
    "electra": (["key", "value", "output.dense"], ["output.dense"]),
    "xlm-roberta": (["key", "value", "output.dense"], ["output.dense"]),
    "modernbert": (["Wqkv", "mlp.Wo"], ["mlp.Wo"]),
}

# The names under which architectures spell their query and value projections, for unknown types.
QUERY_VALUE_NAMES = (["query", "value"], ["q_proj", "v_proj"], ["query_proj", "value_proj"], ["q_lin", "v_lin"],
                     ["q", "v"], ["Wqkv"], ["qkv_proj"], ["c_attn"], ["query_key_value"])

# Head modules peft already trains and saves in full for classification task types.
PEFT_SAVED_HEADS = ("classifier", "score")


def has_default_targets(model_type: str) -> bool:
    """Whether ``model_type``'s LoRA targets are known without looking at its layers."""
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_TARGETS,
    )

    return model_type in LORA_TARGETS or model_type in PEFT_TARGETS


def lora_targets(model_type: str, module_names: list[str] | None = None) -> list[str]:
    """The default LoRA targets of ``model_type``; ``module_names`` (a model's, or a meta skeleton's)
    lets an unknown type be recognised by its layer names."""
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_TARGETS,
    )

    if model_type in LORA_TARGETS:
        return list(LORA_TARGETS[model_type])
    if model_type in PEFT_TARGETS:
        return list(PEFT_TARGETS[model_type])
    for names in QUERY_VALUE_NAMES:
        if module_names and all(any(n == t or n.endswith("." + t) for n in module_names) for t in names):
            return list(names)
    raise PipelineError(f"no default LoRA targets for model type {model_type!r}; set lora.target_modules to its "
                        f"attention projections (`pipeline lora-params --model ... --targets ...` lists its layers)")


def beneath_adapter(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under a peft wrapper, or ``model`` itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def linear_layers(model: torch.nn.Module) -> dict[str, tuple[int, int]]:
    """Every layer LoRA can adapt, by full name, with its (in, out) features: ``nn.Linear`` and
    GPT-2's ``Conv1D`` (a linear layer whose weight is stored transposed, (in, out))."""
    found = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            found[name] = (module.in_features, module.out_features)
        elif type(module).__name__ == "Conv1D":
            found[name] = tuple(module.weight.shape)
    return found


def linear_layer_names(model: torch.nn.Module) -> list[str]:
    """The short names (last dotted part) of a model's linear layers, in order of first appearance:
    what a LoRA target names (BERT: query, key, value, dense)."""
    return list(dict.fromkeys(name.rsplit(".", 1)[-1] for name in linear_layers(model)))


def block_linear_layers(model: torch.nn.Module) -> list[str]:
    """The linear layers of a model's repeated transformer blocks, named from inside the block
    (BERT: attention.self.query ... intermediate.dense, output.dense): what LoRA's all-linear adapts.
    Layers outside the blocks (BERT's pooler, task heads) are left to train as the head does."""
    names = []
    for name in linear_layers(model):
        parts = name.split(".")
        index = max((i for i, part in enumerate(parts) if part.isdigit()), default=None)
        if index is not None and index + 1 < len(parts):
            names.append(".".join(parts[index + 1:]))
    return list(dict.fromkeys(names))


def ia3_targets(model_type: str) -> tuple[list[str], list[str]] | None:
    """IA3's (targets, feed-forward modules) where peft has no entry for the type, else None (peft's own)."""
    return IA3_TARGETS.get(model_type)


def head_modules(model: torch.nn.Module) -> list[str]:
    """Full names of the task head's parts: the children outside the base model that hold weights,
    and the base model's pooler when it has one (the task model built it because it reads it)."""
    base_name = getattr(model, "base_model_prefix", "")
    base = getattr(model, base_name, None)
    if base is None:
        return []
    heads = [name for name, child in model.named_children()
             if child is not base and any(True for _ in child.parameters())]
    pooler = getattr(base, "pooler", None)
    if isinstance(pooler, torch.nn.Module) and any(True for _ in pooler.parameters()):
        heads.append(f"{base_name}.pooler")
    return heads


def head_parameters_to_save(model: torch.nn.Module) -> list[str]:
    """The head's weight-holding leaf modules that peft does not already save by itself, by full name.
    Leaves rather than containers: peft's IA3 merge expects every module it saves in full to have a weight."""
    out = []
    for head in head_modules(model):
        if head in PEFT_SAVED_HEADS:
            continue
        for name, module in model.named_modules():
            inside = name == head or name.startswith(head + ".")
            if inside and not list(module.children()) and any(True for _ in module.parameters(recurse=False)):
                out.append(name)
    return out


def model_type_of(model: Any) -> str:
    return getattr(getattr(model, "config", None), "model_type", "") or ""
