"""The model card: one writer for the run folder's README.md and the card pushed to the Hub.

A card says what was trained, on what, how well, and how to load it. It is published, so it holds no
absolute local path (a model or data file given by path appears by its name) and no credential
(the config cannot hold one: ``config.refuse_secrets``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import ModelCardData

from pipeline.runs import run_folder
from pipeline.data.catalogue import CATALOGUE
from pipeline.recipe import Recipe
from pipeline.models.sentence_classifier import HEAD_FILE, is_setfit_run

# Peft's auto classes, by the transformers auto class they wrap. Question answering is left out:
# its adapters are saved under peft's generic wrapper (methods.py says why), which PeftModel loads.
PEFT_AUTO = {"AutoModelForSequenceClassification": "AutoPeftModelForSequenceClassification",
             "AutoModelForTokenClassification": "AutoPeftModelForTokenClassification",
             "AutoModelForCausalLM": "AutoPeftModelForCausalLM"}


def public_name(value: str | None) -> str | None:
    """A local path as its last part (``/home/me/models/bert-ja`` -> ``bert-ja``); other text unchanged."""
    if not value:
        return value
    path = Path(value).expanduser()
    return path.name if path.is_absolute() or value.startswith(("~", "./", "../")) else value


def public_config(config: Any) -> dict[str, Any]:
    data = config.to_dict()
    data["model"] = public_name(data["model"])
    data["output_dir"] = public_name(data["output_dir"])
    for key in ("train_file", "validation_file", "test_file"):
        data["dataset"][key] = public_name(data["dataset"][key])
    data["augment"]["lexicon"] = public_name(data["augment"]["lexicon"])
    return data


def metrics_rows(metrics: dict[str, Any]) -> list[str]:
    """Markdown table rows "| split | metric | value |" for the scalar metrics of each split."""
    return [f"| {split} | {key} | {value:.4f} |" for split in ("validation", "test")
            for key, value in (metrics.get(split) or {}).items() if isinstance(value, float)]


# The Hub's task names, for the structured results (model-index) a Hub card carries.
HUB_TASKS = {"sequence_classification": "text-classification", "token_classification": "token-classification",
             "question_answering": "question-answering",
             "masked_lm": "fill-mask", "causal_lm": "text-generation", "instruction": "text-generation",
             "preference": "text-generation"}


def eval_results(config: Any, metrics: dict[str, Any]) -> list[Any]:
    """The run's scores as the Hub's structured evaluation results, shown on the model's page."""
    from huggingface_hub import EvalResult

    entry = CATALOGUE.get(config.dataset.name or "")
    name = config.dataset.name or public_name(config.dataset.train_file)
    return [EvalResult(task_type=HUB_TASKS[config.recipe], dataset_type=entry.hub_path if entry else name,
                       dataset_name=name, dataset_config=entry.hub_config if entry else None, dataset_split=split,
                       metric_type=key, metric_value=value)
            for split in ("validation", "test") for key, value in (metrics.get(split) or {}).items()
            if isinstance(value, float)]


def model_card(run_dir: Path, recipe: Recipe, repo_id: str | None = None, base_id: str | None = None,
               merged: bool = False) -> str:
    """The card for a run folder; with ``repo_id`` the Hub's (loading from the repo, ``base_id`` as
    the base model), else the run folder's own."""
    config = run_folder.load_run_config(run_dir)
    metrics = run_folder.load_metrics(run_dir)
    params = metrics.get("parameters", {})
    adapter = run_folder.is_adapter_run(run_dir) and not merged
    base = base_id or public_name(config.model)
    where = repo_id or public_name(str(run_dir))
    auto = recipe.model_class(config).__name__
    setfit = is_setfit_run(run_dir)
    if setfit:
        head = f'hf_hub_download("{where}", "{HEAD_FILE}")' if repo_id else f'"{where}/{HEAD_FILE}"'
        usage = ("from safetensors.torch import load_file\nfrom sentence_transformers import SentenceTransformer\n"
                 + ("from huggingface_hub import hf_hub_download\n" if repo_id else "") +
                 f"encoder = SentenceTransformer(\"{where}\")  # the fine-tuned sentence encoder\n"
                 f"head = load_file({head})  # the classifier: softmax(embedding @ weight.T + bias)\n"
                 f"embeddings = encoder.encode([\"A true cinematic achievement!\"], convert_to_tensor=True)\n"
                 f"probabilities = (embeddings @ head[\"weight\"].T + head[\"bias\"]).softmax(-1)")
    elif not adapter:
        usage = f"from transformers import AutoTokenizer, {auto}\nmodel = {auto}.from_pretrained(\"{where}\")"
    elif auto in PEFT_AUTO:
        usage = (f"from peft import {PEFT_AUTO[auto]}\nfrom transformers import AutoTokenizer\n"
                 f"model = {PEFT_AUTO[auto]}.from_pretrained(\"{where}\")  # loads {base}, adds the adapter")
    else:
        usage = (f"from peft import PeftModel\nfrom transformers import AutoTokenizer, {auto}\n"
                 f"model = PeftModel.from_pretrained({auto}.from_pretrained(\"{base}\"), \"{where}\")")
    if not setfit:
        usage += f"\ntokenizer = AutoTokenizer.from_pretrained(\"{where}\")"
    if recipe.chat:  # the tokenizer carries the chat template the run trained with
        usage += ('\nmessages = [{"role": "user", "content": "Name three primary colours."}]\n'
                  'inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", '
                  'return_dict=True)\n'
                  'reply = model.generate(**inputs, max_new_tokens=128)\n'
                  'print(tokenizer.decode(reply[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))')
    data = config.dataset.name or public_name(config.dataset.train_file)
    figure = "![confusion matrix](confusion_matrix.png)\n" if (run_dir / "confusion_matrix.png").exists() else ""
    command = "" if repo_id else f"```\n{recipe.usage.format(run=where)}\n```\n"
    as_trained = "merged into the base model" if merged else "as trained"
    library = "peft" if adapter else "sentence-transformers" if setfit else "transformers"
    front = ModelCardData(base_model=base, library_name=library,
                          tags=[config.recipe, config.method, "finetune-pipeline"], model_name=repo_id,
                          eval_results=eval_results(config, metrics) if repo_id else None)
    return f"""---
{front.to_yaml().strip()}
---
# {repo_id or run_dir.name}

A `{config.recipe}` model: base `{base}`, method `{config.method}` ({as_trained}), data `{data}`.
Trainable parameters in training: {params.get('trainable', 0):,} of {params.get('total', 0):,} ({params.get('percent', 0):.2f}%).

## Metrics
| split | metric | value |
|---|---|---|
{chr(10).join(metrics_rows(metrics))}

{figure}
## Use
{command}```python
{usage}
```

## Training config
```yaml
{yaml.safe_dump(public_config(config), sort_keys=False)}```
"""


def write_model_card(run_dir: Path, recipe: Recipe) -> None:
    (run_dir / "README.md").write_text(model_card(run_dir, recipe), encoding="utf-8")
