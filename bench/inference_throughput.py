"""Inference throughput: the seed's one-text-at-a-time loop, transformers.pipeline, and our engine.

On the SST-2 dev + test sentences (2,693 texts), with one trained classifier (a run folder, or a
quick full fine-tune made here on 2,000 SST-2 rows):

  seed-loop        one text per forward pass, padded to 128 (the seed's example 8)
  hf-pipeline      transformers.pipeline("text-classification", batch_size=64)
  ours-fp32        our engine: length-sorted batches of 64, dynamic padding, order restored, the
                   last layer computed for [CLS] only
  ours-bf16        the same with bf16 weights
  ours-int8        the same with dynamic int8 quantization of the Linear layers

Each is compared with ours-fp32 (agreement of predicted labels) and scored on the labelled dev set.
`--imdb N` adds N IMDb test reviews truncated at 512 tokens (the seed loop there runs on 100 texts).
Useful FLOPs: 2 x non-embedding parameters per real token, plus attention, over the gemm peak.

Usage: python bench/inference_throughput.py [--run RUN_DIR] [--imdb 5000] [--json out.json]
"""
from __future__ import annotations

import argparse
import copy
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
from transformers import AutoModelForSequenceClassification  # noqa: E402

from bench.machine import gemm_peak, machine  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.data import load_text_classification  # noqa: E402
from pipeline.first_token import first_token_last_layer  # noqa: E402
from pipeline.inference import TextClassifier  # noqa: E402
from pipeline.loading import load_run_model, with_precision  # noqa: E402
from pipeline.log import use_terminal  # noqa: E402
from pipeline.schema import DatasetConfig  # noqa: E402


def flops_per_token(config, mean_tokens: float) -> float:
    h, layers, inter = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    return 2 * layers * (4 * h * h + 2 * h * inter) + 2 * 2 * layers * h * mean_tokens


def seed_loop(model, tokenizer, texts, max_length) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for text in texts:
            batch = tokenizer(text, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
            out.append(int(model(**batch).logits.argmax(-1)))
    return np.asarray(out)


def hf_pipeline(model, tokenizer, texts, max_length) -> np.ndarray:
    from transformers import pipeline

    classify = pipeline("text-classification", model=model, tokenizer=tokenizer, device=-1)
    results = classify(texts, batch_size=64, truncation=True, max_length=max_length)
    return np.asarray([model.config.label2id[r["label"]] for r in results])


def engine(precision: str):
    def run(model, tokenizer, texts, max_length) -> np.ndarray:
        m = first_token_last_layer(with_precision(copy.deepcopy(model), precision))
        labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        return TextClassifier(m, tokenizer, labels, max_length, 64).probabilities(texts).argmax(-1)
    return run


METHODS = {"seed-loop": seed_loop, "hf-pipeline": hf_pipeline, "ours-fp32": engine("fp32"),
           "ours-bf16": engine("bf16"), "ours-int8": engine("int8")}


def measure(name, fn, model, tokenizer, texts, max_length, peak, useful_flops) -> dict:
    fn(model, tokenizer, texts[:8], max_length)  # warm-up
    start = time.perf_counter()
    predictions = fn(model, tokenizer, texts, max_length)
    seconds = time.perf_counter() - start
    dtype = name.rpartition("-")[2] if name.endswith(("bf16", "int8")) else "fp32"
    return {"predictions": predictions, "seconds": seconds, "texts_per_second": len(texts) / seconds,
            "peak_share": useful_flops / seconds / 1e9 / peak.get(dtype, float("nan")), "peak_dtype": dtype}


def share_of_peak(result: dict) -> str:
    """Useful FLOP/s over the matmul peak of the run's dtype; int8 kernels have no measured peak here."""
    if result["peak_dtype"] == "int8":
        return "- (no int8 peak measured)"
    return f"{result['peak_share']:.1%} of {result['peak_dtype']}"


def benchmark(title, texts, labels, model, tokenizer, max_length, peak, seed_subset=None) -> dict:
    tokens = [min(len(ids), max_length) for ids in tokenizer(texts, verbose=False)["input_ids"]]
    useful = flops_per_token(model.config, float(np.mean(tokens))) * sum(tokens)
    results = {}
    for name, fn in METHODS.items():
        subset = texts[:seed_subset] if name == "seed-loop" and seed_subset else texts
        share = len(subset) / len(texts)
        r = measure(name, fn, model, tokenizer, subset, max_length, peak, useful * share)
        results[name] = r
        print(f"{title} {name}: {r['texts_per_second']:.1f} texts/s", flush=True)
    reference = results["ours-fp32"]["predictions"]
    print(f"\n{machine(peak)}\n{title}: {len(texts)} texts, mean {np.mean(tokens):.1f} tokens "
          f"(max_length {max_length})\n")
    print("| method | texts/s | vs seed loop | vs hf pipeline | agreement with ours-fp32 | accuracy | share of peak |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        n = len(r["predictions"])
        agree = float((r["predictions"] == reference[:n]).mean())
        labelled = labels[:n] >= 0  # SST-2 test sentences are unlabelled: accuracy is on dev only
        accuracy = float((r["predictions"][labelled] == labels[:n][labelled]).mean()) if labelled.any() else float("nan")
        r.update(agreement=agree, accuracy=accuracy)
        print(f"| {name}{' (' + str(n) + ' texts)' if n < len(texts) else ''} | {r['texts_per_second']:.1f} | "
              f"{r['texts_per_second'] / results['seed-loop']['texts_per_second']:.1f}x | "
              f"{r['texts_per_second'] / results['hf-pipeline']['texts_per_second']:.1f}x | {agree:.2%} | "
              f"{accuracy:.4f} | {share_of_peak(r)} |")
    for r in results.values():
        r.pop("predictions")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a classification run folder (default: a quick full fine-tune)")
    parser.add_argument("--imdb", type=int, default=0, help="also N IMDb test reviews at max_length 512")
    parser.add_argument("--skip-sst2", action="store_true", help="only the IMDb part")
    parser.add_argument("--json")
    args = parser.parse_args()
    use_terminal()
    from pipeline.registry import get_recipe
    from pipeline.training import train

    peak = gemm_peak()
    print(machine(peak))
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(ROOT / "recipes/configs/sst2_full.yaml", [
            "dataset.max_train_samples=2000", "training.num_train_epochs=1", "training.save_strategy=no",
            "training.eval_strategy=no", f"output_dir={tmp}/run"])
        run = args.run or train(config, get_recipe(config.recipe))
        loaded = load_run_model(run, AutoModelForSequenceClassification)  # plain: the baselines get it as is
    model, tokenizer = loaded.model, loaded.tokenizer
    sst2 = load_text_classification(DatasetConfig(name="sst2"), 0).splits
    dev, test = list(sst2["validation"]["text"]), list(sst2["test"]["text"])
    labels = np.asarray(list(sst2["validation"]["label"]) + [-1] * len(test))
    report = {"peak": peak}
    if not args.skip_sst2:
        report["sst2"] = benchmark("sst2", dev + test, labels, model, tokenizer, 128, peak)
    if args.imdb:
        imdb = load_text_classification(DatasetConfig(name="imdb"), 0).splits["test"].shuffle(seed=0)
        imdb = imdb.select(range(args.imdb))
        report["imdb"] = benchmark("imdb", list(imdb["text"]), np.asarray(imdb["label"]), model, tokenizer,
                                   512, peak, seed_subset=100)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=float))


if __name__ == "__main__":
    main()
