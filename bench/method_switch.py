"""A method switched by an override: does the run take the new method's settings? SST-2 on the packaged
MiniLM, two seeds, scored on the 872-sentence dev set:

- `sst2_setfit` (128 sentences, 64 of each label): the shipped SetFit config;
- `sst2_lora method=setfit dataset.max_train_samples=128`: the LoRA config switched to SetFit, which
  now drops the LoRA config's learning rate and epochs for SetFit's own;
- with ``--before``, the same switch with the LoRA config's settings forced back by overrides
  (`training.learning_rate=1e-3 training.num_train_epochs=3`): what the switch did before the rule
  (three times as long).

Prints a table with the machine line; about 15 minutes on 2 CPU cores (45 with ``--before``). Not
part of CI.

    python bench/method_switch.py [--seeds 1 2] [--before]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import machine  # noqa: E402
from pipeline.cli import main  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "method_switch"
RUNS = {
    "sst2_setfit (shipped)": ["sst2_setfit"],
    "sst2_lora method=setfit (the rule)": ["sst2_lora", "method=setfit", "dataset.max_train_samples=128"],
    "the same, LoRA's lr 1e-3 and 3 epochs forced": ["sst2_lora", "method=setfit", "dataset.max_train_samples=128",
                                                     "training.learning_rate=1e-3", "training.num_train_epochs=3"],
}


def run(name: str, args: list[str], seed: int) -> dict[str, float]:
    out = OUT / f"{list(RUNS).index(name)}_seed{seed}"
    metrics = out / "metrics.json"
    if not metrics.exists() or "validation" not in json.loads(metrics.read_text()):
        if main(["train", *args, f"seed={seed}", f"output_dir={out}", "--overwrite"]):
            raise SystemExit(f"run {out} failed")
    found = json.loads(metrics.read_text())
    training = yaml.safe_load((out / "run_config.yaml").read_text())["training"]
    return {"accuracy": found["validation"]["accuracy"], "seconds": found["train"]["seconds"],
            "learning_rate": training["learning_rate"], "epochs": training["num_train_epochs"]}


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--before", action="store_true", help="also the switch with LoRA's settings forced back")
    args = parser.parse_args()
    names = list(RUNS) if args.before else list(RUNS)[:2]
    rows = {name: [run(name, RUNS[name], seed) for seed in args.seeds] for name in names}
    print(machine())
    print(f"SST-2, 128 training sentences, MiniLM-L6, method setfit; dev accuracy on 872 sentences, seeds "
          f"{', '.join(map(str, args.seeds))}\n")
    print("| run | learning rate | epochs | dev accuracy per seed | mean | training s (mean) |")
    print("|---|---|---|---|---|---|")
    for name, results in rows.items():
        accuracies = [r["accuracy"] for r in results]
        print(f"| {name} | {results[0]['learning_rate']:g} | {results[0]['epochs']} | "
              f"{', '.join(f'{a:.4f}' for a in accuracies)} | {statistics.mean(accuracies):.4f} | "
              f"{statistics.mean(r['seconds'] for r in results):.0f} |")


if __name__ == "__main__":
    main_bench()
