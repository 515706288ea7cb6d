"""The run folder: what a run leaves behind, and how to read it back.

    run_config.yaml        the resolved config (every default filled in)
    labels.json            label names in id order
    adapter_config.json +  adapter_model.safetensors   (LoRA)  |  config.json + model.safetensors (full, head)
    tokenizer files
    metrics.json           final metrics per split, parameter counts, timing
    metrics.jsonl          every training/evaluation log record (and metrics.csv, the same as a table)
    confusion_matrix.{txt,png}   (classification) | entity_confusion.txt (NER)
    training_curves.png    training loss and the validation metric per step
    README.md              a model card
    checkpoints/           Trainer checkpoints (resumable)
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from pipeline.config import RunConfig, save_config, validate
from pipeline.errors import PipelineError

CONFIG_FILE = "run_config.yaml"
LABELS_FILE = "labels.json"
METRICS_FILE = "metrics.json"
LOG_FILE = "metrics.jsonl"
CHECKPOINTS = "checkpoints"


def check_output_dir(config: RunConfig, overwrite: bool) -> Path:
    """Refuse to replace another run unless asked, and never touch a folder of other files.
    Reads only, so every process of a distributed run can check before the main one writes."""
    run_dir = Path(config.output_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise PipelineError(f"output_dir {run_dir} is a file; choose a folder path")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not (run_dir / CONFIG_FILE).exists():
            raise PipelineError(f"output_dir {run_dir} holds files that are not a pipeline run; "
                                f"choose a new or empty folder")
        if not overwrite:
            raise PipelineError(f"output_dir {run_dir} already holds a run; pass --overwrite to replace it "
                                f"or set output_dir=... to keep both")
    return run_dir


def prepare(config: RunConfig, overwrite: bool) -> Path:
    """Create the run folder (after ``check_output_dir``) and save the resolved config in it."""
    run_dir = check_output_dir(config, overwrite)
    if run_dir.is_dir() and any(run_dir.iterdir()):
        shutil.rmtree(run_dir)  # a previous run, replaced on request (--overwrite)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise PipelineError(f"cannot write to output_dir {run_dir} ({exc.strerror}); choose a writable folder") from None
    save_config(config, run_dir / CONFIG_FILE)
    return run_dir


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints with everything a resume needs, oldest first. Trainer writes trainer_state.json
    after the weights, optimizer and scheduler, so a checkpoint cut short by a kill lacks it."""
    folder = run_dir / CHECKPOINTS
    found = []
    for path in folder.glob("checkpoint-*") if folder.is_dir() else []:
        step = path.name.rpartition("-")[2]
        weights = any((path / name).exists() for name in ("model.safetensors", "adapter_model.safetensors"))
        needed = ("trainer_state.json", "optimizer.pt", "scheduler.pt")
        if step.isdigit() and weights and all((path / name).exists() for name in needed):
            found.append((int(step), path))
    return [path for _, path in sorted(found)]


def resume_checkpoint(config: RunConfig, which: str) -> tuple[Path, Path]:
    """The run folder and checkpoint to resume: ``latest`` or a checkpoint path."""
    run_dir = Path(config.output_dir)
    if not (run_dir / CONFIG_FILE).exists():
        raise PipelineError(f"nothing to resume: {run_dir} holds no run; train without --resume first")
    if which == "latest":
        checkpoints = complete_checkpoints(run_dir)
        if not checkpoints:
            raise PipelineError(f"no complete checkpoint in {run_dir / CHECKPOINTS}; train again with --overwrite")
        return run_dir, checkpoints[-1]
    path = Path(which)
    if path.resolve() not in [p.resolve() for p in complete_checkpoints(run_dir)]:
        raise PipelineError(f"{path} is not a complete checkpoint of this run; use --resume latest "
                            f"or one of {run_dir / CHECKPOINTS}/checkpoint-N")
    return run_dir, path


def check_same_config(config: RunConfig, run_dir: Path) -> None:
    saved = load_run_config(run_dir).to_dict()
    given = config.to_dict()
    for section, value in given.items():
        if saved.get(section) != value:
            raise PipelineError(f"the config differs from the one {run_dir} was trained with (at {section}); "
                                f"resume with the same config and overrides")


def load_run_config(run_dir: str | Path) -> RunConfig:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PipelineError(f"run folder {run_dir} does not exist; give the output_dir of a finished run")
    path = run_dir / CONFIG_FILE
    if not path.exists():
        raise PipelineError(f"{run_dir} is not a run folder (no {CONFIG_FILE}); give the output_dir of a run")
    from pipeline.config import load_yaml

    return validate(load_yaml(path))


def write_csv_log(run_dir: Path) -> None:
    """metrics.csv: the JSON-lines log as one table (a column per key), for spreadsheets."""
    import csv

    path = run_dir / LOG_FILE
    if not path.exists():
        return
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    columns = list(dict.fromkeys(key for record in records for key in record))
    with open(run_dir / "metrics.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(records)


def save_labels(run_dir: Path, label_names: list[str]) -> None:
    (run_dir / LABELS_FILE).write_text(json.dumps(label_names, indent=1), encoding="utf-8")


def load_labels(run_dir: str | Path) -> list[str]:
    path = Path(run_dir) / LABELS_FILE
    if not path.exists():
        raise PipelineError(f"run folder {run_dir} has no {LABELS_FILE}; the run did not finish, "
                            f"retrain it or resume from {Path(run_dir) / CHECKPOINTS}")
    return json.loads(path.read_text(encoding="utf-8"))


def is_adapter_run(run_dir: str | Path) -> bool:
    return (Path(run_dir) / "adapter_config.json").exists()


def save_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    path = run_dir / METRICS_FILE
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(metrics)
    path.write_text(json.dumps(current, indent=2), encoding="utf-8")


def load_metrics(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / METRICS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def metrics_rows(metrics: dict[str, Any]) -> list[str]:
    """Markdown table rows "| split | metric | value |" for the scalar metrics of each split."""
    return [f"| {split} | {key} | {value:.4f} |" for split in ("validation", "test")
            for key, value in (metrics.get(split) or {}).items() if isinstance(value, float)]


def write_model_card(run_dir: Path, config: RunConfig, metrics: dict[str, Any], auto_class: str,
                     cli_example: str) -> None:
    """README.md: what was trained, on what, how well, and how to load it."""
    dataset = config.dataset.name or config.dataset.train_file
    params = metrics.get("parameters", {})
    rows = metrics_rows(metrics)
    if config.method == "lora":
        usage = (f"from peft import AutoPeft{auto_class[4:]}\n"
                 f"model = AutoPeft{auto_class[4:]}.from_pretrained(\"{run_dir}\")")
    else:
        usage = (f"from transformers import {auto_class}\n"
                 f"model = {auto_class}.from_pretrained(\"{run_dir}\")")
    figure = "![confusion matrix](confusion_matrix.png)\n" if (run_dir / "confusion_matrix.png").exists() else ""
    config_text = (run_dir / CONFIG_FILE).read_text() if (run_dir / CONFIG_FILE).exists() else ""
    card = f"""---
library_name: {'peft' if config.method == 'lora' else 'transformers'}
tags: [{config.recipe}, {config.method}]
---
# {run_dir.name}

A `{config.recipe}` model: base `{config.model}`, method `{config.method}`, data `{dataset}`.
Trainable parameters: {params.get('trainable', 0):,} of {params.get('total', 0):,} ({params.get('percent', 0):.2f}%).

| split | metric | value |
|---|---|---|
{chr(10).join(rows)}

{figure}
## Use
```
{cli_example.format(run=run_dir)}
```
```python
{usage}
```

## Training config
```yaml
{config_text}```
"""
    (run_dir / "README.md").write_text(card, encoding="utf-8")
