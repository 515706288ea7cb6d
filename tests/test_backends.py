"""ONNX Runtime and OpenVINO: each backend against torch fp32 on real SST-2 dev sentences, the
exported formats running with only their runtime and a tokenizer, and the one-line refusals."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, serving

from pipeline.errors import PipelineError
from pipeline.inference.backends import openvino_has_bf16, resolve_backend
from pipeline.inference.engines import TextClassifier
from pipeline.runs.loading import LoadOptions


@pytest.fixture(scope="module")
def dev_texts() -> list[str]:
    """The first 300 SST-2 dev sentences."""
    from pipeline.config.schema import DatasetConfig
    from pipeline.data.tasks import load_text_classification

    return list(load_text_classification(DatasetConfig(name="sst2"), 0).splits["validation"]["text"][:300])


def probabilities(run: Path, texts: list[str], backend: str = "torch", precision: str = "fp32") -> np.ndarray:
    options = LoadOptions(device="cpu", precision=precision, backend=backend)
    return TextClassifier.from_run(run, options=options).probabilities(texts)


@pytest.fixture(scope="module")
def torch_fp32(lora_run, dev_texts) -> np.ndarray:
    return probabilities(lora_run, dev_texts)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_fp32_backends_give_torch_probabilities(backend, lora_run, dev_texts, torch_fp32):
    assert np.abs(probabilities(lora_run, dev_texts, backend) - torch_fp32).max() < 1e-3


@pytest.fixture(scope="module")
def all_dev_texts() -> list[str]:
    """All 872 SST-2 dev sentences: agreement rates near 99% need more than 300 to be measured."""
    from pipeline.config.schema import DatasetConfig
    from pipeline.data.tasks import load_text_classification

    return list(load_text_classification(DatasetConfig(name="sst2"), 0).splits["validation"]["text"])


# Share of torch fp32's labels kept on the 872 dev sentences (this short run leaves many of them near
# 0.5, where a reduced precision flips them), measured: OpenVINO bf16 100%, OpenVINO int8 weights with
# its per-group activation quantization 99.2%, ONNX Runtime int8 with a scale per token 99.3% (one
# scale per tensor, ONNX Runtime's own dynamic quantization, kept 97.5%). Thresholds: the measurement
# less two sentences (0.23 points) for int8, one point for bf16.
@pytest.mark.parametrize("backend,precision,least", [
    ("openvino", "bf16", 0.99), ("openvino", "int8", 0.99), ("onnxruntime", "int8", 0.99)])
def test_reduced_precisions_agree_with_torch_fp32(backend, precision, least, lora_run, all_dev_texts):
    if precision == "bf16" and not openvino_has_bf16():
        with pytest.raises(PipelineError, match="needs a CPU with bf16 units"):
            probabilities(lora_run, all_dev_texts, backend, precision)
        return
    labels = probabilities(lora_run, all_dev_texts, backend, precision).argmax(-1)
    assert (labels == probabilities(lora_run, all_dev_texts).argmax(-1)).mean() >= least


def test_a_run_is_converted_once_and_its_conversion_belongs_to_the_run(lora_run, dev_texts, capsys):
    probabilities(lora_run, dev_texts[:4], "onnxruntime")
    graph = lora_run / "exports" / "onnx" / "model.onnx"
    made = graph.stat().st_mtime_ns
    probabilities(lora_run, dev_texts[:4], "onnxruntime")
    assert graph.stat().st_mtime_ns == made
    assert "exports" in json.loads((lora_run / ".pipeline-files.json").read_text())["files"]  # --overwrite removes it


def test_predict_file_on_a_runtime_writes_what_torch_writes(lora_run, dev_texts, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(dev_texts[:200]) + "\n", encoding="utf-8")
    for backend in ("torch", "openvino"):
        assert run_cli("predict", lora_run, "--file", texts, "--backend", backend, "--device", "cpu",
                       "--output", tmp_path / f"{backend}.jsonl") == 0
    rows = {b: [json.loads(line) for line in (tmp_path / f"{b}.jsonl").read_text().splitlines()]
            for b in ("torch", "openvino")}
    assert [r["text"] for r in rows["openvino"]] == dev_texts[:200]
    assert [r["label"] for r in rows["openvino"]] == [r["label"] for r in rows["torch"]]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(rows["openvino"], rows["torch"])) < 1e-3


# Runs an exported folder with nothing but its runtime and the tokenizers library: the pipeline,
# torch and transformers are made unimportable first.
STANDALONE = r"""
import json, sys
from pathlib import Path
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pipeline", "torch", "transformers", "peft", "recipes"):
            raise ImportError(f"{name} is blocked")
sys.meta_path.insert(0, Block())
import numpy as np
from tokenizers import Tokenizer
folder, fmt = Path(sys.argv[1]), sys.argv[2]
tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
labels = json.loads((folder / "labels.json").read_text())
if fmt == "onnx":
    import onnxruntime
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    run = lambda feed: session.run(["logits"], feed)[0]
else:
    import openvino
    model = openvino.Core().compile_model(str(folder / "openvino_model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    names = [p.any_name for p in model.inputs]
    run = lambda feed: model(feed)["logits"]
out = []
for text in json.loads(sys.stdin.read()):
    e = tokenizer.encode(text)
    arrays = {"input_ids": e.ids, "attention_mask": e.attention_mask, "token_type_ids": e.type_ids}
    logits = run({n: np.array([arrays[n]], dtype=np.int64) for n in names})[0]
    p = np.exp(logits - logits.max()); out.append((p / p.sum()).tolist())
print(json.dumps({"labels": labels, "probabilities": out, "torch": "torch" in sys.modules}))
"""


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_an_export_runs_with_only_its_runtime_and_the_tokenizer(fmt, lora_run, dev_texts, torch_fp32, tmp_path):
    out = tmp_path / fmt
    assert run_cli("export", lora_run, out, "--format", fmt) == 0
    assert json.loads((out / "export.json").read_text())["task"] == "sequence_classification"
    done = subprocess.run([sys.executable, "-c", STANDALONE, str(out), fmt], input=json.dumps(dev_texts[:40]),
                          capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    assert result["labels"] == ["negative", "positive"] and result["torch"] is False
    assert np.abs(np.array(result["probabilities"]) - torch_fp32[:40]).max() < 1e-3


STARTS_WITHOUT_TORCH = """
import sys
from pipeline.cli import main
code = main(["predict", sys.argv[1], "--text", "A fine film."])
print(code, "torch" in sys.modules)
"""


def test_predict_on_a_runtime_starts_without_torch(lora_run, dev_texts, capsys):
    """`predict` without flags runs OpenVINO, and on a converted run pays only for the runtime and the
    tokenizer: importing torch took two thirds of its start-up (bench/RESULTS.md)."""
    import torch

    if torch.version.cuda or torch.version.hip:
        pytest.skip("a GPU build of torch: auto imports torch to look for a GPU")
    assert run_cli("predict", lora_run, "--text", "A fine film.", "--backend", "openvino") == 0  # converted
    expected = capsys.readouterr().out
    done = subprocess.run([sys.executable, "-c", STARTS_WITHOUT_TORCH, str(lora_run)], capture_output=True,
                          text=True, check=True, cwd=Path(__file__).parents[1])
    *printed, status = done.stdout.strip().splitlines()
    assert printed == expected.strip().splitlines() and status == "0 False"


def test_export_refuses_a_folder_in_use(lora_run, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert run_cli("export", lora_run, tmp_path, "--format", "onnx") == 2
    assert capsys.readouterr().err.strip() == f"error: export folder {tmp_path} is not empty; choose a new folder"
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("args,message", [
    (["--backend", "onnxruntime", "--precision", "bf16"],
     "--backend onnxruntime runs fp32 or int8, not bf16; for bf16 use --backend torch or openvino"),
    (["--backend", "openvino", "--adapter", "other=somewhere"],
     "--adapter switches LoRA adapters on --backend torch only; run each adapter's run folder on its own "
     "with --backend openvino"),
])
def test_a_backend_refuses_what_it_cannot_run_in_one_line(args, message, lora_run, capsys):
    assert run_cli("predict", lora_run, "--text", "A fine film.", "--device", "cpu", *args) == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"


@pytest.mark.parametrize("runtime,extra", [("openvino", "openvino"), ("onnxruntime", "onnx")])
def test_a_missing_runtime_names_its_install_command(runtime, extra, lora_run, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, runtime, None)  # what `import` sees when the package is absent
    assert run_cli("predict", lora_run, "--text", "A fine film.", "--backend", runtime) == 2
    assert capsys.readouterr().err.strip() == \
        f"error: {runtime} is not installed; run: pip install 'finetune-pipeline[{extra}]'"


def test_auto_takes_the_fastest_installed_runtime_for_the_precision(monkeypatch):
    assert resolve_backend(LoadOptions(device="cpu", backend="auto")) == ("openvino", "fp32")
    bf16 = "openvino" if openvino_has_bf16() else "torch"
    assert resolve_backend(LoadOptions(device="cpu", backend="auto", precision="bf16")) == (bf16, "bf16")
    assert resolve_backend(LoadOptions(device="cpu", backend="auto", precision="int8")) == ("openvino", "int8")
    monkeypatch.setitem(sys.modules, "nncf", None)  # OpenVINO without NNCF: int8 goes to ONNX Runtime
    assert resolve_backend(LoadOptions(device="cpu", backend="auto", precision="int8")) == ("onnxruntime", "int8")
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert resolve_backend(LoadOptions(device="cpu", backend="auto")) == ("onnxruntime", "fp32")
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # ONNX Runtime without torch.onnx's exporter
    assert resolve_backend(LoadOptions(device="cpu", backend="auto")) == ("torch", "fp32")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert resolve_backend(LoadOptions(device="cpu", backend="auto", precision="bf16")) == ("torch", "bf16")


def test_serve_on_openvino_answers_like_torch(lora_run, dev_texts, torch_fp32):
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.inference.serve import create_app

    engine = TextClassifier.from_run(lora_run, options=LoadOptions(device="cpu", backend="openvino"))

    def post(url: str, start: int) -> list[dict]:
        body = json.dumps({"texts": dev_texts[start:start + 8]}).encode()
        request = urllib.request.Request(f"{url}/predict", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())["predictions"]

    with serving(create_app(engine)) as url, ThreadPoolExecutor(4) as pool:  # requests share micro-batches
        answers = [p for batch in pool.map(lambda start: post(url, start), range(0, 64, 8)) for p in batch]
        with urllib.request.urlopen(f"{url}/health", timeout=60) as response:
            health = json.loads(response.read())
    assert (health["backend"], health["precision"]) == ("openvino", "fp32")  # what runs the model, said
    assert [a["label"] for a in answers] == [["negative", "positive"][i] for i in torch_fp32[:64].argmax(-1)]


@pytest.mark.parametrize("backend,graph,library,extra", [
    ("openvino", "openvino/openvino_model_int8.xml", "nncf", "openvino"),
    ("onnxruntime", "onnx/model_int8_per_token*.onnx", "onnx", "onnx")])
def test_int8_without_its_quantizing_library_names_the_install_command(backend, graph, library, extra, lora_run,
                                                                        monkeypatch, capsys):
    probabilities(lora_run, ["A fine film."], backend)  # the fp32 conversion exists; its int8 is made next
    monkeypatch.setitem(sys.modules, library, None)
    for made in (lora_run / "exports").glob(graph):  # the int8 graph(s) made before
        made.unlink()
    assert run_cli("predict", lora_run, "--text", "A fine film.", "--backend", backend, "--precision", "int8") == 2
    assert capsys.readouterr().err.strip() == f"error: {library} is not installed; run: pip install 'finetune-pipeline[{extra}]'"


def test_commands_run_on_the_fastest_installed_runtime_by_default(lora_run, dev_texts, torch_fp32, tmp_path, capsys):
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    run = tmp_path / "run"
    shutil.copytree(lora_run, run, ignore=shutil.ignore_patterns("exports", "checkpoints"))
    with ThreadPoolExecutor(2) as pool:  # two commands starting together convert once, and both run
        engines = list(pool.map(lambda _: TextClassifier.from_run(run, options=LoadOptions(device="cpu", backend="auto")),
                                range(2)))
    assert [e.runner.backend for e in engines] == ["openvino", "openvino"]
    assert [p.name for p in (run / "exports").iterdir()] == ["openvino"]  # no half-written conversion left
    capsys.readouterr()
    assert run_cli("predict", run, "--text", dev_texts[0], "--json") == 0  # no --backend: auto
    answer = json.loads(capsys.readouterr().out)
    assert abs(answer["score"] - torch_fp32[0].max()) < 1e-3


def test_auto_keeps_on_torch_what_a_runtime_cannot_hold(lora_run, rt_lora_run, tmp_path, monkeypatch, caplog):
    import shutil

    from pipeline.runs import export

    auto = LoadOptions(device="cpu", backend="auto")
    several = TextClassifier.from_run(lora_run, adapters={"rt": rt_lora_run}, options=auto)
    assert several.runner.backend == "torch" and several.adapters == ["default", "rt"]

    run = tmp_path / "run"
    shutil.copytree(lora_run, run, ignore=shutil.ignore_patterns("exports", "checkpoints"))
    attempts = []

    def failing_converter(loaded, out_dir, fmt):  # what a converter that cannot trace an architecture does
        attempts.append(fmt)
        raise export.ConversionError(fmt, type(loaded.model).__name__, "unsupported operator")

    monkeypatch.setattr(export, "_write_graph", failing_converter)
    assert TextClassifier.from_run(run, options=auto).runner.backend == "torch"
    assert "openvino conversion of this BertForSequenceClassification failed (unsupported operator); " \
           "running on torch" in caplog.text
    assert TextClassifier.from_run(run, options=auto).runner.backend == "torch" and attempts == ["openvino"]
    with pytest.raises(PipelineError, match="openvino conversion of this"):  # asked for by name: the error
        TextClassifier.from_run(run, options=LoadOptions(device="cpu", backend="openvino"))
