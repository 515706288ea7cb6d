"""``pipeline compare``: one config trained with several methods (the same data, epochs and seed,
each method at its own default learning rate), measured side by side.

Each method runs in its own process, so that its peak memory is its own and one method's failure
(a method that does not fit the model) costs a table row, not the comparison.
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from pipeline.config.loader import apply_overrides, load_yaml, validate
from pipeline.config.schema import METHODS
from pipeline.errors import PipelineError
from pipeline.log import log
from pipeline.registry import get_recipe
from pipeline.training.setfit import SETFIT_TRAINING_KEYS

RESULTS = ("comparison.json", "comparison.md", "comparison.png")


def compare(config_path: str | Path, overrides: list[str], methods: list[str], out_dir: str | Path,
            overwrite: bool = False, keep_learning_rate: bool = False) -> list[dict[str, Any]]:
    """Train the config once per method (each in its own process) and tabulate the measurements."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise PipelineError(f"--methods {','.join(unknown) or '(none)'}: choose from {', '.join(METHODS)}")
    data = apply_overrides(load_yaml(config_path), overrides)
    data.setdefault("output_dir", str(out_dir))
    base = validate(data)  # a bad key fails now, not after the first method has trained
    recipe = get_recipe(base.recipe)
    recipe.require("compare")
    metric = recipe.metric
    out_dir = Path(out_dir)
    taken = [p.name for p in [out_dir / r for r in RESULTS] + [out_dir / m for m in methods] if p.exists()]
    if taken and not overwrite:
        raise PipelineError(f"{out_dir} already holds {', '.join(taken)}; pass --overwrite or choose another --output-dir")
    (out_dir / "configs").mkdir(parents=True, exist_ok=True)
    training = data["training"] = dict(data.get("training") or {})
    if not keep_learning_rate:
        training.pop("learning_rate", None)  # each method at its own default (pipeline.methods)
    rows = []
    for method in methods:
        config = copy.deepcopy(data)
        config["method"], config["output_dir"] = method, str(out_dir / method)
        if method != "full":
            config["training"].pop("layerwise_lr_decay", None)
        if method == "setfit":  # it reads a few training keys (and its epochs are passes over sentence pairs)
            config["training"] = {k: v for k, v in config["training"].items()
                                  if k in SETFIT_TRAINING_KEYS and k != "num_train_epochs"}
        config_file = out_dir / "configs" / f"{method}.yaml"
        config_file.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        method_log = out_dir / f"{method}.log"
        log.info(f"compare: training {method} (log: {method_log})")
        with method_log.open("w", encoding="utf-8") as f:
            code = subprocess.run([sys.executable, "-m", "pipeline", "train", str(config_file), "--overwrite"],
                                  stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}).returncode
        row = collect(out_dir / method, metric) if code == 0 else {"method": method, "error": _last_error(method_log)}
        row["method"] = method
        rows.append(row)
        log.info("compare: " + format_row(row, metric))
    write_results(rows, out_dir, metric, base, training)
    return rows


def collect(run_dir: Path, metric: str) -> dict[str, Any]:
    """The comparison's numbers from one finished run folder."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    train, params = metrics["train"], metrics["parameters"]
    inference = None
    records = run_dir / "metrics.jsonl"
    for line in records.read_text().splitlines() if records.exists() else []:
        record = json.loads(line)
        inference = record.get("eval_samples_per_second", inference)
    return {"trainable": params["trainable"], "total": params["total"], "percent": params["percent"],
            "metric": metrics["validation"][metric], "train_seconds": train["seconds"],
            "samples_per_second": train["samples_per_second"], "peak_memory_mb": train.get("peak_memory_mb"),
            "checkpoint_mb": sum(p.stat().st_size for p in run_dir.glob("*.safetensors")) / 2**20,
            "eval_samples_per_second": inference}


def _last_error(method_log: Path) -> str:
    lines = [line for line in method_log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["failed without output"])[-1].removeprefix("error: ")[:300]


def format_row(row: dict[str, Any], metric: str) -> str:
    if "error" in row:
        return f"{row['method']}: failed: {row['error']}"
    return (f"{row['method']}: {metric} {row['metric']:.4f}, {row['trainable']:,} trainable ({row['percent']:.2f}%), "
            f"{row['train_seconds']:.0f} s, {row['samples_per_second']:.1f} samples/s, "
            f"peak {row['peak_memory_mb']:.0f} MB, checkpoint {row['checkpoint_mb']:.1f} MB")


def markdown_table(rows: list[dict[str, Any]], metric: str) -> str:
    lines = [f"| method | trainable | % | validation {metric} | train time | samples/s | peak memory | checkpoint "
             f"| eval samples/s |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['method']} | - | - | failed: {row['error']} | - | - | - | - | - |")
            continue
        inference = f"{row['eval_samples_per_second']:.0f}" if row.get("eval_samples_per_second") else "-"
        size = row["checkpoint_mb"]
        size = f"{size:.1f} MB" if size >= 1 else f"{size * 1024:.0f} KB"
        lines.append(f"| {row['method']} | {row['trainable']:,} | {row['percent']:.2f} | {row['metric']:.4f} | "
                     f"{row['train_seconds']:.0f} s | {row['samples_per_second']:.1f} | {row['peak_memory_mb']:.0f} MB | "
                     f"{size} | {inference} |")
    return "\n".join(lines)


def write_results(rows: list[dict[str, Any]], out_dir: Path, metric: str, config: Any,
                  training: dict[str, Any]) -> None:
    memory = "CUDA peak allocation" if _on_gpu() else "process peak RSS"
    settings = ", ".join(f"{k}={v}" for k, v in training.items()) or "the defaults"
    rate = ("every method at the learning rate above" if "learning_rate" in training
            else "each method at its default learning rate")
    setup = (f"{config.model} on {config.dataset.name or config.dataset.train_file}, "
             f"{config.dataset.max_train_samples or 'all'} training rows, seed {config.seed}, "
             f"training {settings}, {rate}; peak memory = {memory}")
    (out_dir / "comparison.json").write_text(json.dumps({"setup": setup, "metric": metric, "rows": rows}, indent=2),
                                             encoding="utf-8")
    (out_dir / "comparison.md").write_text(f"# Method comparison\n\n{setup}.\n\n{markdown_table(rows, metric)}\n",
                                           encoding="utf-8")
    plot_comparison(rows, metric, out_dir / "comparison.png")
    log.info(f"compare: wrote {', '.join(str(out_dir / r) for r in RESULTS)}")


def plot_comparison(rows: list[dict[str, Any]], metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if "error" not in r]
    panels = [("metric", f"validation {metric}"), ("percent", "trainable parameters (%)"),
              ("samples_per_second", "training samples/s"), ("peak_memory_mb", "peak memory (MB)")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4))
    names = [r["method"] for r in done]
    for ax, (key, title) in zip(axes, panels):
        values = [r.get(key) or 0 for r in done]
        bars = ax.bar(names, values, color="#4C72B0")
        ax.bar_label(bars, fmt="%.3g", fontsize=7)
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", rotation=45, labelsize=8)
        if key == "percent":
            ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()
