"""Every training method on real SST-2 and WNUT-17 rows: trains, saves, reloads, predicts the same;
layer-wise learning-rate decay; augmentation."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli

from pipeline.inference.engines import TextClassifier, TokenTagger

REVIEWS = ["A true cinematic achievement!", "Boring and predictable.", "not bad at all"]
SHORT = ["dataset.max_train_samples=160", "dataset.max_eval_samples=64", "training.max_steps=6",
         "training.per_device_train_batch_size=16", "training.eval_strategy=no", "training.save_strategy=no"]


def capture_trained_probabilities(monkeypatch, texts) -> dict:
    """Record what the model in memory predicts right after training, before anything is saved."""
    from pipeline.training import trainer as training

    captured: dict = {}
    original = training.PipelineTrainer.train

    def train_then_predict(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        # without accelerate's mixed-precision wrapper: the weights as trained, run in fp32 like a reload
        model = self.accelerator.unwrap_model(self.model, keep_fp32_wrapper=False).eval()
        captured["probabilities"] = TextClassifier(model, self.processing_class,
                                                   ["negative", "positive"]).probabilities(texts)
        return result
    monkeypatch.setattr(training.PipelineTrainer, "train", train_then_predict)
    return captured


@pytest.mark.parametrize("method", ["head", "dora", "adalora", "ia3", "prompt"])
def test_method_trains_saves_reloads_and_predicts(method, tmp_path, monkeypatch):
    out = tmp_path / method
    trained = capture_trained_probabilities(monkeypatch, REVIEWS)
    assert run_cli("train", "sst2_lora", f"method={method}", *SHORT, f"output_dir={out}") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["validation"]["rows"] == 64
    assert 0 < metrics["parameters"]["percent"] < (5 if method == "head" else 4.0)  # sst2_lora: rank 16 on every block layer
    assert metrics["train"]["peak_memory_mb"] > 0
    saved = out / ("model.safetensors" if method == "head" else "adapter_model.safetensors")
    assert saved.exists()
    reloaded = TextClassifier.from_run(out).probabilities(REVIEWS)
    np.testing.assert_allclose(reloaded, trained["probabilities"], atol=1e-4)  # the reload is the trained model


@pytest.fixture(scope="module")
def squad_pairs() -> tuple[list[str], list[str]]:
    """Four real SQuAD questions with their contexts: pairs, so the token types hold 0s and 1s."""
    from pipeline.config.schema import DatasetConfig
    from pipeline.data.question_answering import load_question_answering

    rows = load_question_answering(DatasetConfig(name="squad"), seed=1).splits["validation"].select(range(4))
    return list(rows["question"]), list(rows["context"])


@pytest.mark.parametrize("config", ["sst2_lora", "wnut17_lora", "squad_lora"])
@pytest.mark.parametrize("method", ["lora", "adalora", "ia3"])
def test_a_fresh_adapter_computes_what_the_base_computes_from_every_input(config, method, squad_pairs):
    """LoRA's B and AdaLoRA's E start at zero and IA3's scales at one, so before training the wrapped
    model must give the base model's outputs for the same inputs, a question-context pair's
    token_type_ids included: a wrapper that drops an input trains a model that answers differently
    once merged or exported."""
    import copy

    import torch

    from pipeline.config.loader import load_config, resolve_config_path
    from pipeline.models.methods import apply_method, resolve_lora_targets
    from pipeline.models.pretrained import load_pretrained, load_tokenizer
    from pipeline.registry import get_recipe

    run_config = load_config(resolve_config_path(config), [f"method={method}"])
    recipe = get_recipe(run_config.recipe)
    resolve_lora_targets(run_config)
    tokenizer = load_tokenizer(run_config.model)
    extra = {"num_labels": 3} if recipe.fresh_head and run_config.recipe != "question_answering" else {}
    base = load_pretrained(recipe.model_class(run_config), run_config.model, **extra).eval()
    batch = tokenizer(*squad_pairs, truncation="only_second", max_length=128, padding=True, return_tensors="pt")
    assert batch["token_type_ids"].any()  # the pair's second segment is marked
    wrapped = apply_method(copy.deepcopy(base), run_config, recipe.peft_task_type, recipe.fresh_head).eval()
    with torch.no_grad():
        expected, found = base(**batch), wrapped(**batch)
    for name in ("logits", "start_logits", "end_logits"):
        if name in expected:
            torch.testing.assert_close(found[name], expected[name], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", ["dora", "ia3"])
def test_peft_methods_train_ner(method, tmp_path):
    out = tmp_path / method
    assert run_cli("train", "wnut17_lora", f"method={method}", *SHORT, f"output_dir={out}") == 0
    entities = TokenTagger.from_run(out).entities(["Empire State Building is in New York"])
    assert isinstance(entities, list) and len(entities) == 1


def test_prefix_tuning_on_an_encoder_is_a_clear_error(tmp_path, capsys):
    assert run_cli("train", "sst2_lora", "method=prefix", *SHORT, f"output_dir={tmp_path / 'p'}") == 2
    err = capsys.readouterr().err
    assert "method prefix needs a model that takes past keys and values" in err
    assert "Traceback" not in err


def test_prompt_tuning_for_ner_is_a_clear_error(tmp_path, capsys):
    assert run_cli("train", "wnut17_lora", "method=prompt", *SHORT, f"output_dir={tmp_path / 'p'}") == 2
    assert "method prompt does not fit token classification" in capsys.readouterr().err


def test_prompt_tuning_run_cannot_be_merged(tmp_path, capsys):
    out = tmp_path / "prompt"
    assert run_cli("train", "sst2_lora", "method=prompt", *SHORT, f"output_dir={out}") == 0
    assert run_cli("export", out, tmp_path / "merged", "--merge") == 2
    assert "cannot merge" in capsys.readouterr().err
    # predict's default backend (auto) keeps it on torch: its virtual tokens are no graph weights
    assert run_cli("predict", out, "--text", REVIEWS[0]) == 0
    assert capsys.readouterr().out.strip().endswith(REVIEWS[0]) and not (out / "exports").exists()


def test_layerwise_lr_decay_gives_lower_layers_smaller_steps():
    from transformers import AutoModelForSequenceClassification, Trainer

    from pipeline.models.pretrained import resolve_model
    from pipeline.training.trainer import layerwise_parameter_groups

    model = AutoModelForSequenceClassification.from_pretrained(resolve_model("minilm"), num_labels=2)
    decay_names = set(Trainer.get_decay_parameter_names(None, model))
    groups = layerwise_parameter_groups(model, 1e-4, 0.8, 0.01, decay_names)
    by_param = {id(p): g for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    lr = {name: by_param[id(p)]["lr"] for name, p in named.items()}
    assert lr["classifier.weight"] == pytest.approx(1e-4)
    assert lr["bert.encoder.layer.5.attention.self.query.weight"] == pytest.approx(1e-4 * 0.8)
    assert lr["bert.encoder.layer.0.attention.self.query.weight"] == pytest.approx(1e-4 * 0.8 ** 6)
    assert lr["bert.embeddings.word_embeddings.weight"] == pytest.approx(1e-4 * 0.8 ** 7)
    assert by_param[id(named["bert.encoder.layer.0.attention.self.query.bias"])]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in groups) == len(named)  # every parameter in exactly one group


def test_layerwise_lr_decay_run_and_its_misuse(tmp_path, capsys):
    """With decay 0.5 the first layer learns at 0.5**5 of the last one's rate: Adam's steps, and so the
    weight changes, shrink by about that factor (measured: layer 0 moves ~1/30 as far as layer 5)."""
    from safetensors.torch import load_file

    from pipeline.models.pretrained import resolve_model

    out = tmp_path / "llrd"
    assert run_cli("train", "sst2_full", "training.layerwise_lr_decay=0.5", *SHORT, f"output_dir={out}") == 0
    start, end = load_file(f"{resolve_model('minilm')}/model.safetensors"), load_file(out / "model.safetensors")

    def moved(layer: int) -> float:
        name = f"encoder.layer.{layer}.attention.self.query.weight"
        return float((end[f"bert.{name}"] - start[next(k for k in start if k.endswith(name))]).abs().mean())
    assert moved(0) < moved(5) / 8  # 32x in theory; 4x margin for Adam's early, bias-corrected steps
    assert run_cli("train", "sst2_lora", "training.layerwise_lr_decay=0.9", *SHORT,
                   f"output_dir={tmp_path / 'bad'}") == 2
    assert "layerwise_lr_decay applies to method full" in capsys.readouterr().err


def test_unknown_method_names_the_choices(tmp_path, capsys):
    assert run_cli("train", "sst2_lora", "method=qlora", f"output_dir={tmp_path / 'q'}") == 2
    err = capsys.readouterr().err
    assert "method 'qlora' is unknown" in err and "dora" in err and "prompt" in err


def test_adalora_schedule_prunes_rank_and_the_pruned_adapter_reloads(tmp_path, capsys):
    """AdaLoRA's budget schedule runs inside Trainer: the saved adapter keeps only the target rank
    (half of lora.r, spread over the modules by importance), and it reloads to the same accuracy."""
    from safetensors.torch import load_file

    out = tmp_path / "adalora"
    assert run_cli("train", "sst2_lora", "method=adalora", "dataset.max_train_samples=320",
                   "dataset.max_eval_samples=32", "training.max_steps=40", "training.eval_strategy=no",
                   "training.save_strategy=no", f"output_dir={out}") == 0
    weights = load_file(str(out / "adapter_model.safetensors"))
    ranks = [t.shape[0] for name, t in weights.items() if "lora_E" in name]
    assert len(ranks) == 36  # all-linear: query, key, value, attention output, intermediate, output in 6 layers
    assert sum(ranks) == 8 * 36 and len(set(ranks)) > 1  # budget r/2 = 8 per module on average, unevenly spent
    trained = json.loads((out / "metrics.json").read_text())["validation"]["accuracy"]
    capsys.readouterr()
    assert run_cli("evaluate", out) == 0
    assert f"accuracy {trained:.4f}" in capsys.readouterr().out


@pytest.mark.slow  # kept out of CI for time: three training processes
def test_compare_tabulates_each_method_and_reports_a_failing_one(tmp_path, capsys):
    import yaml
    from PIL import Image

    out = tmp_path / "cmp"
    assert run_cli("compare", "sst2_lora", *SHORT, "--methods", "head,lora,prefix", "--output-dir", out) == 0
    result = json.loads((out / "comparison.json").read_text())
    rows = {row["method"]: row for row in result["rows"]}
    assert set(rows) == {"head", "lora", "prefix"}
    for method in ("head", "lora"):
        row = rows[method]
        assert 0 <= row["metric"] <= 1 and row["samples_per_second"] > 0 and row["peak_memory_mb"] > 100
        assert row["checkpoint_mb"] > 0
    assert rows["lora"]["checkpoint_mb"] < rows["head"]["checkpoint_mb"]  # an adapter, not a whole model
    pooler_and_classifier = (384 * 384 + 384) + (384 * 2 + 2)
    assert rows["head"]["trainable"] == pooler_and_classifier
    assert rows["lora"]["trainable"] == 6 * 2 * 8 * (384 + 384) + pooler_and_classifier  # query, value; r=8
    assert "prefix needs a model that takes past keys and values" in rows["prefix"]["error"]
    # Each method ran at its own default learning rate, not the config's 1e-3.
    assert "learning_rate" not in (yaml.safe_load((out / "configs" / "lora.yaml").read_text())["training"])
    assert "| lora |" in (out / "comparison.md").read_text()
    assert Image.open(out / "comparison.png").size[0] > 400
    # A second comparison into the same folder is refused, not silently mixed in.
    assert run_cli("compare", "sst2_lora", "--methods", "head", "--output-dir", out) == 2
    assert "pass --overwrite" in capsys.readouterr().err


def test_prefix_tuning_trains_saves_and_generates_on_a_decoder(tmp_path, capsys):
    out = tmp_path / "prefix"
    assert run_cli("train", "tiny_shakespeare_smollm2_lora", "method=prefix", "prompt.num_virtual_tokens=8",
                   "lm.block_size=64", "dataset.max_train_samples=20", "dataset.max_eval_samples=4",
                   "training.max_steps=2", "training.per_device_train_batch_size=2", "training.eval_strategy=no",
                   "training.save_strategy=no", f"output_dir={out}") == 0
    assert (out / "adapter_model.safetensors").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["parameters"]["percent"] < 1
    from test_language_models import adapter_on_base, greedy_cli, greedy_direct

    assert greedy_cli(out, capsys, 5) == greedy_direct(*adapter_on_base(out), 5)  # the prefix is what generates


def test_prefix_tuning_for_decoder_classification_is_a_clear_error(tmp_path, capsys):
    assert run_cli("train", "sst2_smollm2_lora", "method=prefix", "dataset.max_train_samples=16",
                   "dataset.max_eval_samples=8", "training.max_steps=1", f"output_dir={tmp_path / 'p'}") == 2
    assert "prefix tuning runs with the causal_lm recipe only" in capsys.readouterr().err
