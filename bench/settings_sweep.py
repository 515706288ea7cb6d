"""Shipped configs trained under given overrides, for the benchmarks: ``train_shipped`` trains one
(also for `bench/batch_size.py` and `bench/train_throughput.py`); ``sweep`` and ``speed_up`` serve
those that compare a setting against the code path before it (`bench/dropout_speed.py`,
`bench/mlm_head.py`): each run's result printed as it lands, then a table of ratios to a baseline."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]


def train_shipped(name: str, overrides: list[str], **recipe_settings: Any) -> tuple[Any, dict]:
    """Train the shipped config ``name`` with ``overrides``; ``recipe_settings`` are set on its recipe
    for this run alone. Returns the recipe and the run's metrics.json."""
    from pipeline.config.loader import load_config
    from pipeline.registry import get_recipe
    from pipeline.training.loops import train

    config = load_config(ROOT / f"recipes/configs/{name}.yaml", overrides)
    recipe = get_recipe(config.recipe)
    before = {key: getattr(recipe, key) for key in recipe_settings}
    for key, value in recipe_settings.items():
        setattr(recipe, key, value)
    try:
        run_dir = train(config, recipe, overwrite=True)
    finally:
        for key, value in before.items():
            setattr(recipe, key, value)
    return recipe, json.loads((run_dir / "metrics.json").read_text())


def sweep(configs: list[str], seeds: list[int], settings: dict[str, Any], rows: int, epochs: float,
          run: Callable[[str, Any, list[str]], dict]) -> list[dict]:
    """``run(config, setting value, overrides)`` for every config, seed and setting, on ``rows``
    training rows for ``epochs`` without evaluation or checkpoints during training."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in configs:
            for seed in seeds:
                for setting, value in settings.items():
                    overrides = [f"dataset.max_train_samples={rows}", f"training.num_train_epochs={epochs}",
                                 f"seed={seed}", "training.eval_strategy=no", "training.save_strategy=no",
                                 f"output_dir={Path(tmp) / name}"]
                    results.append({"config": name, "seed": seed, "setting": setting, **run(name, value, overrides)})
                    print(results[-1], flush=True)
    return results


def speed_up(results: list[dict], row: dict, baseline: str) -> float:
    """``row``'s samples per second over its config and seed's run under the ``baseline`` setting."""
    base = next(r for r in results if r["config"] == row["config"] and r["seed"] == row["seed"]
                and r["setting"] == baseline)
    return row["samples_per_second"] / base["samples_per_second"]
