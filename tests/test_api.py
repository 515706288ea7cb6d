"""The Python API (``import pipeline``): train -> load -> call -> evaluate on real runs, the CLI's
one-line errors as exceptions, and an import that does not pull in torch."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import run_cli

import pipeline

REVIEWS = ["A true cinematic achievement, moving and beautifully acted.", "Boring, predictable and far too long."]


def test_train_load_call_evaluate_on_a_classification_run(lora_run, capsys):
    run = pipeline.Run(lora_run)  # what pipeline.train returned for the shared SST-2 LoRA run
    assert run.metrics["validation"]["accuracy"] > 0.75  # its measured accuracy, less 3 points
    model = pipeline.load(run.path, device="cpu")
    assert model.recipe == "sequence_classification" and model.device == "cpu"
    assert model.backend in ("openvino", "onnxruntime", "torch") and model.precision == "fp32"
    positive, negative = model(REVIEWS)
    assert positive["label"] == "positive" and negative["label"] == "negative"
    assert model(REVIEWS[0]) == positive  # one string, one result, as transformers' pipelines do
    best_two = model(REVIEWS, top_k=2)
    assert [p["label"] for p in best_two[0]] == ["positive", "negative"]
    assert abs(sum(p["score"] for p in best_two[0]) - 1) < 1e-4
    # The command line runs the same code: `predict --json` prints what the API returns.
    capsys.readouterr()
    assert run_cli("predict", run.path, "--device", "cpu", "--json", *[a for t in REVIEWS for a in ("--text", t)]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p["label"] for p in printed] == ["positive", "negative"]
    assert [round(p["score"], 5) for p in printed] == [round(p["score"], 5) for p in (positive, negative)]
    scores = pipeline.evaluate(run.path, device="cpu")
    assert scores["accuracy"] == run.metrics["validation"]["accuracy"]  # the score training recorded
    assert run.config.method == "lora"


def test_train_load_call_evaluate_on_an_ner_run(tmp_path):
    out = tmp_path / "conll"
    run = pipeline.train("conll2003_full", ["dataset.max_train_samples=800", "dataset.max_eval_samples=200",
                                            "training.num_train_epochs=2", "training.learning_rate=2e-4",
                                            f"output_dir={out}"])
    # Measured: entity F1 0.66 on these 200 sentences after two epochs on 800 (seed 42); margin 0.1.
    assert run.metrics["validation"]["f1"] >= 0.56
    model = pipeline.load(run.path, device="cpu")
    text = "Germany beat Argentina in Rome, said coach Joachim Loew."
    entities = model(text)
    assert entities and all(text[e["start"]:e["end"]] == e["text"] for e in entities)
    assert {e["entity"] for e in entities} <= {"PER", "LOC", "ORG", "MISC"}
    assert "LOC" in {e["entity"] for e in entities}
    assert model([text, "Nothing here."])[0] == entities
    assert pipeline.evaluate(run.path, device="cpu")["f1"] == run.metrics["validation"]["f1"]


def test_language_model_runs_load_as_fill_mask_and_generation(tmp_path, capsys):
    quick = {"training.eval_strategy": "no", "training.save_strategy": "no", "training.max_steps": 10}
    mlm = pipeline.train("tiny_shakespeare_mlm", {**quick, "dataset.max_train_samples": 200,
                                                  "dataset.max_eval_samples": 20, "output_dir": str(tmp_path / "mlm")})
    masks = pipeline.load(mlm.path)("ROMEO: I [MASK] thee, my [MASK] lord.", top_k=3)
    capsys.readouterr()
    assert run_cli("fill-mask", mlm.path, "ROMEO: I [MASK] thee, my [MASK] lord.", "--top-k", "3", "--json") == 0
    assert json.loads(capsys.readouterr().out) == masks
    gpt2 = pipeline.train("tiny_shakespeare_gpt2", {**quick, "dataset.max_train_samples": 200, "lm.vocab_size": 500,
                                                    "dataset.max_eval_samples": 20, "output_dir": str(tmp_path / "gpt2")})
    model = pipeline.load(gpt2.path)
    assert model.recipe == "causal_lm" and model.backend == "torch"
    greedy = model(["ROMEO:"], max_new_tokens=8, temperature=0)
    capsys.readouterr()
    assert run_cli("generate", gpt2.path, "ROMEO:", "--max-new-tokens", "8", "--temperature", "0") == 0
    assert capsys.readouterr().out == greedy[0] + "\n"  # the command prints the text as it is


def test_a_misspelt_key_raises_the_message_the_cli_prints(capsys):
    with pytest.raises(pipeline.PipelineError) as raised:
        pipeline.train("sst2_lora", ["trainig.learning_rate=1"])
    capsys.readouterr()
    assert run_cli("train", "sst2_lora", "trainig.learning_rate=1") == 2
    assert capsys.readouterr().err.strip() == f"error: {raised.value}"
    assert "did you mean training.learning_rate" in str(raised.value)
    with pytest.raises(pipeline.PipelineError, match="did you mean training.learning_rate"):
        pipeline.train({"recipe": "sequence_classification", "dataset": {"name": "sst2"}, "output_dir": "x",
                        "trainig": {"learning_rate": 1}})


def test_bad_calls_raise_the_projects_error(tmp_path, lora_run):
    with pytest.raises(pipeline.PipelineError, match="does not exist"):
        pipeline.load(tmp_path / "no_run")
    with pytest.raises(pipeline.PipelineError, match="batch-size must be positive"):
        pipeline.load(lora_run, batch_size=0)
    with pytest.raises(pipeline.PipelineError, match="not the string"):
        pipeline.load_config("sst2_lora", "training.learning_rate=1e-3")
    with pytest.raises(pipeline.PipelineError, match="text 2 is empty"):
        pipeline.load(lora_run, device="cpu")(["fine", " "])


def test_import_pipeline_does_not_import_torch():
    code = ("import sys, pipeline; pipeline.train; pipeline.load; pipeline.Run; "
            "print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
