#!/usr/bin/env bash
# SST-2 on all 67,349 training rows with the shipped configs (3 epochs each), scored on the 872-row
# dev set. Not part of CI: about half an hour on 2 CPU cores. Extra arguments are config overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/out
for config in sst2_full sst2_lora; do
  start=$(date +%s)
  .venv/bin/pipeline train "$config" "output_dir=bench/out/$config" --overwrite "$@" > "bench/out/$config.log" 2>&1
  echo "$config: wall $(( $(date +%s) - start )) s, $(.venv/bin/python -c "import json; m = json.load(open('bench/out/$config/metrics.json')); print(f\"dev accuracy {m['validation']['accuracy']:.4f}, training {m['train']['seconds']:.0f} s, {m['parameters']['percent']:.2f}% trainable\")")"
done
