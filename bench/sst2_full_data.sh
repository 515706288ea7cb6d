#!/usr/bin/env bash
# SST-2 on all 67,349 training rows, scored on the 872-row dev set: full fine-tuning with the shipped
# sst2_full config (3 epochs), and LoRA on every linear layer for 4 epochs (the shipped sst2_lora
# adapts query/value for 3 epochs, a shorter default). Not part of CI: about 50 minutes on 2 CPU
# cores. Extra arguments are config overrides applied to both runs.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/out
run() {
  local name=$1 config=$2; shift 2
  local start=$(date +%s)
  .venv/bin/pipeline train "$config" "$@" "output_dir=bench/out/$name" --overwrite > "bench/out/$name.log" 2>&1
  echo "$name: wall $(( $(date +%s) - start )) s, $(.venv/bin/python -c "import json; m = json.load(open('bench/out/$name/metrics.json')); print(f\"dev accuracy {m['validation']['accuracy']:.4f}, training {m['train']['seconds']:.0f} s, {m['parameters']['percent']:.2f}% trainable\")")"
}
run sst2_full sst2_full "$@"
run sst2_lora_all_linear sst2_lora 'lora.target_modules=[query,key,value,dense]' training.num_train_epochs=4 "$@"
