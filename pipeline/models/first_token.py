"""BERT's last layer computed for [CLS] alone, for inference with a BERT-family sequence classifier
(the pooler reads nothing else): the same logits for about 1/L less work.

It reimplements the attention of ``BertLayer`` for one query position, so it is applied only where
that layer has the structure it was checked against: transformers ``TESTED_TRANSFORMERS`` (5.x) with
``attention.self`` holding query/key/value and ``num_attention_heads``/``attention_head_size``.
Elsewhere the model runs unchanged.
"""
from __future__ import annotations

from typing import Any

import torch

TESTED_TRANSFORMERS = 5  # the major version whose BertLayer this mirrors


class FirstTokenLayer(torch.nn.Module):
    """A BERT layer computed for the first ([CLS]) position only. Its keys and values still come
    from every token, but the query, the attention output and the feed-forward block run on one
    position instead of all of them. As the last layer of a BERT classifier, whose pooler reads
    nothing but that position, it gives the same logits (tested) for about 1/L less work."""

    def __init__(self, layer: torch.nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                *args: Any, **kwargs: Any) -> torch.Tensor:
        attention = self.layer.attention.self
        batch, length, _ = hidden_states.shape
        heads, size = attention.num_attention_heads, attention.attention_head_size
        query = attention.query(hidden_states[:, :1]).view(batch, 1, heads, size).transpose(1, 2)
        key = attention.key(hidden_states).view(batch, length, heads, size).transpose(1, 2)
        value = attention.value(hidden_states).view(batch, length, heads, size).transpose(1, 2)
        if attention_mask is not None and attention_mask.dim() == 4:
            attention_mask = attention_mask[:, :, :1, :]  # the first query's row
        context = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                                                   scale=attention.scaling)
        context = context.transpose(1, 2).reshape(batch, 1, heads * size)
        attended = self.layer.attention.output(context, hidden_states[:, :1])
        return self.layer.output(self.layer.intermediate(attended), attended)


def first_token_last_layer(model: torch.nn.Module) -> torch.nn.Module:
    """For inference with a BERT-family sequence classifier (pooler on [CLS]): compute the last
    layer for [CLS] alone. Other models are returned as they are."""
    import transformers

    if int(transformers.__version__.split(".")[0]) != TESTED_TRANSFORMERS:
        return model
    bert = getattr(model, "bert", None)
    layers = getattr(getattr(bert, "encoder", None), "layer", None)
    if bert is None or bert.pooler is None or not layers or model.training \
            or not hasattr(getattr(layers[-1], "attention", None), "self") or isinstance(layers[-1], FirstTokenLayer):
        return model
    layers[-1] = FirstTokenLayer(layers[-1])
    return model


