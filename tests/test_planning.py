"""Planning from a model config alone: LoRA parameter counts and the method advisor."""
from __future__ import annotations

import pytest
from conftest import run_cli

from pipeline.errors import PipelineError
from pipeline.planning.advise import (
    GiB,
    advise,
    crossovers,
    load_model_config,
    lora_count,
    lora_parameters,
    nearest_measured,
    parse_memory,
    skeleton,
)


def test_lora_params_for_bert_base_matches_the_closed_form(capsys):
    # r=16 on Q, K, V, O of BERT-base: 4 matrices x 12 layers x 16 x (768 + 768).
    assert run_cli("lora-params", "--model", "bert-base-uncased", "--r", "16", "--targets", "query,key,value,output") == 0
    out = capsys.readouterr().out
    assert "total LoRA parameters: 1,179,648 = 4.17% of the 28,311,552 targeted weights" in out
    assert 4 * 12 * 16 * (768 + 768) == 1_179_648


@pytest.mark.parametrize("r,targets", [(8, ["query", "value"]), (16, ["query", "key", "value", "output"]),
                                       (4, ["query", "key", "value", "dense"]), (16, ["all-linear"])])
def test_lora_params_from_the_config_equal_peft_on_the_real_minilm(r, targets):
    """all-linear names output.dense after attention.output.dense, which the shorter suffix also
    matches: peft adapts each layer once, and so does the count."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    from pipeline.models.architectures import block_linear_layers
    from pipeline.models.methods import expand_target_aliases
    from pipeline.models.pretrained import resolve_model

    counted = lora_parameters(skeleton(load_model_config("minilm")), r, targets)
    all_linear = targets == ["all-linear"]
    if all_linear:  # peft gets the layers a run records for it
        targets = block_linear_layers(skeleton(load_model_config("minilm")))
    real = AutoModel.from_pretrained(resolve_model("minilm"))
    names = [n for n, _ in real.named_modules()]
    peft_model = get_peft_model(real, LoraConfig(r=r, target_modules=expand_target_aliases(names, targets)))
    actual = sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n)
    assert counted.total == actual
    assert counted.model_parameters == sum(p.numel() for p in real.parameters()) - actual
    if all_linear:  # as `pipeline lora-params --targets all-linear` resolves it
        assert lora_count("minilm", r, ["all-linear"]).total == actual


def test_lora_params_all_linear_on_gpt2_counts_its_conv1d_projections_as_peft_does():
    """GPT-2's c_attn, c_proj and c_fc are Conv1D (weights stored (in, out)), not nn.Linear."""
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2Model

    from pipeline.models.architectures import block_linear_layers

    model = GPT2Model(GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=512, n_positions=64))
    counted = lora_parameters(model, 8, ["all-linear"])
    peft_model = get_peft_model(model, LoraConfig(r=8, target_modules=block_linear_layers(model), fan_in_fan_out=True))
    assert counted.total == sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n)
    assert counted.total == 2 * 8 * ((64 + 192) + (64 + 64) + (64 + 256) + (256 + 64))


def test_lora_params_names_the_linear_layers_for_a_bad_target():
    with pytest.raises(PipelineError, match="matches no linear layer.*query"):
        lora_parameters(skeleton(load_model_config("minilm")), 8, ["qproj"])


def test_scenario_a_large_data_and_memory_gives_full_fine_tuning():
    advice = advise("bert-base-uncased", train_size=100_000, gpu_memory=parse_memory("16GB"))
    assert advice.method == "full" and not advice.shared_base


def test_scenario_b_small_data_gives_the_method_measured_best_near_its_size():
    advice = advise("bert-base-uncased", train_size=500, gpu_memory=parse_memory("8GB"))
    row = nearest_measured(crossovers()["crossovers"], 500)
    assert row["train_size"] == 512 and advice.method == row["best"]
    assert any("bench/small_data.py" in reason for reason in advice.reasons)
    # The Trainer methods come with a learning-rate search; SetFit has its own measured defaults.
    assert advice.tune == (advice.method != "setfit")
    assert "augmentation" not in advice.summary  # measured: no gain at 500 rows


def test_scenario_c_twenty_tasks_give_one_base_with_twenty_adapters(capsys):
    assert run_cli("advise", "--model", "bert-base-uncased", "--train-size", "5000", "--gpu-memory", "16GB",
                   "--tasks", "20") == 0
    out = capsys.readouterr().out
    assert "recommendation: one bert-base-uncased base with 20 LoRA adapters" in out
    advice = advise("bert-base-uncased", train_size=5000, gpu_memory=16 * GiB, tasks=20)
    assert advice.method == "lora" and advice.shared_base


def test_memory_estimate_full_is_sixteen_bytes_per_parameter_plus_activations():
    advice = advise("bert-base-uncased", train_size=100_000, gpu_memory=16 * GiB, batch_size=32, seq_len=128)
    full = {r.method: r for r in advice.estimates["bf16"]}["full"]
    assert full.weights + full.gradients + full.optimizer == 16 * full.trainable
    lora = {r.method: r for r in advice.estimates["bf16"]}["lora"]
    assert lora.total < full.total and lora.activations == full.activations


def test_full_fine_tuning_that_does_not_fit_falls_back_to_lora():
    advice = advise("bert-large-uncased", train_size=100_000, gpu_memory=parse_memory("4GB"), batch_size=64)
    assert advice.method in ("lora", "head")
    assert any("full fine-tuning" in reason and "of 4.0 GiB" in reason for reason in advice.reasons)


@pytest.mark.parametrize("text,gib", [("16GB", 16), ("8 gib", 8), ("24000MB", 24000 / 1024), ("0.5g", 0.5)])
def test_parse_memory(text, gib):
    assert parse_memory(text) == pytest.approx(gib * GiB)


def test_bad_memory_and_unknown_offline_model_are_one_line_errors(capsys):
    assert run_cli("advise", "--train-size", "10", "--gpu-memory", "lots") == 2
    assert "--gpu-memory 'lots' is not a size" in capsys.readouterr().err
    assert run_cli("lora-params", "--model", "no-such-org/no-such-model") == 2
    assert "offline, use one of minilm" in capsys.readouterr().err
