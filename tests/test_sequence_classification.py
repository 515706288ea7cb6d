"""Real fine-tunes of MiniLM on SST-2 rows: accuracy, the run folder, reloading and prediction."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import run_cli
from PIL import Image

from pipeline.inference.engines import TextClassifier

REVIEWS = ["A true cinematic achievement!", "Boring and predictable."]


# Measured on these 2,000-row runs: LoRA 0.798 and full 0.786 dev accuracy (Intel Xeon with AMX, bf16
# autocast), about 0.78 on an AMD EPYC in fp32; the thresholds leave 3 points for the machine and seed.


def test_lora_run_reaches_its_measured_dev_accuracy(lora_run):
    metrics = json.loads((lora_run / "metrics.json").read_text())
    assert metrics["validation"]["rows"] == 872
    assert metrics["validation"]["accuracy"] > 0.75
    assert metrics["parameters"]["percent"] < 4.0  # rank 16 on the blocks' linear layers, the pooler in full: 3.5%


def test_full_run_reaches_its_measured_dev_accuracy(full_run):
    metrics = json.loads((full_run / "metrics.json").read_text())
    assert metrics["validation"]["accuracy"] > 0.75
    assert metrics["parameters"]["trainable"] == metrics["parameters"]["total"]


def test_short_rows_train_with_eager_attention_once_dropout_is_off(lora_run, full_run):
    """The shipped SST-2 configs turn dropout off, and SST-2's rows are short: on a CPU their steps
    run eager attention (SDPA's dropout-free CPU kernel is slower there; bench/attention.py). With the
    checkpoint's dropout, or rows over 128 tokens, SDPA stays. The saved run loads back with SDPA."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from pipeline.models.pretrained import resolve_model
    from pipeline.models.training_setup import choose_training_attention, set_dropout

    expected = "sdpa" if torch.cuda.is_available() else "eager"
    for run in (lora_run, full_run):
        assert json.loads((run / "metrics.json").read_text())["train"]["attention"] == expected
    assert AutoModelForSequenceClassification.from_pretrained(full_run).config._attn_implementation == "sdpa"
    model = AutoModelForSequenceClassification.from_pretrained(resolve_model("minilm"))
    assert choose_training_attention(model, longest_row=40, on_cpu=True) == "sdpa"  # the checkpoint's dropout
    set_dropout(model, 0.0)
    assert choose_training_attention(model, longest_row=300, on_cpu=True) == "sdpa"
    assert choose_training_attention(model, longest_row=40, on_cpu=True) == "eager"


def test_lora_run_folder_holds_a_small_adapter_that_peft_loads(lora_run):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    adapter = lora_run / "adapter_model.safetensors"
    assert adapter.stat().st_size < 5 * 1024 * 1024
    assert not (lora_run / "model.safetensors").exists()
    config = yaml.safe_load((lora_run / "run_config.yaml").read_text())
    from pipeline.models.pretrained import resolve_model

    base = AutoModelForSequenceClassification.from_pretrained(resolve_model(config["model"]), num_labels=2)
    model = PeftModel.from_pretrained(base, lora_run).eval()
    ours = TextClassifier.from_run(lora_run)
    reloaded = TextClassifier(model, ours.tokenizer, ours.label_names).probabilities(REVIEWS)
    np.testing.assert_allclose(reloaded, ours.probabilities(REVIEWS), atol=1e-5)


def test_run_folder_describes_itself(lora_run):
    for name in ("run_config.yaml", "labels.json", "metrics.json", "metrics.jsonl", "metrics.csv", "README.md",
                 "training_curves.png", "confusion_matrix.txt", "confusion_matrix.png", "tokenizer.json"):
        assert (lora_run / name).exists(), name
    assert json.loads((lora_run / "labels.json").read_text()) == ["negative", "positive"]
    width, height = Image.open(lora_run / "confusion_matrix.png").size
    assert width > 100 and height > 100
    metrics = json.loads((lora_run / "metrics.json").read_text())
    assert sum(map(sum, metrics["validation"]["confusion_matrix"])) == 872
    card = (lora_run / "README.md").read_text()
    assert f"{metrics['validation']['accuracy']:.4f}" in card
    log = [json.loads(line) for line in (lora_run / "metrics.jsonl").read_text().splitlines()]
    assert any("eval_accuracy" in r for r in log) and any("accuracy" in r and "loss" in r for r in log)


def test_overrides_land_in_the_resolved_config(lora_run):
    config = yaml.safe_load((lora_run / "run_config.yaml").read_text())
    assert config["dataset"]["max_train_samples"] == 2000
    assert config["training"]["num_train_epochs"] == 2
    assert config["training"]["learning_rate"] == pytest.approx(1e-3)  # "1e-3" typed as float
    # the shipped settings the overrides left alone are recorded as they were
    # all-linear, resolved to the blocks' linear layers (the pooler trains in full, with the head)
    assert config["lora"] == {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": [
        "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
        "intermediate.dense", "output.dense"]}
    assert config["training"]["dropout"] == 0.0 and config["training"]["per_device_train_batch_size"] == 32


def test_full_run_saves_a_transformers_model_with_the_label_map(full_run):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(full_run)
    assert model.config.id2label == {0: "negative", 1: "positive"}


def test_predict_command_matches_in_process_predictions(full_run, tmp_path):
    expected = TextClassifier.from_run(full_run).predict(REVIEWS)
    args = [sys.executable, "-m", "pipeline", "predict", str(full_run), "--json"]
    for text in REVIEWS:
        args += ["--text", text]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    got = [json.loads(line) for line in out.splitlines()]
    assert [g["text"] for g in got] == REVIEWS
    assert [g["label"] for g in got] == [e["label"] for e in expected]
    np.testing.assert_allclose([g["score"] for g in got], [e["score"] for e in expected], atol=1e-5)
    assert got[0]["label"] == "positive" and got[1]["label"] == "negative"


def test_predict_reads_a_text_file(lora_run, tmp_path, capsys, sst2_rows):
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(s for s, _ in sst2_rows[:5]) + "\n\n", encoding="utf-8")
    assert run_cli("predict", lora_run, "--file", path, "--json") == 0
    lines = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert [l["text"] for l in lines] == [s for s, _ in sst2_rows[:5]]
    assert all(l["label"] in ("negative", "positive") and 0.5 <= l["score"] <= 1 for l in lines)


def test_evaluate_command_reproduces_the_training_metrics_exactly(lora_run, capsys):
    recorded = json.loads((lora_run / "metrics.json").read_text())["validation"]
    assert run_cli("evaluate", lora_run) == 0
    assert json.loads((lora_run / "metrics.json").read_text())["validation"] == recorded
    assert f"accuracy {recorded['accuracy']:.4f}" in capsys.readouterr().out


def test_evaluate_on_unlabelled_glue_test_split_says_so(lora_run, capsys):
    assert run_cli("evaluate", lora_run, "--split", "test") == 2
    err = capsys.readouterr().err
    assert "has no labels" in err and "pipeline predict" in err


def test_batched_predictions_equal_one_by_one(lora_run, sst2_rows):
    classifier = TextClassifier.from_run(lora_run, batch_size=16)
    texts = [s for s, _ in sst2_rows[:40]]
    batched = classifier.probabilities(texts)
    single = np.concatenate([classifier.probabilities([t]) for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-4)


def test_head_method_trains_only_the_pooler_and_classifier(tmp_path):
    out = tmp_path / "head"
    assert run_cli("train", "sst2_head", "dataset.max_train_samples=200", "dataset.max_eval_samples=100",
                   "training.num_train_epochs=1", f"output_dir={out}") == 0
    params = json.loads((out / "metrics.json").read_text())["parameters"]
    assert params["trainable"] == (384 * 384 + 384) + (384 * 2 + 2)  # BERT's pooler and the classifier


def test_logs_land_as_tensorboard_events_and_a_csv_table(tmp_path):
    import csv

    out = tmp_path / "logged"
    assert run_cli("train", "sst2_head", "dataset.max_train_samples=200", "dataset.max_eval_samples=100",
                   "training.num_train_epochs=1", "training.report_to=[tensorboard]", f"output_dir={out}") == 0
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert any(r.get("eval_accuracy") for r in rows) and any(r.get("loss") for r in rows)


@pytest.mark.slow  # kept out of CI for time: a full extra training run
def test_a_runs_config_file_trains_the_same_run_again(tmp_path):
    """run_config.yaml holds every resolved setting (the method's learning rate, the schedule, the
    precision chosen for this hardware), so training from it repeats the run exactly."""
    first, again = tmp_path / "first", tmp_path / "again"
    assert run_cli("train", "sst2_lora", "dataset.max_train_samples=200", "dataset.max_eval_samples=100",
                   "training.max_steps=6", f"output_dir={first}") == 0
    recorded = yaml.safe_load((first / "run_config.yaml").read_text())
    assert recorded["training"]["warmup_steps"] == 0.1 and recorded["training"]["weight_decay"] == 0.01
    assert recorded["training"]["metric_for_best_model"] == "accuracy" and "bf16" in recorded["training"]
    assert run_cli("train", first / "run_config.yaml", f"output_dir={again}") == 0
    a, b = (json.loads((run / "metrics.json").read_text()) for run in (first, again))
    assert a["validation"] == b["validation"] and a["train"]["loss"] == b["train"]["loss"]
