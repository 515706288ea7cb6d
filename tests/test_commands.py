"""Every command on every recipe: what it does on that recipe's runs, or its one-line refusal naming
the commands that apply; and the README's command x recipe table says the same."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import run_cli

from pipeline.recipe import COMMANDS
from pipeline.registry import get_recipe, recipe_names

QUICK = ["training.eval_strategy=no", "training.save_strategy=no"]
RUNS = {
    "sequence_classification": ["sst2_head", "dataset.max_train_samples=64", "dataset.max_eval_samples=32",
                                "training.max_steps=4"],
    "token_classification": ["wnut17_lora", "dataset.max_train_samples=64", "dataset.max_eval_samples=24",
                             "training.max_steps=4"],
    "question_answering": ["squad_lora", "dataset.max_train_samples=24", "dataset.max_eval_samples=12",
                           "dataset.max_length=96", "qa.doc_stride=32", "training.max_steps=3"],
    "masked_lm": ["tiny_shakespeare_mlm", "dataset.max_train_samples=120", "dataset.max_eval_samples=20",
                  "training.max_steps=6"],
    "causal_lm": ["tiny_shakespeare_gpt2", "dataset.max_train_samples=200", "dataset.max_eval_samples=20",
                  "lm.vocab_size=500", "lm.n_layer=1", "lm.n_embd=64", "training.max_steps=6"],
    "instruction": ["alpaca_smollm2_lora", "dataset.max_train_samples=16", "dataset.max_eval_samples=4",
                    "dataset.max_length=128", "chat.generation_samples=2", "chat.max_new_tokens=8",
                    "training.max_steps=2"],
    "preference": ["dpo_smollm2_lora", "dataset.max_train_samples=12", "dataset.max_eval_samples=6",
                   "dataset.max_length=256", "chat.generation_samples=1", "chat.max_new_tokens=4",
                   "training.max_steps=1"],
}
# The arguments each command takes after the run folder.
ARGS = {"predict": ["--text", "A fine film."], "serve": ["--port", "0"], "ner": ["--text", "Paris is nice."],
        "qa": ["--question", "Where is it?", "--context", "It is in Paris."],
        "fill-mask": ["The [MASK] is here."], "generate": ["ROMEO:", "--max-new-tokens", "4"],
        "chat": ["--prompt", "Hello.", "--max-new-tokens", "4"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe_runs")
    out = {}
    for recipe, args in RUNS.items():
        out[recipe] = root / recipe
        assert run_cli("train", *args, *QUICK, f"output_dir={out[recipe]}") == 0, recipe
    return out


def refused_cells() -> list[tuple[str, str]]:
    return [(recipe, command) for recipe in recipe_names() for command in ARGS
            if command not in get_recipe(recipe).commands]


@pytest.mark.parametrize("recipe,command", refused_cells())
def test_a_command_that_does_not_apply_is_refused_in_one_line(recipe, command, runs, capsys):
    assert run_cli(command, runs[recipe], *ARGS[command]) == 2
    err = capsys.readouterr().err.strip()
    supported = ", ".join(c for c in COMMANDS if c in get_recipe(recipe).commands)
    assert err == f"error: `pipeline {command}` does not apply to {recipe} runs; {recipe} runs support: {supported}"


@pytest.mark.parametrize("recipe", list(RUNS))
def test_evaluate_reproduces_the_recorded_metrics_exactly(recipe, runs, capsys):
    recorded = json.loads((runs[recipe] / "metrics.json").read_text())["validation"]
    assert run_cli("evaluate", runs[recipe]) == 0
    again = json.loads((runs[recipe] / "metrics.json").read_text())["validation"]
    assert again == recorded
    if recipe in ("masked_lm", "causal_lm"):  # language models report loss, accuracy and perplexity
        assert set(recorded) >= {"loss", "accuracy", "perplexity"}
        assert recorded["perplexity"] == pytest.approx(2.718281828 ** recorded["loss"], rel=1e-4)


@pytest.mark.parametrize("recipe,model_class", [("sequence_classification", "BertForSequenceClassification"),
                                                ("token_classification", "BertForTokenClassification"),
                                                ("question_answering", "BertForQuestionAnswering"),
                                                ("masked_lm", "BertForMaskedLM"), ("causal_lm", "GPT2LMHeadModel")])
def test_export_writes_the_recipes_own_model_class(recipe, model_class, runs, tmp_path):
    from transformers import AutoConfig

    merge = ["--merge"] if (runs[recipe] / "adapter_config.json").exists() else []
    assert run_cli("export", runs[recipe], tmp_path / "out", *merge) == 0
    assert AutoConfig.from_pretrained(tmp_path / "out").architectures == [model_class]
    model = get_recipe(recipe).model_class(None if recipe != "masked_lm" else _config(runs[recipe]))
    assert type(model.from_pretrained(tmp_path / "out")).__name__ == model_class


def _config(run: Path):
    from pipeline.runs.run_folder import load_run_config

    return load_run_config(run)


@pytest.mark.parametrize("recipe", list(RUNS))
def test_push_dry_run_and_inspect_work_on_every_recipe(recipe, runs, capsys):
    assert run_cli("push", runs[recipe], "--repo-id", "someone/model", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "would upload README.md" in out and "would upload run_config.yaml" in out
    assert run_cli("inspect", runs[recipe], "--text", "To be or not to be.") == 0
    assert "hidden states" in capsys.readouterr().out


def test_readme_table_matches_the_recipes():
    """Each cell of the README's command x recipe table says what the command does for the recipe, or
    starts with "refused" exactly where the recipe does not support the command."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    table = readme.split("| command | " + " | ".join(f"`{r}`" for r in recipe_names()) + " |")[1]
    lines = table.strip().splitlines()[1:]
    rows = lines[:next((i for i, line in enumerate(lines) if not line.startswith("|")), len(lines))]
    seen = set()
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        command = re.sub(r"[`*]", "", cells[0]).split()[0]
        seen.add(command)
        for recipe, cell in zip(recipe_names(), cells[1:]):
            assert cell.startswith("refused") == (command not in get_recipe(recipe).commands), (command, recipe, cell)
    assert seen == set(COMMANDS)


@pytest.mark.parametrize("recipe", ["masked_lm", "causal_lm"])
def test_runtime_formats_and_backends_are_refused_for_language_models(recipe, runs, tmp_path, capsys):
    model_class = "AutoModelForMaskedLM" if recipe == "masked_lm" else "AutoModelForCausalLM"
    tail = (f"covers sequence- and token-classification and question-answering runs; this run loads as {model_class}: "
            f"use the torch backend and the transformers format")
    assert run_cli("export", runs[recipe], tmp_path / "out", "--format", "onnx") == 2
    assert capsys.readouterr().err.strip() == f"error: --format onnx {tail}"
    assert not (tmp_path / "out").exists()
    assert run_cli("evaluate", runs[recipe], "--backend", "openvino") == 2
    assert capsys.readouterr().err.strip() == f"error: --backend openvino {tail}"
