"""The recipe registry: the one way the library reaches ``recipes/``.

Recipes sit above the library and import it; the library never imports them by name. It asks the
registry, which loads the ``recipes`` package (its list of names and shipped configs) and a recipe's
module with ``importlib`` when one is asked for, the way transformers' Auto classes map a model type
to a module. This module sits low (config validation checks a recipe's name here) and imports only
``errors``.
"""
from __future__ import annotations

import difflib
import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import PipelineError

if TYPE_CHECKING:
    from pipeline.recipe import Recipe

RECIPES_PACKAGE = "recipes"


def recipe_names() -> tuple[str, ...]:
    """The recipes, in the order ``pipeline recipes`` and the README list them."""
    return importlib.import_module(RECIPES_PACKAGE).NAMES


def config_dir() -> Path:
    """Where the shipped configs live (``pipeline train sst2_lora`` reads configs/sst2_lora.yaml)."""
    return importlib.import_module(RECIPES_PACKAGE).CONFIG_DIR


def check_recipe_name(name: str) -> None:
    """Refuse an unknown recipe name without importing any recipe's module."""
    names = recipe_names()
    if name not in names:
        close = difflib.get_close_matches(name, list(names), n=1)
        hint = f"did you mean {close[0]}?" if close else f"choose one of {', '.join(names)}"
        raise PipelineError(f"recipe {name!r} is unknown; {hint}")


def get_recipe(name: str) -> Recipe:
    check_recipe_name(name)
    return importlib.import_module(f"{RECIPES_PACKAGE}.{name}").RECIPE
