"""Training methods: full fine-tuning, head-only training and LoRA (through peft).

``apply_method`` takes a model with a task head and returns the model to train; ``parameter_report``
says how many parameters train.
"""
from __future__ import annotations

from typing import Any

import torch

from pipeline.errors import PipelineError

# Learning rates that work for each method when the user sets none (the usual ranges for BERT-size
# encoders: full fine-tuning moves pretrained weights and wants a small step, a fresh head or LoRA
# matrices start from zero and want a larger one).
DEFAULT_LEARNING_RATE = {"full": 2e-5, "head": 1e-3, "lora": 5e-4}


def apply_method(model: torch.nn.Module, method: str, lora: Any, task_type: str,
                 head_modules: tuple[str, ...] = ()) -> torch.nn.Module:
    """Prepare ``model`` for ``method``; ``task_type`` is a peft TaskType name such as ``SEQ_CLS``.
    ``head_modules`` are parts of the task head that live inside the base model (BERT's pooler):
    LoRA trains and saves them in full, like the fresh classifier peft already keeps."""
    if method == "full":
        return model
    if method == "head":
        base = getattr(model, "base_model", None)
        if base is None or base is model:
            raise PipelineError(f"method head needs a model with a separate task head; "
                                f"{type(model).__name__} has none, use method full or lora")
        for param in base.parameters():
            param.requires_grad = False
        return model
    if method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        missing = [m for m in lora.target_modules if m not in present]
        if missing:
            linear = sorted({name.rsplit(".", 1)[-1] for name, mod in model.named_modules()
                             if isinstance(mod, torch.nn.Linear)})
            raise PipelineError(f"lora.target_modules {missing} are not modules of {type(model).__name__}; "
                                f"its linear layers are named {', '.join(linear)}")
        extra = [name for name in head_modules if name in present]
        config = LoraConfig(task_type=getattr(TaskType, task_type), r=lora.r, lora_alpha=lora.alpha,
                            lora_dropout=lora.dropout, target_modules=list(lora.target_modules),
                            modules_to_save=extra or None)
        return get_peft_model(model, config)
    raise PipelineError(f"method {method!r} is unknown; choose full, head or lora")


def parameter_report(model: torch.nn.Module) -> dict[str, float]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": trainable, "total": total, "percent": 100.0 * trainable / max(total, 1)}
