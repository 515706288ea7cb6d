"""Hub push against a local stand-in for the Hub API (HF_ENDPOINT on 127.0.0.1): what arrives,
the model card, and that the token never shows up in output, logs or files."""
from __future__ import annotations

import json

import yaml
from conftest import TOKEN, FakeHub, run_cli


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
