#!/usr/bin/env bash
# The PEFT method table on SST-2: 8,000 training rows, 2 epochs, batch 16, seed 42 for every method,
# each at its own default learning rate; scored on the 872-row dev set. Not part of CI (about
# 20 minutes on 2 CPU cores). Writes bench/out/compare/comparison.{md,json,png}.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m bench.machine  # the machine line that heads the table
.venv/bin/pipeline compare sst2_lora dataset.max_train_samples=8000 training.num_train_epochs=2 \
  --methods full,head,lora,dora,adalora,ia3,prompt,prefix --output-dir bench/out/compare --overwrite "$@"
cat bench/out/compare/comparison.md
