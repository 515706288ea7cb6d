"""Shared fixtures: real SST-2 rows from the data root, and real runs trained once per session."""
from __future__ import annotations

import contextlib
import csv
import os
from pathlib import Path
from typing import Any, Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the machines have no Hub; fail fast, never hang
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from pipeline.cli import main  # noqa: E402
from pipeline.log import use_terminal  # noqa: E402

use_terminal()  # the library's progress and results on stdout, as the command line shows them
from pipeline.catalogue import data_root  # noqa: E402


@pytest.fixture(scope="session")
def sst2_rows() -> list[tuple[str, str]]:
    """The first 600 (sentence, label) rows of SST-2 train, as in the file."""
    root = data_root()
    assert root is not None, "the shared data root (../shared/data or PIPELINE_DATA_DIR) is required"
    with open(root / "sst2" / "train.tsv", encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        return [(s, l) for s, l, *_ in (next(reader) for _ in range(600))]


def write_tsv(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("sentence", "label")) -> Path:
    path.write_text("\n".join(["\t".join(header)] + ["\t".join(r) for r in rows]) + "\n", encoding="utf-8")
    return path


def run_cli(*args: str) -> int:
    return main([str(a) for a in args])


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """Run an HTTP app on a free loopback port in a thread, as `pipeline serve` would; yields its URL."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def lora_run(tmp_path_factory) -> Path:
    """A LoRA run on 2,000 real SST-2 rows (2 epochs), evaluated on the 872-row dev set."""
    out = tmp_path_factory.mktemp("runs") / "sst2_lora"
    assert run_cli("train", "sst2_lora", "dataset.max_train_samples=2000", "training.num_train_epochs=2",
                   "training.learning_rate=1e-3", f"output_dir={out}") == 0
    return out


@pytest.fixture(scope="session")
def full_run(tmp_path_factory) -> Path:
    """Full fine-tuning on 2,000 real SST-2 rows (1 epoch)."""
    out = tmp_path_factory.mktemp("runs") / "sst2_full"
    assert run_cli("train", "sst2_full", "dataset.max_train_samples=2000", "training.num_train_epochs=1",
                   f"output_dir={out}") == 0
    return out


@pytest.fixture(scope="session")
def rt_lora_run(tmp_path_factory) -> Path:
    """A second, short LoRA run on the same base (Rotten Tomatoes), for several adapters on one base."""
    out = tmp_path_factory.mktemp("runs") / "rt_lora"
    assert run_cli("train", "rotten_tomatoes_lora", "dataset.max_train_samples=400", "dataset.max_eval_samples=200",
                   "training.max_steps=25", "training.learning_rate=1e-3", f"output_dir={out}") == 0
    return out
