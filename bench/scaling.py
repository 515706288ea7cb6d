"""Scaling out on one machine: the same training run in one process and in two processes with each
launch preset (DDP, FSDP, DeepSpeed ZeRO-2 and ZeRO-3), through `accelerate launch` as a user runs it.

Every run fine-tunes MiniLM on the same SST-2 rows for one epoch, global batch 16 (one process of 16,
or two of 8), with evaluation and checkpoints off so the rate is training alone; the machine's cores
are shared out (one process x all threads, or two x half). Reported: training samples/s (and against
the single process), the peak resident memory of each process, and dev accuracy on 872 sentences.

Usage: python bench/scaling.py [--rows 2000] [--methods full,lora] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402

# name: (launch preset or None for a plain single process, processes)
SETUPS = {
    "1 process": (None, 1),
    "DDP, 2 processes": ("multi_cpu.yaml", 2),
    "FSDP, 2 processes": ("fsdp.yaml", 2),
    "ZeRO-2, 2 processes": ("deepspeed_zero2.yaml", 2),
    "ZeRO-3, 2 processes": ("deepspeed_zero3.yaml", 2),
}


def train(setup: str, method: str, rows: int, folder: Path) -> dict:
    preset, processes = SETUPS[setup]
    cores = os.cpu_count() or 2
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // processes)), "HF_HUB_OFFLINE": "1"}
    run = folder / f"{method}-{setup.split(',')[0].replace(' ', '')}"
    args = ["train", f"sst2_{method}", f"dataset.max_train_samples={rows}", "training.num_train_epochs=1",
            f"training.per_device_train_batch_size={16 // processes}", "training.eval_strategy=no",
            "training.save_strategy=no", f"output_dir={run}"]
    launcher = [sys.executable, "-m", "pipeline"] if preset is None else [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "launch" / preset),
        "-m", "pipeline"]
    done = subprocess.run([*launcher, *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1][:200]}
    metrics = json.loads((run / "metrics.json").read_text())
    return {"samples_per_second": metrics["train"]["samples_per_second"],
            "peak_memory_mb_per_process": metrics["train"]["peak_memory_mb_per_process"],
            "accuracy": metrics["validation"]["accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--methods", default="full,lora")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(machine())
    print(f"sst2: {args.rows} training rows, one epoch, global batch 16; dev accuracy on 872 sentences\n")
    print("| method | setup | samples/s | vs 1 process | peak memory per process | dev accuracy |")
    print("|---|---|---|---|---|---|")
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods.split(","):
            for setup in SETUPS:
                row = results.setdefault(method, {})[setup] = train(setup, method, args.rows, Path(tmp))
                if "error" in row:
                    print(f"| {method} | {setup} | failed: {row['error']} | | | |", flush=True)
                    continue
                base = results[method]["1 process"].get("samples_per_second")
                memory = " / ".join(f"{mb:,.0f} MB" for mb in row["peak_memory_mb_per_process"])
                print(f"| {method} | {setup} | {row['samples_per_second']:.1f} | "
                      f"{row['samples_per_second'] / base:.2f}x | {memory} | {row['accuracy']:.4f} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
