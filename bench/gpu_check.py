"""GPU check: the SST-2 recipe on one GPU in fp32 and in bf16, with samples/s, tokens/s and peak
memory. Run on a machine with a CUDA GPU: python bench/gpu_check.py [--rows 8000]"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from pipeline.cli import _quiet_libraries  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.training import train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8000)
    parser.add_argument("--method", default="full", choices=("full", "lora"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU here; run this on a GPU machine")
    _quiet_libraries()
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    from pipeline.data import load_text_classification
    from pipeline.models import load_tokenizer

    data_config = load_config(ROOT / "recipes/configs/sst2_full.yaml", [f"dataset.max_train_samples={args.rows}"])
    texts = list(load_text_classification(data_config.dataset, data_config.seed).splits["train"]["text"])
    real_tokens = sum(min(len(ids), 128) for ids in load_tokenizer("minilm")(texts)["input_ids"])
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "bf16"):
            torch.cuda.reset_peak_memory_stats()
            config = load_config(ROOT / f"recipes/configs/sst2_{args.method}.yaml", [
                f"dataset.max_train_samples={args.rows}", "training.num_train_epochs=1",
                "training.per_device_train_batch_size=32", "training.save_strategy=no", "training.eval_strategy=no",
                f"training.bf16={'true' if precision == 'bf16' else 'false'}", f"output_dir={tmp}/{precision}"])
            start = time.perf_counter()
            run = train(config)
            metrics = json.loads((run / "metrics.json").read_text())
            seconds = metrics["train"]["seconds"]
            results[precision] = {
                "samples_per_second": args.rows / seconds,
                "tokens_per_second": real_tokens / seconds,
                "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
                "dev_accuracy": metrics["validation"]["accuracy"],
                "wall_seconds": time.perf_counter() - start,
            }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
