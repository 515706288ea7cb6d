#!/usr/bin/env bash
# Pretraining numbers (not part of CI; about 20 minutes on 2 CPU cores), logs in bench/out/pretraining/:
#  1. GPT-2 from scratch on tiny Shakespeare (the shipped config): validation perplexity before/after.
#  2. SmolLM2-135M continued on tiny Shakespeare with LoRA (q_proj, v_proj), 40 steps of 8 x 256 tokens.
#  3. Domain-adaptive pretraining: MiniLM masked-LM on 2,000 IMDb reviews, then SST-2 fine-tuning from it
#     and from plain MiniLM at the same budget (4,000 rows, 1 epoch, full, lr 5e-5).
#  4. Decoder vs encoder on SST-2: SmolLM2 and MiniLM, LoRA, 2,000 rows, 1 epoch.
set -euo pipefail
source "$(dirname "$0")/common.sh"
out=bench/out/pretraining
bench_train "$out" gpt2_scratch tiny_shakespeare_gpt2
bench_train "$out" smollm2_lora tiny_shakespeare_smollm2_lora training.max_steps=40 dataset.max_eval_samples=150 \
  training.eval_strategy=no training.save_strategy=no
bench_train "$out" dapt_mlm imdb_dapt dataset.max_train_samples=2000 dataset.max_eval_samples=200
sst2=(dataset.max_train_samples=4000 training.num_train_epochs=1 training.save_strategy=no training.eval_strategy=no)
bench_train "$out" sst2_from_dapt sst2_full "${sst2[@]}" "model=$out/dapt_mlm"
bench_train "$out" sst2_from_minilm sst2_full "${sst2[@]}"
cls=(dataset.max_train_samples=2000 training.num_train_epochs=1 training.save_strategy=no training.eval_strategy=no)
bench_train "$out" sst2_smollm2_lora sst2_smollm2_lora "${cls[@]}"
bench_train "$out" sst2_minilm_lora sst2_lora "${cls[@]}"
