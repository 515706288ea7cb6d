"""Task recipes. Each module defines ``RECIPE``, a ``pipeline.recipe.Recipe`` that says what a task is
(data, tokenization, model head, metrics, the commands its runs support); the library says how every
task is run. Recipes import the library; the library reaches them through ``pipeline.registry`` only,
which reads ``NAMES`` and ``CONFIG_DIR`` here. A new recipe is a module here and its name in ``NAMES``."""
from __future__ import annotations

from pathlib import Path

NAMES = ("sequence_classification", "token_classification", "question_answering", "masked_lm", "causal_lm",
         "instruction", "preference")

CONFIG_DIR = Path(__file__).parent / "configs"
