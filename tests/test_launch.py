"""Launching: two processes with the DDP preset as shipped (gloo on a CPU), and resuming after SIGKILL."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli

from pipeline.runs.run_folder import complete_checkpoints

PRESETS = Path(__file__).resolve().parents[1] / "launch"
QUICK = ["dataset.max_train_samples=400", "dataset.max_eval_samples=200", "training.num_train_epochs=1",
         "training.learning_rate=1e-3"]


def accuracy(run: Path) -> float:
    return json.loads((run / "metrics.json").read_text())["validation"]["accuracy"]


def test_two_process_ddp_run_matches_a_single_process_run(tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    assert run_cli("train", "sst2_lora", *QUICK, "training.per_device_train_batch_size=16",
                   f"output_dir={single}") == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(PRESETS / "multi_cpu.yaml"),
         "-m", "pipeline", "train", "sst2_lora", *QUICK, "training.per_device_train_batch_size=8",
         f"output_dir={ddp}"], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("run folder:") == 1  # only the main process reports
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp", "single"]
    assert (ddp / "adapter_model.safetensors").exists()
    log = [json.loads(l) for l in (ddp / "metrics.jsonl").read_text().splitlines()]
    assert len([r for r in log if "eval_accuracy" in r]) == 1  # one writer, one eval record
    # The batch-mean classification loss is not scaled by the process count (it would start near 2 ln 2).
    assert [r["loss"] for r in log if "loss" in r][0] < 0.9
    assert abs(accuracy(ddp) - accuracy(single)) < 0.04  # same global batch of 16


def test_gradient_accumulation_averages_the_classification_loss(tmp_path):
    run = tmp_path / "accumulated"
    assert run_cli("train", "sst2_lora", "dataset.max_train_samples=64", "dataset.max_eval_samples=32",
                   "training.max_steps=2", "training.per_device_train_batch_size=8",
                   "training.gradient_accumulation_steps=2", "training.logging_steps=1", f"output_dir={run}") == 0
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    # A fresh binary head starts near ln 2 = 0.69; summed over the two micro-batches it would read 1.39.
    assert 0.5 < losses[0] < 0.9


def resumable(method: str, out: Path) -> list[str]:
    return ["train", f"sst2_{method}", "dataset.max_train_samples=320", "dataset.max_eval_samples=120",
            "training.max_steps=20", "training.eval_strategy=steps", "training.eval_steps=10",
            "training.save_strategy=steps", "training.save_steps=10", "training.save_total_limit=5",
            "training.learning_rate=5e-4" if method == "lora" else "training.learning_rate=5e-5",
            f"output_dir={out}"]


@pytest.mark.parametrize("method", [pytest.param("full", marks=pytest.mark.slow), "lora"])  # full: slow, for time
def test_a_run_killed_after_a_checkpoint_resumes_to_the_same_metrics(tmp_path, method):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert run_cli(*resumable(method, whole)) == 0

    process = subprocess.Popen([sys.executable, "-m", "pipeline", *resumable(method, killed)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not complete_checkpoints(killed) and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert complete_checkpoints(killed), "the run ended before its first checkpoint"
    assert not (killed / "metrics.json").exists() or "validation" not in json.loads((killed / "metrics.json").read_text())

    assert run_cli(*resumable(method, killed), "--resume") == 0
    whole_metrics = json.loads((whole / "metrics.json").read_text())
    killed_metrics = json.loads((killed / "metrics.json").read_text())
    assert killed_metrics["validation"]["accuracy"] == whole_metrics["validation"]["accuracy"]
    assert killed_metrics["validation"]["confusion_matrix"] == whole_metrics["validation"]["confusion_matrix"]
    assert killed_metrics["train"]["steps"] == whole_metrics["train"]["steps"] == 20


def test_resume_without_a_run_says_so(tmp_path, capsys):
    assert run_cli(*resumable("lora", tmp_path / "none"), "--resume") == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_a_half_written_checkpoint_is_not_taken_for_a_complete_one(tmp_path):
    folder = tmp_path / "checkpoints" / "checkpoint-20"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"")
    (folder / "optimizer.pt").write_bytes(b"")  # killed before scheduler.pt and trainer_state.json
    assert complete_checkpoints(tmp_path) == []


def test_ctrl_c_stops_cleanly_and_the_run_stays_resumable(tmp_path):
    out = tmp_path / "interrupted"
    # A shell's background jobs start with SIGINT ignored; give the run the default handling back.
    process = subprocess.Popen([sys.executable, "-m", "pipeline", *resumable("lora", out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while not complete_checkpoints(out) and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert run_cli(*resumable("lora", out), "--resume") == 0
    assert json.loads((out / "metrics.json").read_text())["train"]["steps"] == 20
