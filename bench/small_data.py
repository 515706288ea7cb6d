"""Small data: which method wins at which training-set size. SST-2 with 32, 128, 512 and 2,048
training sentences (balanced: dataset.samples_per_label, seeded), methods setfit, lora, full and head
on the packaged MiniLM, two seeds each, scored on the 872-sentence dev set; the setfit library with
its own defaults (every sentence pair, oversampled) on the same sentences as the peer at 32 and 128.

Trainer methods run their shipped config (recipes/configs/sst2_{method}.yaml) with the epochs raised
so that every run takes at least MIN_STEPS optimizer steps (at 32 sentences three epochs would be six
steps), no evaluation during training; setfit runs recipes/configs/sst2_setfit.yaml. Time is the
training call alone (model loading and dev scoring excluded), for every row alike.

Writes the table to stdout and bench/out/small_data/results.json, and the crossover table that
`pipeline advise` reads to pipeline/planning/crossovers.json. Not part of CI (about 50 minutes on 2 CPU cores;
finished runs are kept and skipped on a rerun).

    python bench/small_data.py [--sizes 32 128 512 2048] [--seeds 1 2] [--methods setfit lora full head]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.cli import main  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "small_data"
CROSSOVERS = Path(__file__).resolve().parents[1] / "pipeline" / "planning" / "crossovers.json"
MIN_STEPS = 160
BATCH = {"lora": 16, "full": 16, "head": 32}  # the shipped configs' batch sizes
PEER_SIZES = (32, 128)


def ours(method: str, size: int, seed: int) -> dict[str, float]:
    out = OUT / f"{method}_{size}_seed{seed}"
    if not (out / "metrics.json").exists() or "validation" not in json.loads((out / "metrics.json").read_text()):
        overrides = [f"dataset.samples_per_label={size // 2}", f"seed={seed}", f"output_dir={out}"]
        if method != "setfit":
            epochs = max(3, math.ceil(MIN_STEPS / math.ceil(size / BATCH[method])))
            overrides += [f"training.num_train_epochs={epochs}", "training.eval_strategy=no",
                          "training.save_strategy=no"]
        if main(["train", f"sst2_{method}", *overrides, "--overwrite"]):
            raise SystemExit(f"run {out} failed")
    metrics = json.loads((out / "metrics.json").read_text())
    return {"accuracy": metrics["validation"]["accuracy"], "seconds": metrics["train"]["seconds"]}


def peer(size: int, seed: int) -> dict[str, float]:
    """The setfit library's defaults on the same sentences our runs train on."""
    done = OUT / f"setfit-defaults_{size}_seed{seed}.json"
    if done.exists():
        return json.loads(done.read_text())
    import numpy as np
    import setfit

    from pipeline.config.loader import load_config, resolve_config_path
    from pipeline.data.tasks import load_text_classification
    from pipeline.models.pretrained import resolve_model

    config = load_config(resolve_config_path("sst2_setfit"), [f"dataset.samples_per_label={size // 2}", f"seed={seed}"])
    data = load_text_classification(config.dataset, seed)
    model = setfit.SetFitModel.from_pretrained(resolve_model(config.model))
    args = setfit.TrainingArguments(seed=seed, report_to="none", show_progress_bar=False, save_strategy="no",
                                    output_dir=str(OUT / "setfit-defaults-checkpoints"))
    trainer = setfit.Trainer(model=model, args=args, train_dataset=data.splits["train"])
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    dev = data.splits["validation"]
    predictions = np.asarray(model.predict(dev["text"], batch_size=64))
    result = {"accuracy": float((predictions == np.asarray(dev["label"])).mean()), "seconds": round(seconds, 1)}
    done.write_text(json.dumps(result))
    return result


def summary(runs: list[dict[str, float]]) -> dict[str, object]:
    return {"accuracy": round(statistics.mean(r["accuracy"] for r in runs), 4),
            "seeds": [round(r["accuracy"], 4) for r in runs],
            "seconds": round(statistics.mean(r["seconds"] for r in runs), 1)}


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 128, 512, 2048])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--methods", nargs="+", default=["setfit", "lora", "full", "head"])
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    table: dict[int, dict[str, dict[str, object]]] = {}
    for size in args.sizes:
        table[size] = {}
        if size in PEER_SIZES:
            table[size]["setfit library defaults"] = summary([peer(size, seed) for seed in args.seeds])
        for method in args.methods:
            table[size][method] = summary([ours(method, size, seed) for seed in args.seeds])
    from bench.machine import machine

    line = machine()
    print(f"\n{line}\n| sentences | method | dev accuracy (mean) | per seed | training seconds (mean) |\n|---|---|---|---|---|")
    for size, rows in table.items():
        for method, row in rows.items():
            print(f"| {size:,} | {method} | {row['accuracy']:.4f} | {', '.join(f'{a:.4f}' for a in row['seeds'])} | "
                  f"{row['seconds']:.0f} |")
    print("\n| sentences | best method | its accuracy | runner-up |\n|---|---|---|---|")
    crossovers = []
    for size, rows in table.items():
        ranked = sorted(((row["accuracy"], method) for method, row in rows.items() if method in args.methods),
                        reverse=True)
        (best_acc, best), (second_acc, second) = ranked[0], ranked[1]
        crossovers.append({"train_size": size, "best": best, "accuracy": best_acc, "runner_up": second,
                           "runner_up_accuracy": second_acc,
                           "accuracy_by_method": {m: rows[m]["accuracy"] for m in args.methods}})
        print(f"| {size:,} | {best} | {best_acc:.4f} | {second} {second_acc:.4f} |")
    for size in PEER_SIZES:
        if size in table and "setfit library defaults" in table[size]:
            peer_row, rows = table[size]["setfit library defaults"], table[size]
            best = max(args.methods, key=lambda m: rows[m]["accuracy"])
            print(f"\nat {size} sentences: our best ({best}) {rows[best]['accuracy']:.4f} in {rows[best]['seconds']:.0f} s; "
                  f"the setfit library's defaults {peer_row['accuracy']:.4f} in {peer_row['seconds']:.0f} s "
                  f"({rows[best]['seconds'] / peer_row['seconds']:.2f}x its time)")
    (OUT / "results.json").write_text(json.dumps({"machine": line, "table": table}, indent=1))
    if sorted(args.sizes) != [32, 128, 512, 2048] or len(args.methods) < 4:
        print(f"\n(a partial run: {CROSSOVERS.name}, which `advise` reads, is left as it was)")
        return
    CROSSOVERS.write_text(json.dumps({"measured_by": "bench/small_data.py", "data": "SST-2 (balanced), dev accuracy",
                                      "model": "minilm", "seeds": args.seeds, "machine": line,
                                      "crossovers": crossovers}, indent=1) + "\n")


if __name__ == "__main__":
    main_bench()
