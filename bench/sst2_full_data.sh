#!/usr/bin/env bash
# SST-2 on all 67,349 training rows, scored on the 872-row dev set: full fine-tuning with the shipped
# sst2_full config (3 epochs), and LoRA on every linear layer for 4 epochs (the shipped sst2_lora
# adapts query/value for 3 epochs, a shorter default). Not part of CI: about 50 minutes on 2 CPU
# cores. Extra arguments are config overrides applied to both runs (e.g. seed=43).
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_train bench/out sst2_full sst2_full "$@"
bench_train bench/out sst2_lora_all_linear sst2_lora 'lora.target_modules=[query,key,value,dense]' \
  training.num_train_epochs=4 "$@"
