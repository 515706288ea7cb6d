"""Training speed against batch size: the shipped `sst2_lora` (or `sst2_full`) for one epoch on the same
SST-2 rows at several batch sizes, the learning rate scaled with the square root of the batch (the
rule for Adam-type optimizers), each scored on the 872-row dev set.

SST-2's texts are short (about 13 tokens), so a batch of 16 gives the matrix multiplies a few hundred
rows and per-step costs (Python, kernel launches, the optimizer) weigh as much as the arithmetic.
Bigger batches amortize them; the question is how far before accuracy per epoch suffers.

    python bench/batch_size.py [--method lora] [--rows 20000] [--batches 16 32 64 128] [--seed 42]

Prints the machine line and one table; about 10 minutes on 2 CPU cores at 20,000 rows. Needs the
machine to itself. Not part of CI.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import gemm_peak, machine  # noqa: E402
from bench.settings_sweep import train_shipped  # noqa: E402
from bench.train_throughput import flops_per_token  # noqa: E402
from pipeline.config.loader import load_config  # noqa: E402
from pipeline.data.tasks import load_text_classification  # noqa: E402
from pipeline.log import use_terminal  # noqa: E402
from pipeline.models.pretrained import resolve_model  # noqa: E402
from pipeline.training.trainer import native_bf16  # noqa: E402

def run(method: str, batch: int, rows: int, seed: int) -> dict:
    shipped = load_config(ROOT / f"recipes/configs/sst2_{method}.yaml", [])
    shipped_batch = shipped.training.get("per_device_train_batch_size", 16)
    learning_rate = shipped.training["learning_rate"] * (batch / shipped_batch) ** 0.5
    with tempfile.TemporaryDirectory() as tmp:
        _, metrics = train_shipped(f"sst2_{method}", [
            f"dataset.max_train_samples={rows}", "training.num_train_epochs=1", f"seed={seed}",
            f"training.per_device_train_batch_size={batch}", f"training.learning_rate={learning_rate}",
            "training.eval_strategy=no", "training.save_strategy=no", f"output_dir={tmp}/run"])
    return {"batch": batch, "learning_rate": learning_rate, "seconds": metrics["train"]["seconds"],
            "accuracy": metrics["validation"]["accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="lora", choices=("lora", "full"))
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    use_terminal()
    from transformers import AutoConfig, AutoTokenizer

    peak = gemm_peak()
    cfg = load_config(ROOT / f"recipes/configs/sst2_{args.method}.yaml", [f"dataset.max_train_samples={args.rows}"])
    texts = list(load_text_classification(cfg.dataset, args.seed).splits["train"]["text"])
    lengths = [min(len(ids), 128) for ids in AutoTokenizer.from_pretrained(resolve_model("minilm"))(texts)["input_ids"]]
    mean_length = sum(lengths) / len(lengths)
    per_token = flops_per_token(AutoConfig.from_pretrained(resolve_model("minilm")), mean_length, args.method)

    results = []
    for batch in args.batches:
        results.append(run(args.method, batch, args.rows, args.seed))
        print(f"batch {batch}: {args.rows / results[-1]['seconds']:.1f} samples/s, "
              f"dev accuracy {results[-1]['accuracy']:.4f}", flush=True)

    base, dtype = results[0], "bf16" if native_bf16() else "fp32"  # the recipe's own choice on this machine
    precision = "bf16 autocast" if dtype == "bf16" else "fp32"
    print(f"\n{machine(peak)}\nsst2_{args.method} ({precision}), {args.rows:,} rows, 1 epoch, seed {args.seed}; "
          f"{mean_length:.1f} real tokens per text; the shipped rate scaled by sqrt(batch / shipped batch)\n")
    print(f"| batch | learning rate | samples/s | vs batch {base['batch']} | useful GFLOP/s | share of {dtype} peak "
          f"| dev accuracy |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        rate = args.rows / r["seconds"]
        useful = per_token * sum(lengths) / r["seconds"] / 1e9
        print(f"| {r['batch']} | {r['learning_rate']:.2e} | {rate:.1f} | {rate * base['seconds'] / args.rows:.2f}x | "
              f"{useful:.1f} | {useful / peak[dtype]:.1%} | {r['accuracy']:.4f} |")


if __name__ == "__main__":
    main()
