#!/usr/bin/env bash
# Which LoRA placement closes the gap to full fine-tuning on SST-2: each variant trains one epoch on
# the same 20,000 training rows (seed 42, lr 1e-3 unless named, batch 16) and is scored on the 872
# dev sentences, with full fine-tuning (lr 5e-5) as the reference. Not part of CI (about 40 minutes
# on 2 CPU cores). Extra arguments are config overrides applied to every variant.
set -euo pipefail
source "$(dirname "$0")/common.sh"
common=(dataset.max_train_samples=20000 training.num_train_epochs=1 training.save_strategy=no
        training.eval_strategy=no "$@")
variant() {  # name overrides...
  local name=$1; shift
  bench_train bench/out/lora_variants "$name" sst2_lora "${common[@]}" "$@"
}
variant full method=full training.learning_rate=5e-5
variant qv_pooler
variant qv_pooler_embeddings 'lora.target_modules=[query,value,word_embeddings]'
variant all_linear 'lora.target_modules=[query,key,value,dense]'
variant qv_r32 lora.r=32 lora.alpha=64
variant qv_pooler_lr3e-3 training.learning_rate=3e-3
variant all_linear_lr3e-3 'lora.target_modules=[query,key,value,dense]' training.learning_rate=3e-3
