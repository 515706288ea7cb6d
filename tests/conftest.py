"""Shared fixtures: real SST-2 rows from the data root, and real runs trained once per session."""
from __future__ import annotations

import base64
import contextlib
import csv
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the machines have no Hub; fail fast, never hang
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from pipeline.cli import main  # noqa: E402
from pipeline.log import use_terminal  # noqa: E402

use_terminal()  # the library's progress and results on stdout, as the command line shows them
from pipeline.data.catalogue import data_root  # noqa: E402


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


def http(url: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    """A request to a served app: (status, JSON body), 4xx and 5xx included."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url + path, data=body, method="POST" if body is not None else "GET",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="session")
def lora_run(tmp_path_factory) -> Path:
    """A LoRA run on 2,000 real SST-2 rows (2 epochs), evaluated on the 872-row dev set; trained through
    the Python API (`pipeline train` calls the same function)."""
    import pipeline

    out = tmp_path_factory.mktemp("runs") / "sst2_lora"
    run = pipeline.train("sst2_lora", {"dataset.max_train_samples": 2000, "training.num_train_epochs": 2,
                                       "training.learning_rate": 1e-3, "output_dir": str(out)})
    assert run.path == out
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


QA_SHORT = ["dataset.max_length=128", "qa.doc_stride=48"]  # windows short enough for a CPU test


@pytest.fixture(scope="session")
def qa_run(tmp_path_factory) -> Path:
    """A LoRA question-answering run: 300 real SQuAD questions (2 epochs, 128-token windows), 100 scored.
    Dropout off (the model's and LoRA's): on a CPU its steps run 1.6x faster, and it learns more."""
    out = tmp_path_factory.mktemp("qa") / "squad_lora"
    assert run_cli("train", "squad_lora", "dataset.max_train_samples=300", "dataset.max_eval_samples=100",
                   "training.num_train_epochs=2", "training.dropout=0", "lora.dropout=0", *QA_SHORT,
                   f"output_dir={out}") == 0
    return out


def short_alpaca_rows() -> list[dict[str, str]]:
    """Real alpaca_demo rows whose replies are short (so a reply can end within a 48-token check)."""
    from pipeline.config.schema import ChatConfig, DatasetConfig
    from pipeline.data.conversations import load_conversations

    alpaca = load_conversations(DatasetConfig(name="alpaca_demo"), ChatConfig(), seed=42)
    short = [c for c in alpaca["train"] + alpaca["validation"] if len(c[1]["content"]) < 120]
    return [{"instruction": c[0]["content"], "output": c[1]["content"]} for c in short]


@pytest.fixture(scope="session")
def sft_run(tmp_path_factory) -> Path:
    """The packaged SmolLM2 with LoRA, 12 steps on 48 real short alpaca rows; 8 held out."""
    folder = tmp_path_factory.mktemp("sft")
    rows = short_alpaca_rows()
    train, held = folder / "train.jsonl", folder / "held.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows[:48]))
    held.write_text("".join(json.dumps(r) + "\n" for r in rows[48:56]))
    out = folder / "alpaca_smollm2_lora"
    assert run_cli("train", "alpaca_smollm2_lora", "dataset.name=null", f"dataset.train_file={train}",
                   f"dataset.validation_file={held}", "dataset.max_length=256", "training.max_steps=12",
                   "training.per_device_train_batch_size=4", "chat.generation_samples=8", "chat.max_new_tokens=48",
                   f"output_dir={out}") == 0
    return out


# --------------------------------------------------------------------------------------------
# A local stand-in for the Hub API (HF_ENDPOINT on 127.0.0.1), for pushes

TOKEN = "hf_TestTokenThatMustNeverLeak1234567890"


class FakeHub(BaseHTTPRequestHandler):
    """Answers the calls an upload makes: create the repo, validate the card's YAML, ask upload
    modes, commit (files inline, base64)."""
    received: dict[str, bytes] = {}
    created: list[dict] = []
    auth: set[str] = set()

    def log_message(self, *args):  # keep test output clean
        pass

    def _reply(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # telemetry and the like: nothing here
        return self._reply(404, {"error": "not served"})

    def do_POST(self):
        FakeHub.auth.add(self.headers.get("authorization", ""))
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path == "/api/repos/create":
            request = json.loads(body)
            FakeHub.created.append(request)
            host, port = self.server.server_address[:2]
            return self._reply(200, {"url": f"http://{host}:{port}/{request.get('organization')}/{request['name']}"})
        if self.path == "/api/validate-yaml":  # the model card's metadata block
            return self._reply(200, {"errors": [], "warnings": []})
        if "/preupload/" in self.path:
            files = json.loads(body)["files"]
            return self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                               for f in files]})
        if "/commit/" in self.path:
            for line in body.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    FakeHub.received[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            host, port = self.server.server_address[:2]
            repo = self.path.split("/api/models/")[1].split("/commit/")[0]
            return self._reply(200, {"commitUrl": f"http://{host}:{port}/{repo}/commit/{'1' * 40}",
                                     "commitOid": "1" * 40})
        return self._reply(404, {"error": f"not served: {self.path}"})


@pytest.fixture()
def hub(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    FakeHub.received, FakeHub.created, FakeHub.auth = {}, [], set()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    yield endpoint
    server.shutdown()
