"""Devices: --device on the commands that load a run, and the top-level accelerate config, which must
work unchanged on a CPU machine (and, untested here, a GPU one)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from pipeline.runs.loading import resolve_device, resolve_precision

ROOT = Path(__file__).resolve().parents[1]
NO_GPU = not torch.cuda.is_available()


def test_auto_takes_the_cpu_here_and_bf16_only_on_a_gpu():
    if NO_GPU and not torch.backends.mps.is_available():
        assert resolve_device("auto") == torch.device("cpu")
    assert resolve_precision(None, torch.device("cpu")) == "fp32"
    assert resolve_precision("int8", torch.device("cpu")) == "int8"


@pytest.mark.skipif(not NO_GPU, reason="checks the refusal on a machine without a GPU")
@pytest.mark.parametrize("command", [["predict", "--text", "A fine film."], ["evaluate"]])
def test_a_device_that_is_not_there_is_a_one_line_error(command, lora_run, capsys):
    for device, words in (("cuda", "no CUDA GPU"), ("cuda:1", "no CUDA GPU"), ("tpu", "is not a device")):
        assert run_cli(command[0], lora_run, *command[1:], "--device", device) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err
    assert run_cli("predict", lora_run, "--text", "A fine film.", "--device", "cpu", "--json") == 0
    assert json.loads(capsys.readouterr().out)["label"] in ("negative", "positive")


def test_the_top_level_accelerate_config_trains_on_this_machine(tmp_path):
    out = tmp_path / "launched"
    result = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "accelerate_config.yaml"),
         "-m", "pipeline", "train", "sst2_lora", "dataset.max_train_samples=64", "dataset.max_eval_samples=32",
         "training.max_steps=3", "training.eval_strategy=no", "training.save_strategy=no", f"output_dir={out}"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((out / "metrics.json").read_text())["train"]["steps"] == 3
