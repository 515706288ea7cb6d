"""Scenario B of the strategy exercise: 500 SST-2 training sentences, LoRA, with and without EDA
augmentation (random deletion and swap; three augmented copies per sentence), three seeds each.
Each seed draws its own 500 rows (the same rows with and without augmentation, so the pairs are
comparable) and sets the initialisation, the batch order and the augmentation. Scored on the
872-row dev set. Not part of CI (about 5 minutes on 2 CPU cores).

    python bench/augmentation.py [--seeds 1 2 3] [--factor 3] [--epochs 5]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.cli import main  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "augmentation"


def run(seed: int, factor: int, epochs: int) -> float:
    out = OUT / f"factor{factor}_seed{seed}"
    code = main(["train", "sst2_lora", "dataset.max_train_samples=500", f"seed={seed}", f"augment.factor={factor}",
                 f"training.num_train_epochs={epochs}", "training.save_strategy=no", "training.eval_strategy=no",
                 f"output_dir={out}", "--overwrite"])
    if code:
        raise SystemExit(f"run {out} failed")
    return json.loads((out / "metrics.json").read_text())["validation"]["accuracy"]


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--factor", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    results = {}
    for factor in (0, args.factor):
        results[factor] = [run(seed, factor, args.epochs) for seed in args.seeds]
    from bench.machine import machine

    print(f"\n{machine()}\n| training set | dev accuracy per seed | mean | std |\n|---|---|---|---|")
    for factor, accs in results.items():
        label = "500 rows" if not factor else f"500 rows + {factor * 500:,} EDA copies"
        print(f"| {label} | {', '.join(f'{a:.4f}' for a in accs)} | {statistics.mean(accs):.4f} | "
              f"{statistics.stdev(accs):.4f} |")
    (OUT / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main_bench()
