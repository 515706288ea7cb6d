"""Config loading, overrides and validation: every mistake is caught before a model loads."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config.loader import apply_overrides, load_config, load_yaml, validate
from pipeline.errors import PipelineError
from recipes import CONFIG_DIR

LORA = CONFIG_DIR / "sst2_lora.yaml"


def error(path: Path, *overrides: str) -> str:
    with pytest.raises(PipelineError) as info:
        load_config(path, list(overrides))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_every_shipped_config_validates():
    for path in CONFIG_DIR.glob("*.yaml"):
        config = load_config(path)
        assert config.output_dir.startswith("runs/")


def test_overrides_are_typed_from_the_schema():
    config = load_config(LORA, ["training.learning_rate=3e-5", "dataset.max_train_samples=2000",
                                "lora.target_modules=[query,key,value]", "training.bf16=true", "lora.r=16"])
    assert config.training["learning_rate"] == 3e-5 and isinstance(config.training["learning_rate"], float)
    assert config.dataset.max_train_samples == 2000
    assert config.lora.target_modules == ["query", "key", "value"] and config.lora.r == 16
    assert config.training["bf16"] is True


def test_named_dataset_switches_to_local_files_on_the_command_line():
    config = load_config(LORA, ["dataset.name=null", "dataset.train_file=a.csv", "dataset.validation_file=b.csv"])
    assert config.dataset.name is None and config.dataset.train_file == "a.csv"


def test_unknown_key_names_the_closest_valid_key():
    message = error(LORA, "trainig.learning_rate=1")
    assert "trainig.learning_rate" in message and "did you mean training" in message
    assert "did you mean training.learning_rate" in error(LORA, "training.learnig_rate=1")
    assert "did you mean dataset.max_length" in error(LORA, "dataset.max_lenght=64")


def test_wrong_type_names_key_expected_type_and_value():
    message = error(LORA, "training.num_train_epochs=three")
    assert "training.num_train_epochs" in message and "number" in message and "'three'" in message
    message = error(LORA, "dataset.max_length=long")
    assert "dataset.max_length expects an integer" in message and "'long'" in message
    assert "lora.dropout expects a number" in error(LORA, "lora.dropout=[1]")


def test_missing_required_key_says_so(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("recipe: sequence_classification\ndataset: {name: sst2}\n")
    assert "missing the required key output_dir" in error(path)


@pytest.mark.parametrize("override, words", [
    ("training.per_device_train_batch_size=0", "must be positive"),
    ("training.per_device_train_batch_size=-4", "must be positive"),
    ("training.learning_rate=5", "learning_rate must be in (0, 1]"),
    ("method=qlora", "method 'qlora' is unknown"),
    ("recipe=sequence_clasification", "did you mean sequence_classification"),
    ("dataset.train_file=x.csv", "dataset.name and dataset.train_file are both set"),
    ("dataset.validation_split=1.5", "validation_split must be between 0 and 1"),
    ("training.output_dir=elsewhere", "use output_dir (top level)"),
])
def test_out_of_range_and_conflicting_values(override, words):
    assert words in error(LORA, override)


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("recipe: sequence_classification\ndataset:\n  name: sst2\n   text_column: [oops\n")
    message = error(path)
    assert "line 4" in message and "YAML syntax error" in message


def test_empty_and_missing_config_files(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert "is empty" in error(empty)
    assert "does not exist" in error(tmp_path / "nope.yaml")


def test_malformed_override_is_rejected():
    with pytest.raises(PipelineError, match="dotted.key=value"):
        apply_overrides({}, ["training.learning_rate"])


def test_resolved_config_round_trips(tmp_path):
    from pipeline.config.loader import save_config

    config = load_config(LORA, ["training.learning_rate=1e-3"])
    save_config(config, tmp_path / "run.yaml")
    assert validate(load_yaml(tmp_path / "run.yaml")) == config


def test_yaml_no_stays_the_word_no_for_string_settings():
    config = load_config(LORA, ["training.eval_strategy=no", "training.save_strategy=no"])
    assert config.training["eval_strategy"] == "no" and config.training["save_strategy"] == "no"


# --------------------------------------------------------------------------------------------
# A learning rate follows its method

def test_a_method_changed_by_override_takes_its_own_learning_rate(capsys):
    import pipeline

    capsys.readouterr()
    config = pipeline.load_config("sst2_lora", ["method=full"])  # sst2_lora.yaml tunes 1.2e-3 for LoRA
    assert "learning_rate" not in config.training  # the run fills in full's default, 2e-5
    assert config.training["learning_rate_rule"] == "method default (the config's 0.0012 was set for method lora)"
    assert config.training["num_train_epochs"] == 2  # a Trainer method's epochs keep their meaning
    warning = capsys.readouterr().err.strip()
    assert warning == ("warning: method full by override: training.learning_rate was set for method lora, so the run "
                       "takes method full's defaults; set it as an override to choose")
    # the same change from Python, and a rate given with the method is the user's
    assert "learning_rate" not in pipeline.load_config("sst2_lora", {"method": "dora"}).training
    chosen = pipeline.load_config("sst2_lora", ["method=full", "training.learning_rate=3e-5"]).training
    assert chosen["learning_rate"] == 3e-5 and "learning_rate_rule" not in chosen
    assert pipeline.load_config("sst2_lora").training["learning_rate"] == 1.2e-3  # no method change: untouched


def test_a_switch_to_setfit_leaves_none_of_the_trainer_settings_behind():
    import pipeline

    training = pipeline.load_config("sst2_lora", ["method=setfit", "training.per_device_train_batch_size=32"]).training
    # epochs over sentence pairs are SetFit's own: its 1, not the LoRA config's 3; an override stays
    assert training == {"per_device_train_batch_size": 32,
                        "learning_rate_rule": "method default (the config's 0.0012 was set for method lora)"}


def test_the_rule_is_recorded_and_a_rate_far_from_the_method_is_reported(tmp_path, capsys):
    import yaml
    from conftest import run_cli

    short = ["dataset.max_train_samples=64", "dataset.max_eval_samples=32", "training.max_steps=2"]
    assert run_cli("train", "sst2_lora", "method=full", *short, f"output_dir={tmp_path / 'full'}") == 0
    training = yaml.safe_load((tmp_path / "full" / "run_config.yaml").read_text())["training"]
    assert training["learning_rate"] == 2e-5 and training["learning_rate_rule"].startswith("method default")
    capsys.readouterr()
    assert run_cli("train", "sst2_full", "training.learning_rate=1e-3", *short, f"output_dir={tmp_path / 'high'}") == 0
    assert ("training.learning_rate 0.001 is far from method full's usual range (2e-06 to 0.0002, default 2e-05)"
            in capsys.readouterr().err)
    training = yaml.safe_load((tmp_path / "high" / "run_config.yaml").read_text())["training"]
    assert training["learning_rate"] == 1e-3 and training["learning_rate_rule"] == "set in the config"


def test_a_value_that_contains_itself_is_refused_in_one_line(tmp_path):
    # found by the 2,000-case property run: a YAML alias inside its own anchor recursed until Python gave up
    assert "contains itself" in error(LORA, "lora.target_modules=&a [*a]")
    path = tmp_path / "config.yaml"
    lines = [("lora: {target_modules: &a [*a]}" if line.startswith("lora:") else line)
             for line in LORA.read_text().splitlines()]
    path.write_text("\n".join(lines) + "\n")
    assert "contains itself" in error(path)


@pytest.mark.parametrize("name, overrides, expected", [
    ("alpaca_smollm2_lora", [], 8),  # a decoder's logits span its vocabulary: evaluate at the training batch
    ("alpaca_smollm2_lora", ["training.per_device_train_batch_size=4"], 4),
    ("alpaca_smollm2_lora", ["training.per_device_eval_batch_size=2"], 2),  # the user's choice stands
    ("sst2_lora", [], 64),  # a classifier's logits are two numbers a text
])
def test_the_evaluation_batch_fits_the_models_outputs(name, overrides, expected):
    from pipeline.config.loader import resolve_config_path
    from pipeline.registry import get_recipe
    from pipeline.training.trainer import resolve_training

    config = load_config(resolve_config_path(name), overrides)
    resolve_training(config, get_recipe(config.recipe))
    assert config.training["per_device_eval_batch_size"] == expected


def test_a_launch_in_bf16_runs_bf16_and_says_so_where_the_cpu_emulates_it(monkeypatch, capsys):
    from pipeline.config.loader import resolve_config_path
    from pipeline.registry import get_recipe
    from pipeline.training.trainer import cpu_only, native_bf16, resolve_training

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # what `accelerate launch` with the FSDP preset sets
    config = load_config(resolve_config_path("sst2_lora"), [])
    resolve_training(config, get_recipe(config.recipe))
    assert config.training["bf16"] is True  # the launcher's choice stands
    emulated = cpu_only() and not native_bf16()
    assert ("add --mixed_precision no" in capsys.readouterr().err) == emulated
