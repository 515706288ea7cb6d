"""SQuAD v1.1 on the packaged MiniLM-L6, trained on the dev set's second half (5,609 questions) and
scored on its first half (4,961), as the offline catalogue splits it:

- ours: the shipped `squad_full` and `squad_lora`, per seed: exact match, F1, training samples/s;
- the peer, in the style of the Hugging Face `run_qa.py` example: plain `Trainer`, every window padded
  to 384 tokens, no length grouping, the same model, windows, epochs, batch size, learning rate and
  precision as `squad_full`, scored by the same n-best decoding and metric;
- answering: the 4,961 questions through `pipeline qa --file` (windows batched across questions,
  sorted by length; fp32 on its default backend and on torch, and bf16) against transformers 4's
  `pipeline("question-answering")` (which transformers 5 removed) on the same weights, one window at a
  time as it runs by default and in batches of 32: questions per second (ours counted from the
  command's start, loading included), the forward passes' GFLOP/s against the matmul peak, and the
  share of answers identical to the pipeline's. The pipeline runs in its own environment under
  bench/out/transformers4, made on first use (pip).

Prints the tables with the machine line; several hours on 2 CPU cores. Not part of CI. Each run and
measurement is kept under bench/out/squad, so an interrupted bench goes on where it stopped.

    python bench/squad.py [--seeds 1 2] [--skip-peer] [--skip-answering]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import gemm_peak, machine  # noqa: E402
from pipeline.cli import main  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "squad"


def ours(config: str, seed: int) -> dict:
    out = OUT / f"{config}_seed{seed}"
    metrics = out / "metrics.json"
    if not metrics.exists() or "validation" not in json.loads(metrics.read_text()):
        if main(["train", config, f"seed={seed}", f"output_dir={out}", "--overwrite"]):
            raise SystemExit(f"run {out} failed")
    found = json.loads(metrics.read_text())
    # Trainer's rate counts the scoring of the 4,961 questions after each epoch; the peer scores none
    # while training, so the time of those evaluations is taken out of ours.
    seconds = found["train"]["seconds"]
    evaluating = sum(json.loads(line).get("eval_runtime", 0)
                     for line in (out / "metrics.jsonl").read_text().splitlines())
    windows = found["train"]["samples_per_second"] * seconds
    return {"exact_match": found["validation"]["exact_match"], "f1": found["validation"]["f1"],
            "samples_per_second": windows / (seconds - evaluating)}


def qa_data(seed: int) -> tuple:
    from pipeline.config.loader import load_config, resolve_config_path
    from pipeline.data.question_answering import load_question_answering

    config = load_config(resolve_config_path("squad_full"), [f"seed={seed}"])
    return config, load_question_answering(config.dataset, seed).splits


def padded_logits(model, tokenizer, questions, contexts, max_length: int, stride: int, batch_size: int = 64):
    """run_qa's evaluation: every window padded to ``max_length``; logits (windows, tokens, 2), the
    question of each window, and each window's context offsets."""
    import numpy as np
    import torch

    from pipeline.data.question_answering import context_offsets, windows

    encoded = windows(tokenizer, questions, contexts, max_length, stride)
    names = [n for n in encoded if n not in ("offset_mapping", "overflow_to_sample_mapping")]
    logits = []
    for start in range(0, len(encoded["input_ids"]), batch_size):
        rows = {k: encoded[k][start:start + batch_size] for k in names}
        batch = tokenizer.pad(rows, padding="max_length", max_length=max_length, return_tensors="pt")
        with torch.inference_mode():
            out = model(**batch)
        logits.append(torch.stack([out.start_logits, out.end_logits], -1).float().numpy())
    offsets = [context_offsets(encoded, i) for i in range(len(encoded["input_ids"]))]
    return np.concatenate(logits), list(encoded["overflow_to_sample_mapping"]), offsets


def answers_from(logits, example, offsets, contexts, config) -> list[str]:
    from pipeline.inference.question_answering import Decoding, decode

    per_question: list[list[int]] = [[] for _ in contexts]
    for i, q in enumerate(example):
        per_question[q].append(i)
    decoding = Decoding.of(config.qa)
    return [decode(contexts[q], [logits[i] for i in found], [offsets[i] for i in found], decoding)[0]["answer"]
            for q, found in enumerate(per_question)]


def cached(path: Path, measure) -> dict:
    """A step's result from ``path`` when an earlier invocation measured it, so the bench runs in parts."""
    if not path.exists():
        path.write_text(json.dumps(measure()))
    return json.loads(path.read_text())


def peer(seed: int) -> dict:
    """run_qa.py's way: plain Trainer, windows padded to 384, no grouping; scored by our decoding."""
    return cached(OUT / f"peer_seed{seed}.json", lambda: measure_peer(seed))


def measure_peer(seed: int) -> dict:
    from functools import partial

    from transformers import AutoModelForQuestionAnswering, DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    from pipeline.data.question_answering import train_windows
    from pipeline.models.pretrained import load_pretrained, load_tokenizer
    from pipeline.training.trainer import native_bf16

    config, splits = qa_data(seed)
    out = OUT / f"peer_seed{seed}"
    tokenizer = load_tokenizer(config.model)
    trained = out / "train_metrics.json"
    if not trained.exists():  # the trained model is kept, so a failure while scoring costs no training
        max_length, stride = config.dataset.max_length, config.qa.doc_stride
        train = splits["train"].map(partial(train_windows, tokenizer=tokenizer, max_length=max_length,
                                            doc_stride=stride),
                                    batched=True, remove_columns=splits["train"].column_names).remove_columns(["length"])
        set_seed(seed)
        model = load_pretrained(AutoModelForQuestionAnswering, config.model)
        args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=16,
                                 learning_rate=config.training["learning_rate"],
                                 num_train_epochs=config.training["num_train_epochs"], seed=seed, use_cpu=True,
                                 bf16=native_bf16(), save_strategy="no", report_to="none", disable_tqdm=True,
                                 logging_steps=0.1)
        collator = DataCollatorWithPadding(tokenizer, padding="max_length", max_length=max_length)
        trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=collator)
        result = trainer.train()
        trainer.save_model(str(out / "model"))
        trained.write_text(json.dumps(result.metrics))
    model = AutoModelForQuestionAnswering.from_pretrained(out / "model").eval()
    return {**padded_scores(model, tokenizer, splits["validation"], config),
            "samples_per_second": json.loads(trained.read_text())["train_samples_per_second"]}


def padded_scores(model, tokenizer, validation, config) -> dict:
    """Exact match and F1 of ``model`` on ``validation``, every window padded to max_length."""
    from pipeline.metrics.squad import squad_metrics

    questions, contexts = list(validation["question"]), list(validation["context"])
    logits, example, offsets = padded_logits(model, tokenizer, questions, contexts, config.dataset.max_length,
                                             config.qa.doc_stride)
    predictions = answers_from(logits, example, offsets, contexts, config)
    return squad_metrics(predictions, [a["text"] for a in validation["answers"]])


TRANSFORMERS4 = OUT.parent / "transformers4"  # an environment with transformers 4 and its QA pipeline


def transformers4_python() -> Path:
    """The Python of a separate environment with transformers 4 and this torch, made once."""
    import subprocess

    import torch

    python, installed = TRANSFORMERS4 / "bin" / "python", TRANSFORMERS4 / "installed"
    if not installed.exists():  # written last, so an install that failed part-way is run again
        subprocess.run([sys.executable, "-m", "venv", str(TRANSFORMERS4)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"torch=={torch.__version__.split('+')[0]}",
                        "transformers>=4.57,<5"], check=True)
        installed.touch()
    return python


def forward_gflop(model, lengths: list[int]) -> float:
    """Forward-pass GFLOP over windows of these token counts: the dense layers' matrix multiplies and
    attention's two, embeddings left out (a lookup)."""
    dense = sum(p.numel() for name, p in model.named_parameters() if p.dim() == 2 and "embeddings" not in name)
    c = model.config
    return sum(2 * n * dense + 4 * n * n * c.hidden_size * c.num_hidden_layers for n in lengths) / 1e9


def answering(run: Path, seed: int) -> dict:
    """``pipeline qa --file`` on the held-out questions (fp32 on its default backend and on torch; bf16)
    against transformers 4's question-answering pipeline on the same weights, one window at a time as
    it runs by default and with batches of 32."""
    import contextlib
    import io
    import subprocess

    from transformers import AutoModelForQuestionAnswering

    from pipeline.data.question_answering import windows
    from pipeline.inference.backends import resolve_backend
    from pipeline.runs.loading import LoadOptions, load_run_model

    config, splits = qa_data(seed)
    validation = splits["validation"]
    questions = OUT / "part1_questions.jsonl"
    questions.write_text("".join(json.dumps({"question": q, "context": c}) + "\n"
                                 for q, c in zip(validation["question"], validation["context"])))
    loaded = load_run_model(run, AutoModelForQuestionAnswering, options=LoadOptions(device="cpu", precision="fp32"))
    encoded = windows(loaded.tokenizer, list(validation["question"]), list(validation["context"]),
                      config.dataset.max_length, config.qa.doc_stride)
    gflop = forward_gflop(loaded.model, [len(ids) for ids in encoded["input_ids"]])

    def ours_qa(precision: str, backend: str) -> dict:
        captured = io.StringIO()
        start = time.perf_counter()
        with contextlib.redirect_stdout(captured):
            if main(["qa", str(run), "--file", str(questions), "--json", "--device", "cpu",
                     "--precision", precision, "--backend", backend]):
                raise SystemExit("pipeline qa --file failed")
        seconds = time.perf_counter() - start
        chosen = resolve_backend(LoadOptions(device="cpu", precision=precision, backend=backend))[0]
        return {"way": f"`pipeline qa --file`, {precision}, {chosen}" + (" (auto)" if backend == "auto" else ""),
                "seconds": seconds, "precision": precision,
                "answers": [json.loads(line)["answer"] for line in captured.getvalue().splitlines()
                            if line.startswith("{")]}

    merged = OUT / f"{run.name}_transformers"
    if not (merged / "config.json").exists() and main(["export", str(run), str(merged)]):
        raise SystemExit(f"export of {run} failed")

    def transformers4(batch_size: int) -> dict:
        out = subprocess.run([str(transformers4_python()), str(Path(__file__).with_name("transformers4_qa.py")),
                              str(merged), str(questions), "--max-length", str(config.dataset.max_length),
                              "--doc-stride", str(config.qa.doc_stride),
                              "--max-answer-length", str(config.qa.max_answer_length), "--batch-size", str(batch_size)],
                             capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"transformers 4's pipeline failed:\n{out.stderr[-2000:]}")
        found = json.loads(out.stdout.strip().splitlines()[-1])
        return {"way": f"transformers {found['transformers']} `pipeline(\"question-answering\")`, fp32, "
                       + ("one window at a time (its default)" if batch_size == 1 else f"batch_size={batch_size}"),
                "seconds": found["seconds"], "precision": "fp32", "answers": found["answers"]}

    ways = [transformers4(1), transformers4(32), ours_qa("fp32", "auto"), ours_qa("fp32", "torch"),
            ours_qa("bf16", "auto")]
    reference = ways[0]["answers"]
    return {"questions": len(reference), "windows": len(encoded["input_ids"]), "gflop": gflop, "peak": gemm_peak(),
            "ways": [{"way": w["way"], "precision": w["precision"], "questions_per_second": len(w["answers"]) / w["seconds"],
                      "seconds": w["seconds"],
                      "identical": sum(a == b for a, b in zip(w["answers"], reference)) / len(reference)}
                     for w in ways]}


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--skip-answering", action="store_true")
    args = parser.parse_args()
    rows = {name: [ours(name, seed) for seed in args.seeds] for name in ("squad_full", "squad_lora")}
    if not args.skip_peer:
        rows["run_qa.py style (padded to 384, plain Trainer)"] = [peer(seed) for seed in args.seeds]
    speed = None if args.skip_answering else cached(
        OUT / f"answering_seed{args.seeds[0]}.json",
        lambda: answering(OUT / f"squad_full_seed{args.seeds[0]}", args.seeds[0]))
    print(machine())
    print(f"\nSQuAD v1.1, MiniLM-L6: 5,609 questions train (dev part 2), 4,961 scored (dev part 1); 2 epochs, "
          f"batch 16; seeds {', '.join(map(str, args.seeds))}\n")
    print("| run | exact match per seed | F1 per seed | F1 mean | training windows/s, evaluations left out (mean) |")
    print("|---|---|---|---|---|")
    for name, results in rows.items():
        em = ", ".join(f"{r['exact_match']:.2f}" for r in results)
        f1 = ", ".join(f"{r['f1']:.2f}" for r in results)
        print(f"| {name} | {em} | {f1} | {statistics.mean(r['f1'] for r in results):.2f} | "
              f"{statistics.mean(r['samples_per_second'] for r in results):.1f} |")
    peer_rows = rows.get("run_qa.py style (padded to 384, plain Trainer)")
    if peer_rows:
        print()
        for name in ("squad_full", "squad_lora"):
            f1 = statistics.mean(r["f1"] for r in rows[name]) - statistics.mean(r["f1"] for r in peer_rows)
            rate = (statistics.mean(r["samples_per_second"] for r in rows[name])
                    / statistics.mean(r["samples_per_second"] for r in peer_rows))
            print(f"{name} against the run_qa.py-style peer: F1 {f1:+.2f} points, {rate:.2f}x its training windows/s")
    if speed:
        peak, base = speed["peak"], speed["ways"][0]
        print(f"\nAnswering the {speed['questions']:,} held-out questions ({speed['windows']:,} windows, "
              f"{speed['gflop']:,.0f} GFLOP of forward passes at their own lengths), `squad_full` seed "
              f"{args.seeds[0]}; identical: the same answer text as transformers' pipeline one window at a time; matmul "
              f"peak when measured: fp32 {peak['fp32']:.0f}, bf16 {peak['bf16']:.0f} GFLOP/s\n")
        print("| way | questions/s | vs transformers' pipeline | GFLOP/s | share of the precision's peak | identical |")
        print("|---|---|---|---|---|---|")
        for way in speed["ways"]:
            rate = speed["gflop"] / way["seconds"]
            print(f"| {way['way']} | {way['questions_per_second']:.1f} | "
                  f"{way['questions_per_second'] / base['questions_per_second']:.2f}x | {rate:.0f} | "
                  f"{100 * rate / peak[way['precision']]:.0f}% | {100 * way['identical']:.2f}% |")
        base_rate = speed["gflop"] / base["seconds"]
        print(f"\n3x the pipeline's questions per second in fp32 would compute at "
              f"{100 * 3 * base_rate / peak['fp32']:.0f}% of the fp32 peak; the bf16 peak is "
              f"{peak['bf16'] / peak['fp32']:.1f}x the fp32 one")


if __name__ == "__main__":
    main_bench()
