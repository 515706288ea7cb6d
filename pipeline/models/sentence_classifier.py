"""The model a SetFit run saves: a sentence encoder, its pooling, optional L2 normalisation and a
linear head, as one torch module that returns logits like a transformers classifier.

The run folder holds the encoder as a sentence-transformers model (``SentenceTransformer(run_dir)``
loads it) and the head as safetensors, no pickle. Every engine, backend, export and push reads a
SetFit run through ``SentenceClassifier``; ``pipeline.training.setfit`` trains one.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import torch

from pipeline.errors import PipelineError
from pipeline.models.pretrained import load_pretrained

SETTINGS_FILE = "sentence_classifier.json"  # pooling, normalisation: what turns token states into the head's input
HEAD_FILE = "classifier_head.safetensors"
POOLING_MODES = ("cls", "mean", "max")



def is_setfit_run(run_dir: str | Path) -> bool:
    return (Path(run_dir) / SETTINGS_FILE).exists()


def run_files(run_dir: str | Path) -> list[str]:
    """A SetFit run's files beyond a transformers model's (what a push uploads): the head, its
    settings, and the sentence-transformers module files (``1_Pooling/config.json``, ...)."""
    run_dir = Path(run_dir)
    names = [SETTINGS_FILE, HEAD_FILE, "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"]
    modules = json.loads((run_dir / "modules.json").read_text()) if (run_dir / "modules.json").exists() else []
    for module in modules:
        if module.get("path"):
            names += [p.relative_to(run_dir).as_posix() for p in sorted((run_dir / module["path"]).rglob("*"))
                      if p.is_file()]
    return [name for name in names if (run_dir / name).is_file()]


class SentenceClassifier(torch.nn.Module):
    """A sentence encoder, its pooling, optional L2 normalisation and a linear head, as one module
    whose output has ``.logits`` like a transformers classifier's."""

    def __init__(self, encoder: Any, head: torch.nn.Linear, pooling: str, normalize: bool):
        super().__init__()
        if pooling not in POOLING_MODES:
            raise PipelineError(f"sentence pooling {pooling!r} is not supported; supported: {', '.join(POOLING_MODES)}")
        self.encoder, self.head, self.pooling, self.normalize = encoder, head, pooling, normalize
        self._takes_token_types = "token_type_ids" in inspect.signature(encoder.forward).parameters

    @property
    def config(self) -> Any:
        return self.encoder.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False) -> Any:
        from transformers.modeling_outputs import SequenceClassifierOutput

        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None and self._takes_token_types else {}
        encoded = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                               output_hidden_states=output_hidden_states, **extra)
        embedding = pool(encoded.last_hidden_state, attention_mask, self.pooling)
        if self.normalize:
            embedding = torch.nn.functional.normalize(embedding, dim=-1)
        return SequenceClassifierOutput(logits=self.head(embedding),
                                        hidden_states=encoded.hidden_states)

    def save_pretrained(self, folder: str | Path, **_: Any) -> None:
        """The encoder as a transformers model, the pooling settings and the head beside it."""
        from safetensors.torch import save_file

        folder = Path(folder)
        self.encoder.save_pretrained(folder)
        settings = {"pooling": self.pooling, "normalize": self.normalize, "labels": self.head.out_features}
        (folder / SETTINGS_FILE).write_text(json.dumps(settings, indent=1) + "\n", encoding="utf-8")
        save_file({"weight": self.head.weight.detach().float().contiguous(),
                   "bias": self.head.bias.detach().float().contiguous()}, str(folder / HEAD_FILE))

    @classmethod
    def from_pretrained(cls, folder: str | Path, trust_remote_code: bool = False) -> "SentenceClassifier":
        from safetensors.torch import load_file
        from transformers import AutoModel

        folder = Path(folder)
        settings = json.loads((folder / SETTINGS_FILE).read_text(encoding="utf-8"))
        if not (folder / HEAD_FILE).exists():
            raise PipelineError(f"SetFit run {folder} has no {HEAD_FILE}; the run did not finish, train it again")
        weights = load_file(str(folder / HEAD_FILE))
        head = torch.nn.Linear(weights["weight"].shape[1], weights["weight"].shape[0])
        head.load_state_dict(weights)
        encoder = load_pretrained(AutoModel, str(folder), trust_remote_code)
        return cls(encoder, head, settings["pooling"], settings["normalize"]).eval()


def pool(states: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """One vector per text from the token states, padding left out (sentence-transformers' Pooling)."""
    if mode == "cls":
        return states[:, 0]
    keep = mask.unsqueeze(-1).to(states.dtype)
    if mode == "max":
        return states.masked_fill(keep == 0, torch.finfo(states.dtype).min).max(dim=1).values
    return (states * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1e-9)
