"""Chat fine-tuning and preference tuning of the packaged SmolLM2-135M-Instruct with LoRA, on the
shipped configs:

- SFT (`alpaca_smollm2_lora`: 900 alpaca conversations train, 99 held out, 1 epoch, padded batches
  grouped by length), per seed: held-out reply loss, perplexity, stop rate and ROUGE-L before -> after;
- throughput, in the same script and process: the same SFT packed, unpacked (padded to each
  batch's longest, length-grouped), and TRL's `SFTTrainer` with its defaults (no packing, loss on
  every token, gradient checkpointing, max_length 1024) on the same conversations, model, LoRA,
  batch size and learning rate, each for the same number of steps: real training tokens per second;
- DPO (`dpo_smollm2_lora`: 240 pairs train, 60 held out, max_length 384, 1 epoch), per seed: held-out
  reward accuracy and margin against the starting model, before -> after, and how often the model
  alone prefers the chosen reply (log-probability per token).

Prints the tables with the machine line; about 70 minutes on 2 CPU cores. The quality runs report no
times; the throughput runs (cached once done) need the machine to themselves. Not part of CI.

    python bench/chat_tuning.py [--seeds 1 2] [--steps 30] [--skip-dpo]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import machine  # noqa: E402
from pipeline.cli import main  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "chat_tuning"
THROUGHPUT = ["training.eval_strategy=no", "training.save_strategy=no", "chat.generation_samples=0"]
# The SFT runs' generation check: 10 held-out prompts before and after (the shipped config: 20); the
# DPO runs measure preferences, not stopping, and leave it out.
QUALITY = ["chat.generation_samples=10"]
PAIRS_ONLY = ["chat.generation_samples=0"]


def run(config: str, name: str, seed: int, *overrides: str) -> dict:
    out = OUT / f"{name}_seed{seed}"
    metrics = out / "metrics.json"
    if not metrics.exists() or "validation" not in json.loads(metrics.read_text()):
        if main(["train", config, *overrides, f"seed={seed}", f"output_dir={out}", "--overwrite"]):
            raise SystemExit(f"run {out} failed")
    return json.loads(metrics.read_text())


def throughput(name: str, seed: int, counting: str, *overrides: str) -> float:
    """Real (non-padding) training tokens per second of a fixed-step run, from Trainer's own count."""
    metrics = run("alpaca_smollm2_lora", name, seed, f"training.include_num_input_tokens_seen={counting}",
                  *overrides)
    logged = [json.loads(line) for line in (OUT / f"{name}_seed{seed}" / "metrics.jsonl").read_text().splitlines()]
    tokens = max(record.get("num_input_tokens_seen", 0) for record in logged)
    return tokens / metrics["train"]["seconds"]


def trl_sft_peer(steps: int, seed: int) -> float:
    """Real training tokens per second of TRL's SFTTrainer with its defaults on the same data, model and
    LoRA (kept in OUT, so a rerun prints the tables without training again)."""
    saved = OUT / f"trl_sft_seed{seed}.json"
    if saved.exists():
        return json.loads(saved.read_text())["tokens_per_second"]
    import datasets
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from pipeline.config.loader import load_config, resolve_config_path
    from pipeline.data.conversations import load_conversations
    from pipeline.models.pretrained import load_pretrained, load_tokenizer
    from transformers import AutoModelForCausalLM

    config = load_config(resolve_config_path("alpaca_smollm2_lora"), [f"seed={seed}"])
    conversations = load_conversations(config.dataset, config.chat, seed)["train"]
    lora = config.lora
    args = SFTConfig(output_dir=str(OUT / "trl_sft"), per_device_train_batch_size=8, max_steps=steps,
                     learning_rate=config.training["learning_rate"], seed=seed, report_to="none", use_cpu=True,
                     save_strategy="no", disable_tqdm=True, logging_steps=steps,
                     include_num_input_tokens_seen="non_padding")
    trainer = SFTTrainer(model=load_pretrained(AutoModelForCausalLM, config.model), args=args,
                         train_dataset=datasets.Dataset.from_dict({"messages": conversations}),
                         processing_class=load_tokenizer(config.model),
                         peft_config=LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                                target_modules=list(lora.target_modules), task_type="CAUSAL_LM"))
    start = time.perf_counter()
    trainer.train()
    rate = trainer.state.num_input_tokens_seen / (time.perf_counter() - start)
    saved.write_text(json.dumps({"tokens_per_second": rate, "steps": steps}))
    return rate


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=16, help="training steps of each throughput run")
    parser.add_argument("--skip-sft", action="store_true")
    parser.add_argument("--skip-dpo", action="store_true")
    args = parser.parse_args()
    steps = [f"training.max_steps={args.steps}", *THROUGHPUT]
    # packed rows hold no padding ("all" counts them whole); padded batches count their attention mask
    rates = {"ours, packed": throughput("throughput_packed", args.seeds[0], "all", "dataset.packing=true", *steps),
             "ours, unpacked (shipped: padded to each batch's longest, length-grouped)": throughput(
                 "throughput_unpacked", args.seeds[0], "non_padding", "dataset.packing=false", *steps),
             "TRL SFTTrainer, its defaults": trl_sft_peer(args.steps, args.seeds[0])}

    sft = {} if args.skip_sft else {seed: run("alpaca_smollm2_lora", "sft", seed, *QUALITY) for seed in args.seeds}
    dpo = {} if args.skip_dpo else {seed: run("dpo_smollm2_lora", "dpo", seed, *PAIRS_ONLY) for seed in args.seeds}

    print(machine())
    if sft:
        print(f"\nSFT, SmolLM2-135M-Instruct + LoRA r16 (q,k,v,o), alpaca_demo: 900 train / 99 held out, 1 epoch, "
              f"batch 8, unpacked; the generation check on 10 held-out prompts; seeds {', '.join(map(str, args.seeds))}\n")
        print("| seed | reply loss before -> after | perplexity before -> after | stop rate before -> after | "
              "ROUGE-L before -> after |")
        print("|---|---|---|---|---|")
        for seed, m in sft.items():
            b, a = m["before"], m["validation"]
            print(f"| {seed} | {b['loss']:.3f} -> {a['loss']:.3f} | {b['perplexity']:.2f} -> {a['perplexity']:.2f} | "
                  f"{b['stop_rate']:.2f} -> {a['stop_rate']:.2f} | {b['rouge_l']:.3f} -> {a['rouge_l']:.3f} |")
    print(f"\nThroughput: {args.steps} training steps of 8 conversations each, seed {args.seeds[0]}; real (non-padding) "
          f"tokens per second as Trainer counts them\n")
    print("| run | training tokens/s | vs ours unpacked |")
    print("|---|---|---|")
    base = rates["ours, unpacked (shipped: padded to each batch's longest, length-grouped)"]
    for name, rate in rates.items():
        print(f"| {name} | {rate:.0f} | {rate / base:.2f}x |")
    if dpo:
        print("\nDPO, SmolLM2-135M-Instruct + LoRA r16, dpo_demo: 240 train / 60 held-out pairs (those whose prompt "
              "fits max_length 384), 1 epoch, batch 4, beta 0.1; reward = beta * log-ratio to the starting model\n")
        print("| seed | held-out pairs | reward accuracy before -> after | reward margin after | "
              "chosen preferred per token before -> after | DPO loss before -> after |")
        print("|---|---|---|---|---|---|")
        for seed, m in dpo.items():
            b, a = m["before"], m["validation"]
            print(f"| {seed} | {a['pairs']:.0f} | {b['reward_accuracy']:.3f} -> {a['reward_accuracy']:.3f} | "
                  f"{a['reward_margin']:.3f} | {b['chosen_preferred']:.3f} -> {a['chosen_preferred']:.3f} | "
                  f"{b['loss']:.3f} -> {a['loss']:.3f} |")


if __name__ == "__main__":
    main_bench()
