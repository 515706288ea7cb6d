"""A question-answering model's start and end logits as one ``logits`` tensor of shape (batch,
tokens, 2): the output every engine, backend and converted graph reads. transformers' QA heads
compute exactly this (``qa_outputs``) and then split it; joining it again lets the torch, ONNX Runtime
and OpenVINO runners treat a QA model like a token classifier with two scores per token."""
from __future__ import annotations

import inspect

import torch
from transformers.modeling_outputs import TokenClassifierOutput

from pipeline.models.architectures import beneath_adapter


class SpanLogits(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.config = model.config
        # DistilBERT takes no token types (a WordPiece tokenizer still gives them); a peft wrapper's
        # forward takes **kwargs, so the model beneath it says what it reads
        self.input_names = [name for name in ("input_ids", "attention_mask", "token_type_ids")
                            if name in inspect.signature(beneath_adapter(model).forward).parameters]

    @property
    def device(self) -> torch.device:
        return self.model.device

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> TokenClassifierOutput:
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None and \
            "token_type_ids" in self.input_names else {}
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra)
        return TokenClassifierOutput(logits=torch.stack([out.start_logits, out.end_logits], dim=-1))


def span_logits(model: torch.nn.Module) -> torch.nn.Module:
    """A QA model (bare or under an adapter) wrapped in ``SpanLogits``; any other model as it is."""
    if "QuestionAnswering" in type(beneath_adapter(model)).__name__ and not isinstance(model, SpanLogits):
        return SpanLogits(model)
    return model
