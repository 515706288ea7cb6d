"""GPU check: the SST-2 recipe trained on one GPU in fp32 and in bf16 (samples/s, tokens/s, peak
memory), then the trained run used on the GPU as a user would: `predict` with `--device auto` (bf16
weights on a bf16 GPU, SDPA attention, batches of 256) against the CPU's fp32 predictions, `evaluate` reproducing the recorded
metrics, `ner` on a short WNUT-17 run, and `serve` answering concurrent HTTP requests.
Last, the training comparison of bench/train_throughput.py on the GPU: the tuned plain-Trainer peer
against our shipped sst2_full and sst2_lora in bf16, one seed.
Run on a machine with a CUDA GPU: python bench/gpu_check.py [--rows 8000]"""
from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.train_throughput import RUNS  # noqa: E402
from pipeline.config.loader import load_config  # noqa: E402
from pipeline.inference.engines import TextClassifier, TokenTagger  # noqa: E402
from pipeline.log import use_terminal  # noqa: E402
from pipeline.registry import get_recipe  # noqa: E402
from pipeline.runs.loading import LoadOptions  # noqa: E402
from pipeline.training.loops import train  # noqa: E402


def train_run(name: str, overrides: list[str]) -> Path:
    config = load_config(ROOT / f"recipes/configs/{name}.yaml", overrides)
    return train(config, get_recipe(config.recipe))


def check_predict(run: Path, texts: list[str]) -> dict:
    gpu = TextClassifier.from_run(run)  # --device auto, --precision and --batch-size defaults
    device = next(gpu.runner.model.parameters())
    gpu.probabilities(texts[:256])  # warm-up: kernels, allocator
    torch.cuda.synchronize()
    start = time.perf_counter()
    on_gpu = gpu.probabilities(texts)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    on_cpu = TextClassifier.from_run(run, options=LoadOptions(device="cpu", precision="fp32")).probabilities(texts)
    return {"device": str(device.device), "dtype": str(device.dtype), "batch_size": gpu.batch_size,
            "attention": gpu.runner.model.config._attn_implementation, "texts": len(texts),
            "texts_per_second": round(len(texts) / seconds, 1),
            "label_agreement_with_cpu_fp32": float((on_gpu.argmax(-1) == on_cpu.argmax(-1)).mean()),
            "max_probability_difference": float(np.abs(on_gpu - on_cpu).max())}


def check_serve(run: Path, texts: list[str], requests: int = 64) -> dict:
    import uvicorn

    from pipeline.inference.serve import create_app

    engine = TextClassifier.from_run(run)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(engine), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)

    def post(i: int) -> tuple[int, float]:
        body = json.dumps({"texts": texts[i * 8:(i + 1) * 8]}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=body,
                                         headers={"Content-Type": "application/json"})
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(post, range(requests)))
    seconds = time.perf_counter() - start
    server.should_exit = True
    latencies = sorted(t for _, t in answers)
    return {"requests": requests, "ok": sum(status == 200 for status, _ in answers),
            "texts_per_second": round(8 * requests / seconds, 1),
            "p50_latency_ms": round(1000 * latencies[len(latencies) // 2], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8000)
    parser.add_argument("--method", default="full", choices=("full", "lora"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU here; run this on a GPU machine")
    use_terminal()
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    from pipeline.data.tasks import load_text_classification
    from pipeline.models.pretrained import load_tokenizer

    data_config = load_config(ROOT / "recipes/configs/sst2_full.yaml", [f"dataset.max_train_samples={args.rows}"])
    data = load_text_classification(data_config.dataset, data_config.seed)
    texts = list(data.splits["train"]["text"])
    dev = list(data.splits["validation"]["text"])
    real_tokens = sum(min(len(ids), 128) for ids in load_tokenizer("minilm")(texts)["input_ids"])
    results: dict = {"train": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "bf16"):
            torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            run = train_run(f"sst2_{args.method}", [
                f"dataset.max_train_samples={args.rows}", "training.num_train_epochs=1",
                "training.per_device_train_batch_size=32", "training.save_strategy=no", "training.eval_strategy=no",
                f"training.bf16={'true' if precision == 'bf16' else 'false'}", f"output_dir={tmp}/{precision}"])
            metrics = json.loads((run / "metrics.json").read_text())
            seconds = metrics["train"]["seconds"]
            results["train"][precision] = {
                "samples_per_second": args.rows / seconds, "tokens_per_second": real_tokens / seconds,
                "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
                "dev_accuracy": metrics["validation"]["accuracy"], "wall_seconds": time.perf_counter() - start}
        run = Path(tmp) / "bf16"
        results["predict"] = check_predict(run, dev * 4)
        recorded = json.loads((run / "metrics.json").read_text())["validation"]
        get_recipe("sequence_classification").evaluate_run(run, "validation")
        results["evaluate_reproduces"] = json.loads((run / "metrics.json").read_text())["validation"] == recorded
        results["serve"] = check_serve(run, dev)
        ner = train_run("wnut17_lora", ["dataset.max_train_samples=1000", "training.num_train_epochs=1",
                                         "training.save_strategy=no", "training.eval_strategy=no", f"output_dir={tmp}/ner"])
        tagger = TokenTagger.from_run(ner)
        results["ner"] = {"device": str(next(tagger.runner.model.parameters()).device),
                          "entities": tagger.entities(["Empire State Building is in New York"])[0]}
        compared = {name: RUNS[name](args.rows, data_config.seed, Path(tmp) / "compare")
                    for name in ("tuned-hf-bf16", "ours-full-bf16", "ours-lora-bf16")}
        for result in compared.values():
            result["samples_per_second"] = args.rows / result["seconds"]
        peer = compared["tuned-hf-bf16"]["samples_per_second"]
        results["against_tuned_hf_bf16"] = {
            name: {"samples_per_second": round(r["samples_per_second"], 1), "speed_ratio": round(r["samples_per_second"] / peer, 2),
                   "dev_accuracy": r["accuracy"]} for name, r in compared.items()}
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
