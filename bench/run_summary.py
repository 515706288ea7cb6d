"""One line that sums up a run folder, for the shell benchmarks: perplexity before -> after for a
language model, entity F1 for NER, dev accuracy for a classifier; with trainable parameters and time.

    python bench/run_summary.py bench/out/sst2_full
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def summary(run: Path) -> str:
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    train, params, dev = metrics["train"], metrics["parameters"], metrics["validation"]
    if "before" in metrics:
        before = metrics["before"]
        scores = (f"perplexity {before['perplexity']:.1f} -> {dev['perplexity']:.1f}, token accuracy "
                  f"{before['accuracy']:.4f} -> {dev['accuracy']:.4f}")
    elif "token_accuracy" in dev:
        test = metrics.get("test", dev)
        scores = (f"test entity F1 {test['f1']:.4f} (P {test['precision']:.4f}, R {test['recall']:.4f}), "
                  f"validation F1 {dev['f1']:.4f}")
    else:
        scores = f"dev accuracy {dev['accuracy']:.4f}"
    return (f"{run.name}: {scores}, {params['trainable']:,} trainable ({params['percent']:.2f}%), "
            f"{train['steps']} steps, {train['samples_per_second']:.1f} samples/s, training {train['seconds']:.0f} s")


if __name__ == "__main__":
    print(summary(Path(sys.argv[1])))
