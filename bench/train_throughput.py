"""Training throughput and accuracy: our shipped SST-2 configs against plain Trainer, in one process.

All runs fine-tune MiniLM for one epoch on the same SST-2 training rows (seeded subset) and score the
872-row dev set:

  seed-style     every text padded to max_length 128, plain Trainer, full fine-tuning, fp32
  tuned-hf-bf16  plain Trainer as a Hugging Face expert runs it: dynamic padding, length grouping, bf16
  tuned-hf       the same in fp32: the peer on a CPU without bf16 instructions (AVX512-BF16 or AMX),
                 where bf16 autocast is emulated and slower than fp32
  ours-full      the shipped sst2_full (its batch, learning rate and dropout), fp32
  ours-lora      the shipped sst2_lora, fp32
  *-bf16         the same with training.bf16=true (bf16 autocast on the CPU)
  *-compiled     the same with training.torch_compile=true (Trainer compiles the model with inductor;
                 the compilation happens in the first steps and counts in the training time)

The plain-Trainer runs take sst2_full's batch size and learning rate, and the checkpoint's dropout.
Each run's speed and accuracy are compared with the tuned peer in its own precision.

Useful FLOPs count real (non-padding) tokens only: 6 x non-embedding parameters per token for full
fine-tuning (forward 2, backward 4), 4 x for LoRA and head (no weight gradients for frozen layers),
plus the attention score/value products. They are divided by the machine's matrix-multiply peak
measured here with ../shared/tools/gemm_peak.py.

Usage: python bench/train_throughput.py [--rows 2000 20000] [--seeds 42 43] [--runs tuned-hf-bf16,ours-full-bf16,...]
           [--json out.json]
       python bench/train_throughput.py --tables-from out.json   (the tables again, without training)
About 20 minutes on 2 CPU cores with the default runs; needs the machine to itself. Not part of CI.
On a CPU without bf16 instructions, compare in fp32: --runs tuned-hf,ours-full,ours-lora (and *-compiled).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.machine import gemm_peak, machine  # noqa: E402
from bench.settings_sweep import train_shipped  # noqa: E402
from pipeline.config.loader import load_config  # noqa: E402
from pipeline.data.tasks import load_text_classification  # noqa: E402
from pipeline.log import use_terminal  # noqa: E402
from pipeline.models.pretrained import resolve_model  # noqa: E402

DEFAULT_RUNS = "tuned-hf-bf16,ours-full-bf16,ours-lora-bf16"


def flops_per_token(model_config, tokens_per_text: float, method: str) -> float:
    """Training FLOPs per real token: dense layers plus attention (QK^T and AV) at the mean length."""
    h, layers, inter = model_config.hidden_size, model_config.num_hidden_layers, model_config.intermediate_size
    dense = layers * (4 * h * h + 2 * h * inter)  # non-embedding weights
    attention = layers * 2 * h * tokens_per_text  # per token: scores and weighted values
    factor = 6 if method == "full" else 4
    return factor * dense + 3 * 2 * attention


def plain_trainer(rows: int, seed: int, workdir: Path, tuned: bool, bf16: bool = False) -> dict:
    """Plain Trainer, full fine-tuning at sst2_full's batch size and learning rate. The seed's style pads
    every text to 128 in fp32; the tuned peer is what a user who knows Hugging Face well runs: dynamic
    padding (DataCollatorWithPadding), length-grouped batches, and bf16 where asked."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    cfg = load_config(ROOT / "recipes/configs/sst2_full.yaml", [f"dataset.max_train_samples={rows}"])
    data = load_text_classification(cfg.dataset, seed)
    path = resolve_model("minilm")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    padding = dict(truncation=True, max_length=128) if tuned else dict(padding="max_length", truncation=True,
                                                                        max_length=128)
    train = data.splits["train"].map(lambda b: tokenizer(b["text"], **padding), batched=True, remove_columns=["text"])
    tuning = dict(train_sampling_strategy="group_by_length", bf16=bf16, use_cpu=not torch.cuda.is_available()) \
        if tuned else {}
    args = TrainingArguments(output_dir=str(workdir / ("tuned" if tuned else "seed")),
                             per_device_train_batch_size=cfg.training["per_device_train_batch_size"],
                             num_train_epochs=1, learning_rate=float(cfg.training["learning_rate"]), seed=seed,
                             report_to="none", save_strategy="no", disable_tqdm=True, logging_steps=10_000, **tuning)
    trainer = Trainer(model=model, args=args, train_dataset=train,
                      data_collator=DataCollatorWithPadding(tokenizer) if tuned else None)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    model.eval()
    dev = data.splits["validation"]
    with torch.inference_mode():
        logits = torch.cat([model(**tokenizer(list(dev["text"][i:i + 64]), return_tensors="pt",
                                              **(dict(padding=True, truncation=True, max_length=128) if tuned
                                                 else padding))).logits
                            for i in range(0, len(dev), 64)])
    accuracy = float((logits.argmax(-1).numpy() == np.asarray(dev["label"])).mean())
    return {"seconds": seconds, "accuracy": accuracy, "method": "full", "bf16": bf16}


def ours_name(method: str, bf16: bool, compiled: bool) -> str:
    return f"ours-{method}{'-bf16' if bf16 else ''}{'-compiled' if compiled else ''}"


def ours(method: str, bf16: bool, rows: int, seed: int, workdir: Path, compiled: bool = False) -> dict:
    name = ours_name(method, bf16, compiled)
    _, metrics = train_shipped(f"sst2_{method}", [
        f"dataset.max_train_samples={rows}", "training.num_train_epochs=1", f"seed={seed}", "training.eval_strategy=no",
        "training.save_strategy=no", f"training.bf16={'true' if bf16 else 'false'}",
        f"training.torch_compile={'true' if compiled else 'false'}", f"output_dir={workdir / name}"])
    return {"seconds": metrics["train"]["seconds"], "accuracy": metrics["validation"]["accuracy"],
            "method": method, "bf16": bf16}


RUNS = {
    "seed-style": lambda rows, seed, w: plain_trainer(rows, seed, w, tuned=False),
    "tuned-hf-bf16": lambda rows, seed, w: plain_trainer(rows, seed, w, tuned=True, bf16=True),
    "tuned-hf": lambda rows, seed, w: plain_trainer(rows, seed, w, tuned=True),
    **{ours_name(method, bf16, compiled):
       (lambda rows, seed, w, method=method, bf16=bf16, compiled=compiled: ours(method, bf16, rows, seed, w, compiled))
       for method in ("full", "lora") for bf16 in (False, True) for compiled in (False, True)},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43])
    parser.add_argument("--runs", default=DEFAULT_RUNS, help=f"comma-separated, of: {', '.join(RUNS)}")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--tables-from", help="print the tables of a run saved with --json, without training")
    args = parser.parse_args()
    if args.tables_from:
        saved = json.loads(Path(args.tables_from).read_text())
        report(saved["peak"], {int(rows): results for rows, results in saved["results"].items()})
        return
    use_terminal()
    from transformers import AutoConfig, AutoTokenizer

    peak = gemm_peak()
    print(machine(peak))
    model_config = AutoConfig.from_pretrained(resolve_model("minilm"))
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm"))
    names = args.runs.split(",")
    everything = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.rows:
            cfg = load_config(ROOT / "recipes/configs/sst2_full.yaml", [f"dataset.max_train_samples={rows}"])
            results: dict[str, list[dict]] = {name: [] for name in names}
            for seed in args.seeds:
                texts = list(load_text_classification(cfg.dataset, seed).splits["train"]["text"])
                lengths = [min(len(ids), 128) for ids in tokenizer(texts)["input_ids"]]
                for name in names:
                    result = RUNS[name](rows, seed, Path(tmp))
                    per_token = flops_per_token(model_config, float(np.mean(lengths)), result["method"])
                    dtype = "bf16" if result["bf16"] else "fp32"
                    result.update(seed=seed, samples_per_second=rows / result["seconds"],
                                  useful_gflops=per_token * sum(lengths) / result["seconds"] / 1e9, peak_dtype=dtype)
                    result["peak_share"] = result["useful_gflops"] / peak[dtype]
                    results[name].append(result)
                    print(f"{rows} rows, seed {seed}, {name}: {result['samples_per_second']:.1f} samples/s, "
                          f"dev accuracy {result['accuracy']:.4f}", flush=True)
            everything[rows] = results
    report(peak, everything)
    if args.json:
        Path(args.json).write_text(json.dumps({"peak": peak, "results": everything}, indent=2))


def report(peak: dict[str, float], everything: dict[int, dict[str, list[dict]]]) -> None:
    """The machine line, then one table per row count."""
    seeds = [r["seed"] for r in next(iter(next(iter(everything.values())).values()))]
    print(f"\n{machine(peak)}\nMiniLM-L6, 1 epoch of SST-2 rows (seeded subsets), dev accuracy on 872 sentences; "
          f"samples/s and share of peak: mean over seeds {', '.join(map(str, seeds))}")
    for rows, results in everything.items():
        print("\n" + "\n".join(table(rows, seeds, results)))


def table(rows: int, seeds: list[int], results: dict[str, list[dict]]) -> list[str]:
    """One row per run; speed and accuracy against the tuned peer in the run's own precision, where it ran;
    then each compiled run's speed against its eager twin, seed by seed (compile time counted)."""
    means = {name: (np.mean([r["samples_per_second"] for r in runs]), np.mean([r["accuracy"] for r in runs]))
             for name, runs in results.items()}
    seed_list = ", ".join(map(str, seeds))
    lines = [f"{rows:,} rows:", "", f"| run | samples/s | vs tuned peer | dev accuracy (seed {seed_list}) | mean "
             "| vs tuned peer | useful GFLOP/s | share of peak |", "|---|---|---|---|---|---|---|---|"]
    for name, runs in results.items():
        rate, accuracy = means[name]
        peer = means.get("tuned-hf-bf16" if runs[0]["bf16"] else "tuned-hf")
        speed = f"{rate / peer[0]:.2f}x" if peer else "-"
        points = f"{(accuracy - peer[1]) * 100:+.2f} points" if peer else "-"
        per_seed = ", ".join(f"{r['accuracy']:.4f}" for r in runs)
        lines.append(f"| {name} | {rate:.1f} | {speed} | {per_seed} | "
                     f"{accuracy:.4f} | {points} | {np.mean([r['useful_gflops'] for r in runs]):.1f} | "
                     f"{np.mean([r['peak_share'] for r in runs]):.1%} of {runs[0]['peak_dtype']} |")
    for name, runs in results.items():
        eager = results.get(name.removesuffix("-compiled"))
        if name.endswith("-compiled") and eager:
            ratios = ", ".join(f"{c['samples_per_second'] / e['samples_per_second']:.2f}x" for c, e in zip(runs, eager))
            lines.append(f"\n{name} against {name.removesuffix('-compiled')}, seed by seed: {ratios}")
    return lines


if __name__ == "__main__":
    main()
