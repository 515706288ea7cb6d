#!/usr/bin/env bash
# Every benchmark in sequence (about three hours on 2 CPU cores); logs land in bench/out/.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/out
.venv/bin/python bench/train_throughput.py --json bench/out/train_throughput.json > bench/out/train_throughput.txt 2>&1
bench/sst2_full_data.sh > bench/out/sst2_full_data.txt 2>&1
bench/lora_variants.sh > bench/out/lora_variants.txt 2>&1
bench/ner.sh > bench/out/ner.txt 2>&1
bench/method_comparison.sh > bench/out/method_comparison.txt 2>&1
.venv/bin/python bench/augmentation.py > bench/out/augmentation.txt 2>&1
bench/pretraining.sh > bench/out/pretraining.txt 2>&1
.venv/bin/python bench/mlm_head.py > bench/out/mlm_head.txt 2>&1
.venv/bin/python bench/adapter_memory.py > bench/out/adapter_memory.txt 2>&1
.venv/bin/python bench/inference_throughput.py --imdb 1000 --json bench/out/inference.json \
  > bench/out/inference.txt 2>&1
.venv/bin/python bench/scaling.py --json bench/out/scaling.json > bench/out/scaling.txt 2>&1
.venv/bin/python bench/tune_search.py > bench/out/tune_search.txt 2>&1
.venv/bin/python bench/small_data.py > bench/out/small_data.txt 2>&1
.venv/bin/python bench/method_switch.py > bench/out/method_switch.txt 2>&1
.venv/bin/python -m pytest -q -m slow tests/test_properties.py tests/test_bad_inputs.py > bench/out/properties.txt 2>&1
echo finished > bench/out/slow.done
