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
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402
from bench.settings_sweep import speed_up, sweep, train_shipped  # noqa: E402
from pipeline.log import use_terminal  # noqa: E402

SETTINGS = {"every position": False, "masked tokens only": True}


def run(name: str, masked_only: bool, overrides: list[str]) -> dict:
    # the baseline sets the recipe's switch off: the head over every position, as before
    _, metrics = train_shipped(name, overrides, head_on_labelled_tokens=masked_only)
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
    results = sweep(args.configs, args.seeds, SETTINGS, args.rows, args.epochs, run)
    print(f"\n{machine()}\n{args.rows:,} lines of text, {args.epochs:g} epoch(s), the config's precision by hardware\n")
    print("| config | seed | MLM head on | samples/s | speed-up | training loss | held-out loss | held-out accuracy |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['config']} | {r['seed']} | {r['setting']} | {r['samples_per_second']:.1f} | "
              f"{speed_up(results, r, 'every position'):.2f}x | {r['train_loss']:.4f} | "
              f"{r['loss']:.4f} | {r['accuracy']:.4f} |")


if __name__ == "__main__":
    main()
