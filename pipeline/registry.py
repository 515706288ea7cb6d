"""The recipe registry: the one module under ``pipeline/`` that imports ``recipes``. The CLI resolves
a recipe here once and hands it down; every other module receives the recipe object."""
from __future__ import annotations

import difflib
import importlib
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.recipe import Recipe


def recipe_names() -> tuple[str, ...]:
    import recipes

    return recipes.NAMES


def config_dir() -> Path:
    """Where the shipped configs live (``pipeline train sst2_lora`` reads configs/sst2_lora.yaml)."""
    import recipes

    return recipes.CONFIG_DIR


def check_recipe_name(name: str) -> None:
    """Refuse an unknown recipe name without importing any recipe (config validation calls this)."""
    names = recipe_names()
    if name not in names:
        close = difflib.get_close_matches(name, list(names), n=1)
        hint = f"did you mean {close[0]}?" if close else f"choose one of {', '.join(names)}"
        raise PipelineError(f"recipe {name!r} is unknown; {hint}")


def get_recipe(name: str) -> Recipe:
    check_recipe_name(name)
    return importlib.import_module(f"recipes.{name}").RECIPE


def listing() -> list[str]:
    """``pipeline recipes``: each recipe with the commands its runs support, then each shipped config."""
    import yaml

    from pipeline.recipe import COMMANDS

    lines = []
    for name in recipe_names():
        recipe = get_recipe(name)
        commands = ", ".join(c for c in COMMANDS if c in recipe.commands)
        lines.append(f"recipe  {name:28s} {recipe.summary} (commands: {commands})")
    configs = config_dir()
    for path in sorted(configs.glob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        data_name = (data.get("dataset") or {}).get("name", "files")
        lines.append(f"config  {path.stem:28s} {data.get('recipe')}, {data.get('model', 'minilm')}, "
                     f"{data.get('method', 'lora')}, {data_name}  ({path.relative_to(configs.parent.parent)})")
    return lines
