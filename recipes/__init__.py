"""Task recipes. Each module defines ``RECIPE``, a ``pipeline.recipe.Recipe`` that says what a task is
(data, tokenization, model head, metrics, the commands its runs support); ``pipeline.training`` says
how every task is run. ``pipeline.registry`` is the one place that looks recipes up."""
from __future__ import annotations

from pathlib import Path

NAMES = ("sequence_classification", "token_classification", "masked_lm", "causal_lm")

CONFIG_DIR = Path(__file__).parent / "configs"
