"""`pipeline tune`: a search with a few tiny trials writes its table and a best config that trains."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

pytest.importorskip("optuna", reason="the tune extra is not installed")

ROOT = Path(__file__).resolve().parents[1]
TINY = ["dataset.max_train_samples=64", "dataset.max_eval_samples=64", "training.per_device_train_batch_size=16"]


def config_with_space(tmp_path, space: dict) -> str:
    """sst2_lora as shipped, plus a tune section in YAML (its keys are dotted, so not overrides)."""
    config = yaml.safe_load((ROOT / "recipes" / "configs" / "sst2_lora.yaml").read_text())
    config["tune"] = {"space": space}
    path = tmp_path / "sst2_lora_tune.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_tune_writes_the_trials_and_a_best_config_that_train_accepts(tmp_path, capsys):
    out = tmp_path / "tune"
    config = config_with_space(tmp_path, {
        "training.num_train_epochs": {"low": 1, "high": 2, "integer": True},
        "training.learning_rate": {"low": 1e-4, "high": 3e-3, "log": True},
        "lora.r": {"choices": [4, 16]},
        "lora.target_modules": {"choices": [["query", "value"], ["query", "key", "value", "dense"]]}})
    assert run_cli("tune", config, *TINY, "--trials", "3", "--output", out) == 0
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [r["trial"] for r in rows] == ["0", "1", "2"]
    assert {r["state"] for r in rows} <= {"complete", "pruned"}
    assert all(r["lora.r"] in ("4", "16") and 1e-4 <= float(r["training.learning_rate"]) <= 3e-3 for r in rows)
    assert (out / "trials.png").stat().st_size > 0 and "| trial | state | accuracy |" in capsys.readouterr().out

    best = yaml.safe_load((out / "best_config.yaml").read_text())
    complete = [r for r in rows if r["state"] == "complete"]
    top = max(complete, key=lambda r: float(r["score"]))
    assert best["lora"]["r"] == int(top["lora.r"])
    assert best["lora"]["target_modules"] == top["lora.target_modules"].split(",")  # a list choice, by its items
    assert best["training"]["learning_rate"] == pytest.approx(float(top["training.learning_rate"]))
    assert best["dataset"]["max_train_samples"] == 64  # the command's overrides stay
    assert run_cli("train", out / "best_config.yaml", f"output_dir={tmp_path / 'run'}") == 0
    assert (tmp_path / "run" / "adapter_model.safetensors").exists()


def test_a_search_space_key_that_is_not_a_setting_is_refused_before_training(tmp_path, capsys):
    config = config_with_space(tmp_path, {"training.learnin_rate": {"low": 1e-4, "high": 1e-3}})
    assert run_cli("tune", config, *TINY, "--trials", "2", "--output", tmp_path / "t") == 2
    err = capsys.readouterr().err
    assert "tune.space.training.learnin_rate" in err and "learning_rate" in err


def test_tune_refuses_language_model_recipes(tmp_path, capsys):
    assert run_cli("tune", "tiny_shakespeare_mlm", "--trials", "2", "--output", tmp_path / "t") == 2
    assert "`pipeline tune` does not apply to masked_lm runs" in capsys.readouterr().err


def test_the_default_lora_space_offers_attention_or_every_linear_layer_of_the_architecture():
    from pipeline.planning.tune import default_space

    assert default_space("lora", "minilm")["lora.target_modules"].choices == [
        ["query", "value"], ["query", "key", "value", "dense"]]
    assert "lora.target_modules" not in default_space("full", "minilm")
