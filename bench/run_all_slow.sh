#!/usr/bin/env bash
# Every slow benchmark in sequence (about an hour on 2 CPU cores); logs land in bench/out/.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/out
bench/sst2_full_data.sh > bench/out/sst2_full_data.txt 2>&1
bench/ner.sh > bench/out/ner.txt 2>&1
.venv/bin/python bench/inference_throughput.py --skip-sst2 --imdb 5000 --json bench/out/inference_imdb.json \
  > bench/out/inference_imdb.log 2>&1
echo finished > bench/out/slow.done
