"""What turning the model's dropout off buys on each encoder recipe: the shipped config as it is (the
checkpoint's dropout, 0.1 in MiniLM) against `training.dropout=0 lora.dropout=0`, which on a CPU
also lets short rows train with eager attention (bench/attention.py). Same rows, epochs and seed;
training samples per second and the recipe's validation metric.

On a CPU, dropout's random masks are drawn element by element by the generator (no vectorised
kernel), which costs as much as a good share of the matrix multiplies when the model is small.

    python bench/dropout_speed.py [--configs sst2_lora wnut17_lora conll2003_lora tiny_shakespeare_mlm]
                                  [--seeds 42] [--rows 4000] [--epochs 1]

About 10 minutes on 2 CPU cores with the defaults; needs the machine to itself. Not part of CI.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402
from bench.settings_sweep import speed_up, sweep, train_shipped  # noqa: E402
from pipeline.log import use_terminal  # noqa: E402

# MiniLM's and the MLM BERT's checkpoints both set 0.1 (hidden states and attention)
SETTINGS = {"checkpoint's dropout": ["training.dropout=0.1", "lora.dropout=0.1"],
            "dropout off": ["training.dropout=0", "lora.dropout=0"]}
BASELINE = "checkpoint's dropout"


def run(name: str, setting: list[str], overrides: list[str]) -> dict:
    recipe, metrics = train_shipped(name, [*overrides, *setting])
    return {"samples_per_second": metrics["train"]["samples_per_second"], "attention": metrics["train"]["attention"],
            "metric": recipe.metric, "value": metrics["validation"][recipe.metric]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+",
                        default=["sst2_lora", "wnut17_lora", "conll2003_lora", "tiny_shakespeare_mlm"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--rows", type=int, default=4000, help="training rows (MLM: text lines before blocking)")
    parser.add_argument("--epochs", type=float, default=1)
    args = parser.parse_args()
    use_terminal()
    results = sweep(args.configs, args.seeds, SETTINGS, args.rows, args.epochs, run)
    print(f"\n{machine()}\n{args.rows:,} training rows, {args.epochs:g} epoch(s), bf16 autocast where native; "
          f"validation metric of each recipe\n")
    print("| config | seed | setting | attention | samples/s | speed-up | validation metric |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['config']} | {r['seed']} | {r['setting']} | {r['attention']} | {r['samples_per_second']:.1f} | "
              f"{speed_up(results, r, BASELINE):.2f}x | {r['metric']} {r['value']:.4f} |")


if __name__ == "__main__":
    main()
