"""The command line: one-line errors with no traceback, and no run ever lost."""
from __future__ import annotations

import subprocess
import sys

from conftest import run_cli, write_tsv


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], capture_output=True, text=True)


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0]


def test_unknown_key_on_the_command_line():
    assert_one_line_error(cli("train", "sst2_lora", "trainig.learning_rate=1"),
                          "trainig.learning_rate", "did you mean training.learning_rate")


def test_missing_train_file(tmp_path):
    assert_one_line_error(cli("train", "sst2_lora", "dataset.name=null", f"dataset.train_file={tmp_path}/x.csv",
                              f"output_dir={tmp_path}/run"), "does not exist")


def test_recipes_lists_recipes_and_configs():
    out = cli("recipes").stdout
    assert "sequence_classification" in out and "sst2_lora" in out and "sst2_full" in out


def test_output_dir_holding_a_run_is_never_replaced_silently(lora_run, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in lora_run.iterdir()}
    assert run_cli("train", "sst2_lora", f"output_dir={lora_run}") == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--overwrite" in err
    assert {p.name: p.stat().st_mtime_ns for p in lora_run.iterdir()} == before


def test_output_dir_with_foreign_files_is_refused_even_with_overwrite(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert run_cli("train", "sst2_lora", f"output_dir={tmp_path}", "--overwrite") == 2
    assert "not a pipeline run" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_local_files_switch_and_empty_texts(tmp_path, sst2_rows, capsys):
    """A named-dataset config trained on local files, with empty texts among the rows."""
    rows = sst2_rows[:300] + [("  ", "1")]
    train = write_tsv(tmp_path / "train.tsv", rows)
    dev = write_tsv(tmp_path / "dev.tsv", sst2_rows[300:400])
    out = tmp_path / "run"
    assert run_cli("train", "sst2_lora", "dataset.name=null", f"dataset.train_file={train}",
                   f"dataset.validation_file={dev}", "training.num_train_epochs=1", "training.max_steps=5",
                   f"output_dir={out}") == 0
    assert "dropped 1 empty text(s) from train" in capsys.readouterr().out
    assert (out / "adapter_model.safetensors").exists()


def test_predict_errors(lora_run, tmp_path):
    assert_one_line_error(cli("predict", lora_run), "no texts")
    assert_one_line_error(cli("predict", lora_run, "--text", " "), "text 1 is empty")
    assert_one_line_error(cli("predict", tmp_path, "--text", "fine"), "not a run folder")


def test_training_prints_time_rate_and_time_left_and_no_warning_from_unused_components(tmp_path):
    result = cli("train", "sst2_lora", "dataset.max_train_samples=64", "dataset.max_eval_samples=32",
                 "training.max_steps=4", "training.logging_steps=2", f"output_dir={tmp_path}/run")
    assert result.returncode == 0, result.stderr
    steps = [line for line in result.stdout.splitlines() if line.startswith("train | step")]
    # in a log (not a terminal) the logging steps' lines alone, each with the time so far, rate and time left
    assert [line.split(" | ")[1] for line in steps] == ["step 2/4", "step 4/4"]
    assert all(" elapsed | " in line and " samples/s | " in line and line.endswith(" left") for line in steps)
    assert "\r" not in result.stdout and "\x1b" not in result.stdout
    # nothing from DeepSpeed (installed here, unused by this run), nor any other warning
    assert result.stderr.strip() == "", result.stderr
