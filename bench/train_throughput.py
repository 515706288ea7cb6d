"""Training throughput and accuracy: the seed's style against our recipe, in one process.

All runs fine-tune MiniLM for one epoch on the same SST-2 training rows (seeded subset) and score the
872-row dev set:

  seed-style   every text padded to max_length 128, batch 16, plain Trainer, full fine-tuning
  tuned-hf-bf16  plain Trainer as a Hugging Face expert runs it: dynamic padding, length grouping, bf16
  ours-full    our recipe: dynamic padding, length-grouped batches, full fine-tuning
  ours-lora    our recipe with LoRA (r=8 on query/value)
  *-bf16       the same with training.bf16=true (bf16 autocast on the CPU)

Useful FLOPs count real (non-padding) tokens only: 6 x non-embedding parameters per token for full
fine-tuning (forward 2, backward 4), 4 x for LoRA and head (no weight gradients for frozen layers),
plus the attention score/value products. They are divided by the machine's matrix-multiply peak
measured here with ../shared/tools/gemm_peak.py.

Usage: python bench/train_throughput.py [--rows 4000] [--runs seed-style,ours-full,...] [--json out.json]
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
from pipeline.config.loader import load_config  # noqa: E402
from pipeline.data.tasks import load_text_classification  # noqa: E402
from pipeline.log import use_terminal  # noqa: E402
from pipeline.models.pretrained import resolve_model  # noqa: E402

LEARNING_RATE = {"full": "5e-5", "lora": "1e-3"}


def flops_per_token(model_config, tokens_per_text: float, method: str) -> float:
    """Training FLOPs per real token: dense layers plus attention (QK^T and AV) at the mean length."""
    h, layers, inter = model_config.hidden_size, model_config.num_hidden_layers, model_config.intermediate_size
    dense = layers * (4 * h * h + 2 * h * inter)  # non-embedding weights
    attention = layers * 2 * h * tokens_per_text  # per token: scores and weighted values
    factor = 6 if method == "full" else 4
    return factor * dense + 3 * 2 * attention


def plain_trainer(rows: int, seed: int, workdir: Path, tuned: bool) -> dict:
    """Plain Trainer, full fine-tuning, batch 16. The seed's style pads every text to 128 in fp32; the
    tuned peer is what a user who knows Hugging Face well runs: dynamic padding
    (DataCollatorWithPadding), length-grouped batches and bf16."""
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
    tuning = dict(train_sampling_strategy="group_by_length", bf16=True, use_cpu=not torch.cuda.is_available()) \
        if tuned else {}
    args = TrainingArguments(output_dir=str(workdir / ("tuned" if tuned else "seed")), per_device_train_batch_size=16,
                             num_train_epochs=1, learning_rate=float(LEARNING_RATE["full"]), seed=seed,
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
    return {"seconds": seconds, "accuracy": accuracy, "method": "full", "bf16": tuned}


def ours(method: str, bf16: bool, rows: int, seed: int, workdir: Path) -> dict:
    from pipeline.registry import get_recipe
    from pipeline.training.trainer import train

    name = f"{method}{'-bf16' if bf16 else ''}"
    config = load_config(ROOT / f"recipes/configs/sst2_{method}.yaml", [
        f"dataset.max_train_samples={rows}", "training.num_train_epochs=1", f"seed={seed}",
        f"training.learning_rate={LEARNING_RATE[method]}", "training.eval_strategy=no",
        "training.save_strategy=no", f"training.bf16={'true' if bf16 else 'false'}",
        f"output_dir={workdir / name}"])
    run_dir = train(config, get_recipe(config.recipe))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"seconds": metrics["train"]["seconds"], "accuracy": metrics["validation"]["accuracy"],
            "method": method, "bf16": bf16}


RUNS = {
    "seed-style": lambda a, w: plain_trainer(a.rows, a.seed, w, tuned=False),
    "tuned-hf-bf16": lambda a, w: plain_trainer(a.rows, a.seed, w, tuned=True),
    "ours-full": lambda a, w: ours("full", False, a.rows, a.seed, w),
    "ours-full-bf16": lambda a, w: ours("full", True, a.rows, a.seed, w),
    "ours-lora": lambda a, w: ours("lora", False, a.rows, a.seed, w),
    "ours-lora-bf16": lambda a, w: ours("lora", True, a.rows, a.seed, w),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    use_terminal()
    from transformers import AutoConfig, AutoTokenizer

    peak = gemm_peak()
    print(machine(peak))
    model_config = AutoConfig.from_pretrained(resolve_model("minilm"))
    cfg = load_config(ROOT / "recipes/configs/sst2_full.yaml", [f"dataset.max_train_samples={args.rows}"])
    texts = list(load_text_classification(cfg.dataset, args.seed).splits["train"]["text"])
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm"))
    lengths = [min(len(ids), 128) for ids in tokenizer(texts)["input_ids"]]
    real_tokens, mean_len = sum(lengths), float(np.mean(lengths))

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.runs.split(","):
            result = RUNS[name](args, Path(tmp))
            samples_per_second = args.rows / result["seconds"]
            useful = flops_per_token(model_config, mean_len, result["method"]) * real_tokens / result["seconds"]
            dtype = "bf16" if result["bf16"] else "fp32"
            result.update(samples_per_second=samples_per_second, useful_gflops=useful / 1e9,
                          peak_share=useful / 1e9 / peak[dtype], peak_dtype=dtype)
            results[name] = result
            print(f"{name}: {samples_per_second:.1f} samples/s, dev accuracy {result['accuracy']:.4f}", flush=True)

    base = results.get("seed-style")
    print(f"\n{machine(peak)}\nrows {args.rows}, mean {mean_len:.1f} real tokens per text (seed style computes 128)\n")
    print("| run | samples/s | vs seed style | dev accuracy | useful GFLOP/s | share of peak |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        ratio = f"{r['samples_per_second'] / base['samples_per_second']:.1f}x" if base else "-"
        print(f"| {name} | {r['samples_per_second']:.1f} | {ratio} | {r['accuracy']:.4f} | "
              f"{r['useful_gflops']:.1f} | {r['peak_share']:.1%} of {r['peak_dtype']} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"peak": peak, "rows": args.rows, "results": results}, indent=2))


if __name__ == "__main__":
    main()
