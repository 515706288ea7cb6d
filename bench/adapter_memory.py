"""Memory of one base model with N LoRA adapters against N full models (the seed's scenario of 20
tasks sharing one base). Each side is measured in a fresh subprocess as its peak RSS.

Usage: python bench/adapter_memory.py [--tasks 20]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(kind: str, run: str, tasks: int) -> None:
    """Load the models, predict once with each, report the peak RSS in MiB."""
    from pipeline.inference.engines import TextClassifier
    from pipeline.log import use_terminal

    use_terminal()
    text = ["A true cinematic achievement!"]
    if kind == "adapters":
        engine = TextClassifier.from_run(run, adapters={f"task{i}": run for i in range(1, tasks)})
        for name in engine.adapters:
            engine.probabilities(text, adapter=None if name == "default" else name)
    else:
        engines = [TextClassifier.from_run(run) for _ in range(tasks)]
        for engine in engines:
            # Weights load memory-mapped, so copies of one file would share pages; N fine-tuned models
            # have N different weight sets, so each copy is made to own its memory.
            for param in engine.runner.model.parameters():
                param.data = param.data.clone()
            engine.probabilities(text)
    print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure(kind: str, run: str, tasks: int) -> float:
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--run", run, "--tasks", str(tasks)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_rss_mib"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--child")
    parser.add_argument("--run")
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.run, args.tasks)
    from pipeline.config.loader import load_config
    from pipeline.log import use_terminal
    from pipeline.registry import get_recipe
    from pipeline.training.loops import train

    use_terminal()
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(ROOT / "recipes/configs/sst2_lora.yaml", [
            "dataset.max_train_samples=64", "dataset.max_eval_samples=32", "training.max_steps=2",
            f"output_dir={tmp}/lora"])
        run = str(train(config, get_recipe(config.recipe)))
        adapter_mb = (Path(run) / "adapter_model.safetensors").stat().st_size / 2**20
        one = measure("full", run, 1)
        shared = measure("adapters", run, args.tasks)
        separate = measure("full", run, args.tasks)
    from bench.machine import machine

    print(f"\n{machine()}\nadapter file: {adapter_mb:.2f} MiB")
    print(f"| setup | peak RSS (MiB) |\n|---|---|\n| 1 model | {one:.0f} |\n"
          f"| 1 base + {args.tasks} LoRA adapters | {shared:.0f} |\n| {args.tasks} full models | {separate:.0f} |")
    print(f"\n{args.tasks} tasks: adapters on one base use {shared / separate:.1%} of the memory of "
          f"{args.tasks} full models ({(separate - one) / (args.tasks - 1):.0f} MiB per extra full model, "
          f"{(shared - one) / (args.tasks - 1):.1f} MiB per extra adapter)")


if __name__ == "__main__":
    main()
