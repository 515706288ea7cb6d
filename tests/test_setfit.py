"""method setfit: a few-shot run on real SST-2 sentences saves, reloads and predicts the same through
every engine; the models and settings it cannot use are refused in one line; advise follows the
measured crossover table."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import FakeHub, run_cli

pytest.importorskip("setfit", reason="the setfit extra is not installed")

REVIEWS = ["A true cinematic achievement!", "Dull, lifeless and far too long.", "not bad at all",
           "the plot goes nowhere"]
FEW_SHOT = ["dataset.samples_per_label=16", "dataset.max_eval_samples=300"]


@pytest.fixture(scope="module")
def setfit_run(tmp_path_factory) -> Path:
    """SetFit as shipped (sst2_setfit) on 32 SST-2 training sentences, 16 of each label."""
    out = tmp_path_factory.mktemp("runs") / "sst2_setfit"
    assert run_cli("train", "sst2_setfit", *FEW_SHOT, f"output_dir={out}") == 0
    return out


def test_setfit_learns_from_32_sentences_and_writes_a_run_folder_like_every_method(setfit_run):
    metrics = json.loads((setfit_run / "metrics.json").read_text())
    # Measured 0.70 and 0.71 on the 872 dev sentences at 32 training sentences (bench/small_data.py, two
    # seeds); a 300-sentence sample of dev, less a margin of 0.08 for the sample and the seed.
    assert metrics["validation"]["accuracy"] >= 0.62
    assert metrics["train"]["pairs"] == 512  # 8 pairs for each of the 32 sentences, both kinds
    for name in ("run_config.yaml", "labels.json", "confusion_matrix.png", "training_curves.png", "README.md",
                 "classifier_head.safetensors", "modules.json", "model.safetensors"):
        assert (setfit_run / name).stat().st_size > 0, name
    assert not list(setfit_run.rglob("*.pkl")) and not (setfit_run / "checkpoints").exists()
    log = [json.loads(line) for line in (setfit_run / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in record for record in log)
    assert "SentenceTransformer(" in (setfit_run / "README.md").read_text()


def test_setfit_reloads_and_predicts_as_its_encoder_and_head_do(setfit_run):
    """The engines' module (pooling, normalisation, head) gives what the model card's recipe gives:
    the sentence-transformers encoder's embeddings through the saved head."""
    import torch
    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer

    from pipeline.inference.engines import TextClassifier
    from pipeline.runs.loading import LoadOptions

    probabilities = TextClassifier.from_run(setfit_run).probabilities(REVIEWS)
    head = load_file(str(setfit_run / "classifier_head.safetensors"))
    embeddings = SentenceTransformer(str(setfit_run)).encode(REVIEWS, convert_to_tensor=True)
    expected = torch.softmax(embeddings @ head["weight"].T + head["bias"], dim=-1).numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    # The precision flags reach the whole module, head included (measured on these four reviews: bf16
    # off by at most 0.0003, int8's dynamic quantization by up to 0.056; bounds with margin).
    for precision, bound in (("bf16", 0.01), ("int8", 0.1)):
        reduced = TextClassifier.from_run(setfit_run, options=LoadOptions(precision=precision)).probabilities(REVIEWS)
        np.testing.assert_allclose(reduced, probabilities, atol=bound)


def test_setfit_evaluate_reproduces_the_run_inspect_reads_it_and_onnx_runtime_agrees(setfit_run, capsys):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    from pipeline.inference.engines import TextClassifier
    from pipeline.runs.loading import LoadOptions

    recorded = json.loads((setfit_run / "metrics.json").read_text())["validation"]["accuracy"]
    assert run_cli("evaluate", setfit_run) == 0 and run_cli("inspect", setfit_run) == 0
    assert json.loads((setfit_run / "metrics.json").read_text())["validation"]["accuracy"] == recorded
    torch_probs = TextClassifier.from_run(setfit_run).probabilities(REVIEWS)
    onnx_probs = TextClassifier.from_run(setfit_run, options=LoadOptions(backend="onnxruntime")).probabilities(REVIEWS)
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=1e-4)


def test_samples_per_label_draws_a_balanced_seeded_training_set():
    from pipeline.config.loader import load_config, resolve_config_path
    from pipeline.data.tasks import load_text_classification

    config = load_config(resolve_config_path("sst2_setfit"), ["dataset.samples_per_label=16"])
    first = load_text_classification(config.dataset, seed=1).splits["train"]
    again = load_text_classification(config.dataset, seed=1).splits["train"]
    other = load_text_classification(config.dataset, seed=2).splits["train"]
    assert sorted(first["label"]) == [0] * 16 + [1] * 16
    assert first["text"] == again["text"] and first["text"] != other["text"]


def test_setfit_runs_on_another_architecture_with_mean_pooling(tmp_path, sst2_rows):
    """A plain transformers encoder (no sentence-transformers files; RoBERTa takes no token type ids)
    gets mean pooling, trains and predicts."""
    from zoo import build

    from pipeline.inference.engines import TextClassifier

    model = build("roberta", tmp_path / "roberta", [s for s, _ in sst2_rows])
    out = tmp_path / "run"
    assert run_cli("train", "sst2_setfit", f"model={model}", "dataset.samples_per_label=8",
                   "dataset.max_eval_samples=64", "setfit.pairs_per_sentence=2", "dataset.max_length=64",
                   f"output_dir={out}") == 0
    assert json.loads((out / "sentence_classifier.json").read_text())["pooling"] == "mean"
    assert TextClassifier.from_run(out).probabilities(REVIEWS).shape == (len(REVIEWS), 2)


@pytest.mark.parametrize("overrides, message", [
    (["training.weight_decay=0.1"], "training.weight_decay does not apply to method setfit"),
    (["augment.factor=2"], "augment does not apply to method setfit"),
    (["dataset.max_train_samples=64"], "dataset.samples_per_label and dataset.max_train_samples"),
])
def test_setfit_refuses_settings_it_does_not_use(tmp_path, capsys, overrides, message):
    assert run_cli("train", "sst2_setfit", *overrides, f"output_dir={tmp_path / 'run'}") != 0
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_setfit_refuses_other_recipes_decoders_resume_and_tune(tmp_path, capsys, sst2_rows):
    from zoo import build

    assert run_cli("train", "conll2003_lora", "method=setfit", f"output_dir={tmp_path / 'ner'}") != 0
    assert "method setfit classifies whole texts" in capsys.readouterr().err
    decoder = build("llama", tmp_path / "llama", [s for s, _ in sst2_rows])
    assert run_cli("train", "sst2_setfit", f"model={decoder}", f"output_dir={tmp_path / 'llama_run'}") != 0
    assert "method setfit needs a bidirectional sentence encoder" in capsys.readouterr().err
    assert run_cli("train", "sst2_setfit", f"output_dir={tmp_path / 'run'}", "--resume") != 0
    assert "method setfit keeps no checkpoints" in capsys.readouterr().err
    if importlib.util.find_spec("optuna"):
        assert run_cli("tune", "sst2_setfit", "--trials", "2", "--output", tmp_path / "tune") != 0
        assert "pipeline tune searches Trainer runs" in capsys.readouterr().err


def test_advise_recommends_the_method_measured_best_at_the_nearest_size():
    from pipeline.planning.advise import GiB, advise, crossovers

    table = crossovers()
    assert table is not None, "pipeline/planning/crossovers.json is written by bench/small_data.py"
    for row in table["crossovers"]:
        advice = advise("bert-base-uncased", train_size=row["train_size"], gpu_memory=80 * GiB)
        assert advice.method == row["best"], row
        assert any("bench/small_data.py" in reason for reason in advice.reasons)


def test_setfit_push_uploads_an_encoder_and_head_that_load_without_the_pipeline(setfit_run, hub, tmp_path):
    import torch
    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer

    from pipeline.inference.engines import TextClassifier

    assert run_cli("push", setfit_run, "--repo-id", "someone/sst2-setfit") == 0
    for name, data in FakeHub.received.items():  # the repository as a user downloads it
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    assert not [name for name in FakeHub.received if name.endswith(".pkl")]
    card = FakeHub.received["README.md"].decode()
    assert "library_name: sentence-transformers" in card and 'hf_hub_download("someone/sst2-setfit"' in card
    head = load_file(str(tmp_path / "classifier_head.safetensors"))
    embeddings = SentenceTransformer(str(tmp_path)).encode(REVIEWS, convert_to_tensor=True)
    downloaded = torch.softmax(embeddings @ head["weight"].T + head["bias"], dim=-1).numpy()
    np.testing.assert_allclose(downloaded, TextClassifier.from_run(setfit_run).probabilities(REVIEWS), atol=1e-5)
