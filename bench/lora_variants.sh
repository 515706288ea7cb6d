#!/usr/bin/env bash
# Which LoRA placement closes the gap to full fine-tuning on SST-2: each variant trains one epoch on
# the same 20,000 training rows (seed 42, lr 1e-3, batch 16) and is scored on the 872 dev sentences,
# with full fine-tuning (lr 5e-5) as the reference. Not part of CI (about 10 minutes on 2 CPU cores).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/out/lora_variants
common=(dataset.max_train_samples=20000 training.num_train_epochs=1 training.save_strategy=no training.eval_strategy=no)
variant() {
  local name=$1; shift
  .venv/bin/pipeline train sst2_lora "${common[@]}" "$@" "output_dir=bench/out/lora_variants/$name" --overwrite \
    > "bench/out/lora_variants/$name.log" 2>&1
  .venv/bin/python -c "import json; m = json.load(open('bench/out/lora_variants/$name/metrics.json')); print(f\"$name: dev accuracy {m['validation']['accuracy']:.4f}, {m['parameters']['trainable']:,} trainable ({m['parameters']['percent']:.2f}%), {m['train']['seconds']:.0f} s\")"
}
variant full method=full training.learning_rate=5e-5
variant qv_pooler
variant qv_pooler_embeddings 'lora.target_modules=[query,value,word_embeddings]'
variant all_linear 'lora.target_modules=[query,key,value,dense]'
variant qv_r32 lora.r=32 lora.alpha=64
