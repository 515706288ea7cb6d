#!/usr/bin/env bash
# Pretraining numbers (not part of CI; about 20 minutes on 2 CPU cores), logs in bench/out/pretraining/:
#  1. GPT-2 from scratch on tiny Shakespeare (the shipped config): validation perplexity before/after.
#  2. SmolLM2-135M continued on tiny Shakespeare with LoRA (q_proj, v_proj), 40 steps of 8 x 256 tokens.
#  3. Domain-adaptive pretraining: MiniLM masked-LM on 2,000 IMDb reviews, then SST-2 fine-tuning from it
#     and from plain MiniLM at the same budget (4,000 rows, 1 epoch, full, lr 5e-5).
#  4. Decoder vs encoder on SST-2: SmolLM2 and MiniLM, LoRA, 2,000 rows, 1 epoch.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/out/pretraining
mkdir -p "$out"
train() {  # name config overrides...
  local name=$1 config=$2; shift 2
  .venv/bin/pipeline train "$config" "$@" "output_dir=$out/$name" --overwrite > "$out/$name.log" 2>&1
}
show() {  # name: before/after for LMs, dev accuracy for classifiers
  .venv/bin/python - "$out/$1" <<'PY'
import json, sys
from pathlib import Path
run = Path(sys.argv[1]); m = json.loads((run / "metrics.json").read_text()); t = m["train"]
if "before" in m:
    b, a = m["before"], m["validation"]
    print(f"{run.name}: perplexity {b['perplexity']:.1f} -> {a['perplexity']:.1f}, token accuracy "
          f"{b['accuracy']:.4f} -> {a['accuracy']:.4f}, {t['steps']} steps, {t['seconds']:.0f} s")
else:
    print(f"{run.name}: dev accuracy {m['validation']['accuracy']:.4f}, {t['samples_per_second']:.1f} samples/s, "
          f"{t['seconds']:.0f} s, {m['parameters']['percent']:.2f}% trainable")
PY
}
train gpt2_scratch tiny_shakespeare_gpt2 && show gpt2_scratch
train smollm2_lora tiny_shakespeare_smollm2_lora training.max_steps=40 dataset.max_eval_samples=150 \
  training.eval_strategy=no training.save_strategy=no && show smollm2_lora
train dapt_mlm imdb_dapt dataset.max_train_samples=2000 dataset.max_eval_samples=200 && show dapt_mlm
sst2=(dataset.max_train_samples=4000 training.num_train_epochs=1 training.save_strategy=no training.eval_strategy=no)
train sst2_from_dapt sst2_full "${sst2[@]}" "model=$out/dapt_mlm" && show sst2_from_dapt
train sst2_from_minilm sst2_full "${sst2[@]}" && show sst2_from_minilm
cls=(dataset.max_train_samples=2000 training.num_train_epochs=1 training.save_strategy=no training.eval_strategy=no)
train sst2_smollm2_lora sst2_smollm2_lora "${cls[@]}" && show sst2_smollm2_lora
train sst2_minilm_lora sst2_lora "${cls[@]}" && show sst2_minilm_lora
