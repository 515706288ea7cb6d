#!/usr/bin/env bash
# NER with the shipped configs: WNUT-17 and CoNLL-2003, MiniLM full and LoRA, entity F1 on the test
# split (WNUT-17 test, CoNLL-2003 testb) with training time. Not part of CI (about 15 minutes).
# Extra arguments are config overrides applied to every run; NER_CONFIGS picks the configs
# (NER_CONFIGS="wnut17_lora conll2003_lora" bench/ner.sh seed=43).
set -euo pipefail
source "$(dirname "$0")/common.sh"
for config in ${NER_CONFIGS:-wnut17_full wnut17_lora conll2003_full conll2003_lora}; do
  bench_train bench/out "$config" "$config" "$@"
done
