"""What running the masked-LM head on the masked tokens alone buys: the same masked-LM training with
the head over every position (what transformers' BertForMaskedLM computes, and this recipe did)
against the head over the masked 15% only. Same rows, masks, epochs and seed; training samples per
second and held-out loss (the two objectives are the same number, so the losses agree to rounding).

The packaged MLM BERT is 2 layers of width 128 under a 30,522-word output layer: at every position
that layer's logits, their softmax and its gradient are most of a training step.

    python bench/mlm_head.py [--configs tiny_shakespeare_mlm] [--seeds 42] [--rows 4000] [--epochs 1]

About 5 minutes on 2 CPU cores with the defaults; needs the machine to itself. Not part of CI.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402
from pipeline.config.loader import load_config  # noqa: E402
from pipeline.log import use_terminal  # noqa: E402

SETTINGS = {"every position": False, "masked tokens only": True}


def run(name: str, masked_only: bool, rows: int, epochs: float, seed: int, workdir: Path) -> dict:
    from pipeline.registry import get_recipe
    from pipeline.training.loops import train

    config = load_config(ROOT / f"recipes/configs/{name}.yaml", [
        f"dataset.max_train_samples={rows}", f"training.num_train_epochs={epochs}", f"seed={seed}",
        "training.eval_strategy=no", "training.save_strategy=no", f"output_dir={workdir / name}"])
    recipe = get_recipe(config.recipe)
    recipe.head_on_labelled_tokens = masked_only  # the baseline: the head over every position, as before
    run_dir = train(config, recipe, overwrite=True)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"samples_per_second": metrics["train"]["samples_per_second"], "train_loss": metrics["train"]["loss"],
            "loss": metrics["validation"]["loss"], "accuracy": metrics["validation"]["accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["tiny_shakespeare_mlm"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--rows", type=int, default=4000, help="text lines before cutting into blocks")
    parser.add_argument("--epochs", type=float, default=1)
    args = parser.parse_args()
    use_terminal()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            for seed in args.seeds:
                for setting, masked_only in SETTINGS.items():
                    result = run(name, masked_only, args.rows, args.epochs, seed, Path(tmp))
                    results.append({"config": name, "seed": seed, "setting": setting, **result})
                    print(results[-1], flush=True)
    print(f"\n{machine()}\n{args.rows:,} lines of text, {args.epochs:g} epoch(s), the config's precision by hardware\n")
    print("| config | seed | MLM head on | samples/s | speed-up | training loss | held-out loss | held-out accuracy |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        base = next(b for b in results if b["config"] == r["config"] and b["seed"] == r["seed"]
                    and b["setting"] == "every position")
        print(f"| {r['config']} | {r['seed']} | {r['setting']} | {r['samples_per_second']:.1f} | "
              f"{r['samples_per_second'] / base['samples_per_second']:.2f}x | {r['train_loss']:.4f} | "
              f"{r['loss']:.4f} | {r['accuracy']:.4f} |")


if __name__ == "__main__":
    main()
