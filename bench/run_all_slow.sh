#!/usr/bin/env bash
# Every slow benchmark in sequence (about two and a half hours on 2 CPU cores); logs land in bench/out/.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/out
bench/sst2_full_data.sh > bench/out/sst2_full_data.txt 2>&1
bench/lora_variants.sh > bench/out/lora_variants.txt 2>&1
bench/ner.sh > bench/out/ner.txt 2>&1
bench/method_comparison.sh > bench/out/method_comparison.txt 2>&1
.venv/bin/python bench/augmentation.py > bench/out/augmentation.txt 2>&1
bench/pretraining.sh > bench/out/pretraining.txt 2>&1
.venv/bin/python bench/adapter_memory.py > bench/out/adapter_memory.txt 2>&1
.venv/bin/python bench/inference_throughput.py --skip-sst2 --imdb 5000 --json bench/out/inference_imdb.json \
  > bench/out/inference_imdb.log 2>&1
echo finished > bench/out/slow.done
