"""Hub push against a local stand-in for the Hub API (HF_ENDPOINT on 127.0.0.1): what arrives,
the model card, and that the token never shows up in output, logs or files."""
from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from conftest import run_cli

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


def test_push_uploads_adapter_tokenizer_labels_and_card(hub, lora_run, capsys, tmp_path):
    assert run_cli("push", lora_run, "--repo-id", "someone/sst2-minilm-lora", "--private") == 0
    out = capsys.readouterr()
    files = FakeHub.received
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "labels.json",
                 "metrics.json", "README.md", "confusion_matrix.png"):
        assert name in files, name
    assert files["adapter_model.safetensors"] == (lora_run / "adapter_model.safetensors").read_bytes()
    assert FakeHub.created[0]["visibility"] == "private"
    adapter_config = json.loads(files["adapter_config.json"])
    assert adapter_config["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
    card = files["README.md"].decode()
    accuracy = json.loads((lora_run / "metrics.json").read_text())["validation"]["accuracy"]
    assert "base_model: sentence-transformers/all-MiniLM-L6-v2" in card
    assert f"{accuracy:.4f}" in card and "AutoPeftModelForSequenceClassification" in card
    assert "method: lora" in card and "confusion_matrix.png" in card
    front = yaml.safe_load(card.split("---")[1])  # structured results the Hub shows on the model page
    results = front["model-index"][0]["results"]
    assert {"type": "accuracy", "value": accuracy} in [m for r in results for m in r["metrics"]]
    assert results[0]["dataset"]["type"] == "glue" and results[0]["task"]["type"] == "text-classification"
    assert f"Bearer {TOKEN}" in FakeHub.auth  # the token went where it belongs...
    assert TOKEN not in out.out + out.err  # ...and nowhere else
    assert all(TOKEN.encode() not in data for data in files.values())
    assert all(TOKEN.encode() not in p.read_bytes() for p in lora_run.rglob("*") if p.is_file())


def test_push_merged_uploads_a_plain_model(hub, lora_run):
    assert run_cli("push", lora_run, "--repo-id", "someone/sst2-merged", "--merged") == 0
    assert "model.safetensors" in FakeHub.received and "adapter_model.safetensors" not in FakeHub.received
    assert json.loads(FakeHub.received["config.json"])["id2label"] == {"0": "negative", "1": "positive"}


def test_dry_run_lists_files_and_sends_nothing(hub, lora_run, capsys):
    assert run_cli("push", lora_run, "--repo-id", "someone/x", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "would upload adapter_model.safetensors" in out and "would upload README.md" in out
    assert FakeHub.received == {} and FakeHub.created == []


def test_bad_repo_id_and_refusal(hub, lora_run, capsys, monkeypatch):
    assert run_cli("push", lora_run, "--repo-id", "no-namespace") == 2
    assert "USER/NAME" in capsys.readouterr().err
    monkeypatch.setattr(FakeHub, "do_POST", lambda self: self._reply(401, {"error": "bad token"}))
    assert run_cli("push", lora_run, "--repo-id", "someone/x") == 2
    err = capsys.readouterr().err
    assert "HTTP 401" in err and "HF_TOKEN" in err and TOKEN not in err
