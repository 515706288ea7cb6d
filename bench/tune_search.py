"""`pipeline tune` against the shipped settings: sst2_lora on 2,000 SST-2 training rows.

1. The shipped config trained with each seed (42 and 43 unless --seeds): dev accuracy (872 sentences).
2. `pipeline tune sst2_lora dataset.max_train_samples=2000 --trials 12` (the method's default
   space: learning rate, epochs, warmup, weight decay, LoRA r, alpha and target layers), its trial table.
3. The best config it writes, trained with the same seeds: dev accuracy.

Usage: python bench/tune_search.py [--rows 2000] [--trials 12] [--seeds 42 43 44 45]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402


def pipeline(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"pipeline {' '.join(map(str, args))} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def dev_accuracy(config: str, rows: int, seed: int, out: Path) -> float:
    pipeline("train", config, f"dataset.max_train_samples={rows}", f"seed={seed}", f"output_dir={out}")
    return json.loads((out / "metrics.json").read_text())["validation"]["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43], help="training seeds of both settings")
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shipped = [dev_accuracy("sst2_lora", args.rows, seed, folder / f"shipped-{seed}") for seed in args.seeds]
        start = time.perf_counter()
        pipeline("tune", "sst2_lora", f"dataset.max_train_samples={args.rows}", "--trials", args.trials,
                 "--output", folder / "tune")
        search_s = time.perf_counter() - start
        print(f"\n`pipeline tune sst2_lora dataset.max_train_samples={args.rows} --trials {args.trials}`: "
              f"{search_s / 60:.1f} min; its trials (validation accuracy at the last evaluation):\n")
        print((folder / "tune" / "trials.md").read_text())
        best = folder / "tune" / "best_config.yaml"
        tuned = [dev_accuracy(str(best), args.rows, seed, folder / f"tuned-{seed}") for seed in args.seeds]
        n = len(args.seeds)
        print(f"| settings | dev accuracy, mean | {' | '.join(f'seed {seed}' for seed in args.seeds)} |")
        print("|---|---|" + "---|" * n)
        for name, scores in (("shipped sst2_lora", shipped), ("best of the search", tuned)):
            print(f"| {name} | {sum(scores) / n:.4f} | {' | '.join(f'{a:.4f}' for a in scores)} |")
        gain = (sum(tuned) - sum(shipped)) / n * 100
        print(f"\nthe best settings against the shipped ones: {gain:+.2f} points of dev accuracy (mean of {n} seeds)")


if __name__ == "__main__":
    main()
