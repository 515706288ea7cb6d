"""Trust: no secret ever lands in a run folder, run folders are data (no code runs from them without the
caller's flag), --overwrite removes only the pipeline's files, serving needs its key and sheds load,
and integer-valued float labels are the integers they spell."""
from __future__ import annotations

import asyncio
import json
import shutil
import socket
import threading
import time
import types
import urllib.error
import urllib.request

import numpy as np
import pytest
import yaml
from conftest import run_cli, write_tsv

SENTINEL = "hf_SentinelTokenThatMustNeverLandOnDisk0123456789"
SHORT = ["dataset.max_train_samples=64", "dataset.max_eval_samples=32", "training.max_steps=4",
         "training.save_strategy=steps", "training.save_steps=2", "training.eval_strategy=no"]


@pytest.mark.parametrize("override", [f"training.hub_token={SENTINEL}", f"training.push_to_hub_token={SENTINEL}",
                                      f"hub.api_password={SENTINEL}", f"hub.repo_id={SENTINEL}"])
def test_a_credential_in_the_config_is_refused_without_echoing_it(override, tmp_path, capsys):
    assert run_cli("train", "sst2_lora", override, f"output_dir={tmp_path / 'run'}") == 2
    err = capsys.readouterr().err
    assert "hf auth login" in err and SENTINEL not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_credential_in_a_config_file_is_refused(tmp_path, capsys):
    config = yaml.safe_load(open("recipes/configs/sst2_lora.yaml"))
    config["training"]["hub_token"] = SENTINEL
    path = tmp_path / "with_token.yaml"
    path.write_text(yaml.safe_dump(config))
    assert run_cli("train", path, f"output_dir={tmp_path / 'run'}") == 2
    assert "training.hub_token would store a credential" in capsys.readouterr().err


def test_the_token_in_the_environment_lands_nowhere_in_the_run_or_the_push(tmp_path, monkeypatch):
    from pipeline.registry import get_recipe
    from pipeline.runs.hub import stage

    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", SENTINEL)
    run = tmp_path / "run"
    assert run_cli("train", "sst2_lora", *SHORT, "training.report_to=[tensorboard]", f"output_dir={run}") == 0
    assert list(run.glob("checkpoints/*/training_args.bin"))  # the pickled arguments are among the files searched
    staged = tmp_path / "staged"
    staged.mkdir()
    stage(run, "someone/model", get_recipe("sequence_classification"), merged=False, into=staged)
    files = [p for folder in (run, staged) for p in folder.rglob("*") if p.is_file()]
    assert len(files) > 15
    for path in files:
        assert SENTINEL.encode() not in path.read_bytes(), path


def test_the_model_card_holds_no_absolute_path(lora_run, tmp_path):
    from pipeline.registry import get_recipe
    from pipeline.runs.model_card import model_card

    train = write_tsv(tmp_path / "train.tsv", [("a fine film", "1"), ("a dull film", "0")] * 20)
    run = tmp_path / "abs"
    shutil.copytree(lora_run, run)
    config = yaml.safe_load((run / "run_config.yaml").read_text())
    config["dataset"].update(name=None, train_file=str(train))
    config["output_dir"] = str(run)
    (run / "run_config.yaml").write_text(yaml.safe_dump(config))
    card = model_card(run, get_recipe("sequence_classification"))
    assert str(tmp_path) not in card and "train.tsv" in card


def remote_code_model(folder, marker):
    """A model folder whose Python file, if ever imported, writes ``marker``."""
    folder.mkdir()
    (folder / "marker_model.py").write_text(f"open({str(marker)!r}, 'w').write('code ran')\n"
                                            "from transformers import BertConfig\n"
                                            "class MarkerConfig(BertConfig):\n    model_type = 'marker'\n")
    (folder / "config.json").write_text(json.dumps({
        "model_type": "marker", "auto_map": {"AutoConfig": "marker_model.MarkerConfig",
                                             "AutoModelForSequenceClassification": "marker_model.MarkerModel"}}))
    return folder


def test_a_run_folder_asking_for_remote_code_runs_none_without_the_flag(lora_run, tmp_path, capsys):
    marker = tmp_path / "marker.txt"
    run = tmp_path / "run"
    shutil.copytree(lora_run, run)
    config = yaml.safe_load((run / "run_config.yaml").read_text())
    config.update(model=str(remote_code_model(tmp_path / "remote", marker)), trust_remote_code=True, allow_pickle=True)
    (run / "run_config.yaml").write_text(yaml.safe_dump(config))
    for command in (["predict", run, "--text", "fine"], ["evaluate", run], ["export", run, tmp_path / "out", "--merge"],
                    ["serve", run, "--port", "0"], ["push", run, "--repo-id", "a/b", "--merged", "--dry-run"]):
        assert run_cli(*command) == 2, command
        err = capsys.readouterr().err
        assert "--trust-remote-code" in err and len(err.strip().splitlines()) == 1, err
    assert not marker.exists()


def test_overwrite_removes_the_previous_run_and_keeps_the_users_files(tmp_path):
    run = tmp_path / "run"
    assert run_cli("train", "sst2_head", *SHORT, f"output_dir={run}") == 0
    (run / "notes.txt").write_text("my notes")
    (run / "plots").mkdir()
    (run / "plots" / "mine.png").write_bytes(b"png")
    (run / "checkpoints" / "stray.txt").write_text("inside a folder the pipeline owns")
    assert run_cli("train", "sst2_lora", *SHORT, f"output_dir={run}", "--overwrite") == 0
    assert (run / "notes.txt").read_text() == "my notes" and (run / "plots" / "mine.png").read_bytes() == b"png"
    assert (run / "adapter_model.safetensors").exists() and not (run / "model.safetensors").exists()
    assert not (run / "checkpoints" / "stray.txt").exists()
    assert "notes.txt" not in json.loads((run / ".pipeline-files.json").read_text())["files"]


def test_integer_valued_float_labels_are_the_integers(tmp_path, sst2_rows):
    from pipeline.config.schema import DatasetConfig
    from pipeline.data.tasks import load_text_classification

    train = write_tsv(tmp_path / "train.tsv", [(s, f"{int(l)}.0") for s, l in sst2_rows[:200]])
    dev = write_tsv(tmp_path / "dev.tsv", sst2_rows[200:260])
    data = load_text_classification(DatasetConfig(train_file=str(train), validation_file=str(dev),
                                                  text_column="sentence"), seed=0)
    assert data.label_names == ["0", "1"]
    assert data.splits["validation"]["label"] == [int(l) for _, l in sst2_rows[200:260]]
    bad = write_tsv(tmp_path / "bad.tsv", [(sst2_rows[0][0], "0.5")] + sst2_rows[1:40])
    with pytest.raises(Exception, match="mixes label types"):
        load_text_classification(DatasetConfig(train_file=str(bad), text_column="sentence"), seed=0)


# --------------------------------------------------------------------------------------------
# Serving


class SlowEngine:
    """A stand-in engine with the real interface whose batches take ``delay`` seconds."""
    label_names = ["negative", "positive"]
    adapters: list[str] = []
    runner = types.SimpleNamespace(backend="torch", precision="fp32")  # what /health and the log report

    def __init__(self, delay: float):
        self.delay = delay

    def probabilities(self, texts, adapter=None):
        time.sleep(self.delay)
        return np.full((len(texts), 2), 0.5, dtype=np.float32)

    def format(self, probs, top_k=None):
        return [{"label": "positive", "score": float(p[1])} for p in probs]


def start(app):
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def request(url, path, payload=None, key=None):
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(url + path, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_an_api_key_is_required_when_set(lora_run):
    from pipeline.inference.engines import TextClassifier
    from pipeline.inference.serve import create_app

    server, url = start(create_app(TextClassifier.from_run(lora_run), api_key="s3cret"))
    try:
        body = {"texts": ["A true cinematic achievement!"]}
        assert request(url, "/predict", body)[0] == 401
        status, answer = request(url, "/predict", body, key="wrong")
        assert status == 401 and "Authorization: Bearer" in answer["error"]
        assert request(url, "/adapters")[0] == 401
        assert request(url, "/health")[0] == 200  # liveness probes need no key
        status, answer = request(url, "/predict", body, key="s3cret")
        assert status == 200 and answer["predictions"][0]["label"] == "positive"
    finally:
        server.should_exit = True


def test_a_full_queue_answers_429_and_the_server_recovers():
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.inference.serve import create_app

    server, url = start(create_app(SlowEngine(delay=0.5), max_queue=4))
    try:
        assert request(url, "/predict", {"texts": ["x"] * 5})[0] == 429  # more than the queue holds
        with ThreadPoolExecutor(4) as pool:
            first = pool.submit(request, url, "/predict", {"texts": ["x"] * 4})
            time.sleep(0.2)  # the first request's 4 texts are waiting on the slow batch
            second = pool.submit(request, url, "/predict", {"texts": ["y"]})
            status, answer = second.result()
            assert status == 429 and "busy" in answer["error"]
            assert first.result()[0] == 200
        assert request(url, "/predict", {"texts": ["z"]})[0] == 200  # room again
    finally:
        server.should_exit = True


def test_a_cancelled_request_never_stops_the_batch_worker():
    from pipeline.inference.serve import MicroBatcher

    async def scenario():
        batcher = MicroBatcher(SlowEngine(delay=0.3).probabilities)
        abandoned = asyncio.create_task(batcher.submit(["gone"], None))
        await asyncio.sleep(0.1)  # its batch is running
        abandoned.cancel()  # the client went away
        answer = await asyncio.wait_for(batcher.submit(["next"], None), timeout=10)
        return answer.shape, batcher.waiting

    assert asyncio.run(scenario()) == ((1, 2), 0)


def test_binding_beyond_loopback_without_a_key_warns(monkeypatch, capsys):
    import uvicorn

    from pipeline.inference.serve import serve

    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    serve(SlowEngine(0), "0.0.0.0", 8000)
    assert "without an API key" in capsys.readouterr().err
    serve(SlowEngine(0), "127.0.0.1", 8000)
    serve(SlowEngine(0), "0.0.0.0", 8000, api_key="k")
    assert "without an API key" not in capsys.readouterr().err
