"""The README's main job, timed as a newcomer runs it: `pipeline train sst2_lora` in a fresh process,
from the command's start to its end (start-up, data, training, evaluations, the final scores and the
model card), with the machine line and the dev accuracy it printed.

    python bench/main_job.py [--seeds 42 43] [--out bench/out/main_job]

Each seed is a full run (about 11 minutes on 2 CPU cores). Not part of CI.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43])
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "main_job"))
    args = parser.parse_args()
    print(machine())
    print("| seed | wall time (command start to end) | dev accuracy |")
    print("|---|---|---|")
    for seed in args.seeds:
        out = Path(args.out) / f"seed{seed}"
        start = time.perf_counter()
        subprocess.run([str(ROOT / ".venv" / "bin" / "pipeline"), "train", "sst2_lora", f"seed={seed}",
                        f"output_dir={out}", "--overwrite"], check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        accuracy = json.loads((out / "metrics.json").read_text())["validation"]["accuracy"]
        print(f"| {seed} | {seconds / 60:.1f} min | {accuracy:.4f} |", flush=True)


if __name__ == "__main__":
    main()
