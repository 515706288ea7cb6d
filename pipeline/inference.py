"""The batched inference engine behind ``predict`` and ``evaluate``.

Texts are sorted by length so each batch pads only to its own longest text, run under
``torch.inference_mode``, and returned in the caller's order.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from pipeline import runs
from pipeline.errors import PipelineError
from pipeline.models import hub_error, resolve_model


@dataclass
class TextClassifier:
    model: torch.nn.Module
    tokenizer: Any
    label_names: list[str]
    max_length: int = 128
    batch_size: int = 64

    @classmethod
    def from_run(cls, run_dir: str | Path, batch_size: int = 64, max_length: int | None = None) -> "TextClassifier":
        """Load a finished run: a full model, or the base model plus the run's LoRA adapter."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        run_dir = Path(run_dir)
        config = runs.load_run_config(run_dir)
        label_names = runs.load_labels(run_dir)
        labels = {"num_labels": len(label_names), "id2label": dict(enumerate(label_names)),
                  "label2id": {n: i for i, n in enumerate(label_names)}}
        tokenizer = AutoTokenizer.from_pretrained(run_dir)
        if runs.is_adapter_run(run_dir):
            from peft import PeftModel

            base_name = resolve_model(config.model)
            try:
                base = AutoModelForSequenceClassification.from_pretrained(base_name, **labels)
            except OSError as exc:
                raise hub_error(config.model, exc) from None
            if not (run_dir / "adapter_model.safetensors").exists():
                raise PipelineError(f"run folder {run_dir} has no adapter_model.safetensors; retrain the run")
            model = PeftModel.from_pretrained(base, run_dir)
        else:
            if not (run_dir / "model.safetensors").exists():
                raise PipelineError(f"run folder {run_dir} has neither a model nor an adapter; "
                                    f"the run did not finish, retrain or resume it")
            model = AutoModelForSequenceClassification.from_pretrained(run_dir)
        model.eval()
        return cls(model, tokenizer, label_names, max_length or config.dataset.max_length, batch_size)

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities, shape (len(texts), n_labels), in input order."""
        texts = check_texts(texts)
        order = np.argsort([-len(t) for t in texts], kind="stable")  # chars approximate tokens well
        device = next(self.model.parameters()).device
        out = np.zeros((len(texts), len(self.label_names)), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                idx = order[start:start + self.batch_size]
                batch = self.tokenizer([texts[i] for i in idx], truncation=True, max_length=self.max_length,
                                       padding=True, return_tensors="pt").to(device)
                logits = self.model(**batch).logits
                out[idx] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return out

    def predict(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """``[{"label": name, "score": probability}]`` per text, like the transformers pipelines."""
        probs = self.probabilities(texts)
        return [{"label": self.label_names[int(p.argmax())], "score": float(p.max())} for p in probs]


def check_texts(texts: Iterable[Any]) -> list[str]:
    texts = list(texts)
    if not texts:
        raise PipelineError("no texts to predict; give --text or --file")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise PipelineError(f"text {i + 1} is a {type(text).__name__}, not a string")
        if not text.strip():
            raise PipelineError(f"text {i + 1} is empty; remove it or give some words")
    return texts
