#!/usr/bin/env bash
# NER with the shipped configs: WNUT-17 and CoNLL-2003, MiniLM full and LoRA, entity F1 on the test
# split (WNUT-17 test, CoNLL-2003 testb) with training time. Not part of CI (about 15 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/out
for config in wnut17_full wnut17_lora conll2003_full conll2003_lora; do
  .venv/bin/pipeline train "$config" "output_dir=bench/out/$config" --overwrite "$@" > "bench/out/$config.log" 2>&1
  .venv/bin/python -c "import json; m = json.load(open('bench/out/$config/metrics.json')); print(f\"$config: test entity F1 {m['test']['f1']:.4f} (P {m['test']['precision']:.4f}, R {m['test']['recall']:.4f}), validation F1 {m['validation']['f1']:.4f}, training {m['train']['seconds']:.0f} s\")"
done
