"""Task recipes. Each module says what a task is (data, tokenization, model head, metrics);
``pipeline.training`` says how every task is run."""
from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from pipeline.errors import PipelineError

RECIPES = {
    "sequence_classification": "one label per text (sentiment, topics); full, head or any peft method",
    "token_classification": "one tag per word (NER, IOB2), entity-level F1 with seqeval; full, head or peft",
    "masked_lm": "BERT-style pretraining: 15% masking (80/10/10), whole-word masking, next-sentence prediction",
    "causal_lm": "next-token prediction: GPT-2 from scratch with its own BPE tokenizer, or a decoder continued",
}

CONFIG_DIR = Path(__file__).parent / "configs"


def get_recipe(name: str) -> ModuleType:
    if name not in RECIPES:
        raise PipelineError(f"recipe {name!r} is unknown; choose one of {', '.join(RECIPES)}")
    return importlib.import_module(f"recipes.{name}")
