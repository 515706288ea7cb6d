"""Which attention kernel trains faster on this CPU, by row length: eager attention against SDPA, a
training step (forward, backward) of the packaged MiniLM with its dropout off, in bf16 autocast as the
pipeline trains here. Sets `EAGER_ATTENTION_MAX_TOKENS` in pipeline/models/training_setup.py.

Without attention dropout, SDPA's CPU kernel is flash attention; with dropout it takes the math
path, which is eager attention, so only dropout-free training has a choice to make.

    python bench/attention.py [--tokens 4096] [--lengths 16 32 64 128 256 512]

About two minutes on 2 CPU cores; needs the machine to itself. Not part of CI.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.machine import gemm_peak, machine  # noqa: E402
from pipeline.models.pretrained import resolve_model  # noqa: E402
from pipeline.models.training_setup import set_dropout  # noqa: E402


def step_seconds(model: torch.nn.Module, rows: int, length: int, steps: int) -> float:
    """Median seconds of a forward and backward pass over ``rows`` x ``length`` tokens."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 20000, (rows, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[rows // 2:, length // 2:] = 0  # half the rows padded, as the last rows of a length group are
    labels = torch.randint(0, 2, (rows,), generator=generator)
    times = []
    for i in range(steps + 3):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        model.zero_grad(set_to_none=True)
        if i >= 3:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096, help="tokens per batch (rows = tokens / length)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 32, 64, 128, 256, 512])
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging

    logging.set_verbosity_error()
    peak = gemm_peak()
    models = {}
    for kernel in ("eager", "sdpa"):
        model = AutoModelForSequenceClassification.from_pretrained(resolve_model("minilm"), attn_implementation=kernel)
        set_dropout(model, 0.0)
        models[kernel] = model.train()
    print(machine(peak))
    print(f"MiniLM-L6 training step (forward + backward, bf16 autocast, dropout off), {args.tokens} tokens a batch, "
          f"median of {args.steps} steps\n")
    print("| row length | rows | eager ms | SDPA ms | eager speed-up |")
    print("|---|---|---|---|---|")
    for length in args.lengths:
        rows = max(1, args.tokens // length)
        eager, sdpa = (step_seconds(models[k], rows, length, args.steps) for k in ("eager", "sdpa"))
        print(f"| {length} | {rows} | {eager * 1e3:.1f} | {sdpa * 1e3:.1f} | {sdpa / eager:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
