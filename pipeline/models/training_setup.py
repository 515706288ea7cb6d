"""How a loaded model trains: its own dropout (``training.dropout``), the attention kernel its
training steps use on a CPU, and a masked-LM head that scores the masked tokens alone.

Both are set on the modules of the loaded model, not in its config, so the saved run keeps the
checkpoint's values: a model fine-tuned from the run starts from what the checkpoint shipped with.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch

# The number attributes attention modules read their dropout probability from (BERT-family modules hold
# an nn.Dropout and pass its p to the attention function; Llama-type ones keep a float).
ATTENTION_DROPOUT_ATTRIBUTES = ("attention_dropout", "dropout_prob", "attn_dropout")

# Longest training row (tokens) up to which eager attention trains faster than SDPA on a CPU (bench/attention.py:
# SDPA's CPU kernel without dropout is flash attention, whose backward pass is slow on short rows).
EAGER_ATTENTION_MAX_TOKENS = 128


def is_probability(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def set_dropout(model: torch.nn.Module, probability: float) -> None:
    """Set every dropout of ``model`` (embeddings, attention, hidden states, classifier head) to
    ``probability``. Adapter dropouts (``lora.dropout``) are added later and keep their own setting."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = probability
        for name in ATTENTION_DROPOUT_ATTRIBUTES:
            if is_probability(getattr(module, name, None)):
                setattr(module, name, probability)


def attention_dropout_off(model: torch.nn.Module) -> bool:
    """Whether no attention module of ``model`` drops attention weights in training."""
    for module in model.modules():
        if not type(module).__name__.endswith("Attention"):
            continue
        for name in ("dropout", *ATTENTION_DROPOUT_ATTRIBUTES):
            value = getattr(module, name, None)
            probability = value.p if isinstance(value, torch.nn.Dropout) else value
            if is_probability(probability) and probability > 0:
                return False
    return True


def choose_training_attention(model: Any, longest_row: int | None, on_cpu: bool) -> str:
    """The attention implementation ``model`` trains with: eager where it is faster, on a CPU for
    rows of at most EAGER_ATTENTION_MAX_TOKENS tokens with attention dropout off, else what loaded.
    (With attention dropout SDPA takes its math path, which is eager attention already.)"""
    current = getattr(model.config, "_attn_implementation", None)
    if (on_cpu and current == "sdpa" and longest_row is not None and longest_row <= EAGER_ATTENTION_MAX_TOKENS
            and attention_dropout_off(model)):
        try:
            model.set_attn_implementation("eager")
        except (ValueError, AttributeError):  # an architecture without an eager path keeps SDPA
            return current
        return "eager"
    return current or "eager"


@contextlib.contextmanager
def head_on_positions(model: torch.nn.Module, positions: torch.Tensor) -> Iterator[bool]:
    """Within the block, ``model``'s encoder hands its head the hidden states at ``positions`` alone
    (a boolean batch x sequence mask), as one row: the head's outputs are then (1, positions, ...).
    A masked-LM head is per-token, so it computes its vocabulary-wide logits for the masked tokens
    only (15% of them) instead of for every position, which on a small encoder is most of a training
    step. Yields whether it applies: False, changing nothing, where the encoder (transformers'
    ``base_model``) is not a module of its own."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # under a peft wrapper
    encoder = getattr(inner, "base_model", inner)
    if encoder is inner:
        yield False
        return

    def gather(module: torch.nn.Module, args: Any, output: Any) -> Any:
        hidden = output[0][positions].unsqueeze(0)
        if isinstance(output, tuple):
            return (hidden, *output[1:])
        output[next(iter(output.keys()))] = hidden  # a ModelOutput: its first field is the sequence output
        return output

    handle = encoder.register_forward_hook(gather)
    try:
        yield True
    finally:
        handle.remove()
