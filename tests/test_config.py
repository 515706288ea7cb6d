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
