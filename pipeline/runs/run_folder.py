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
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any

from pipeline.config.loader import load_yaml, save_config, validate
from pipeline.errors import PipelineError
from pipeline.log import log
from pipeline.config.schema import RunConfig

CONFIG_FILE = "run_config.yaml"
LABELS_FILE = "labels.json"
METRICS_FILE = "metrics.json"
LOG_FILE = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
MANIFEST = ".pipeline-files.json"  # what the pipeline wrote here: all that --overwrite may remove
# Written while training runs, before the end-of-run manifest exists: a crashed run's leftovers are ours too.
WRITTEN_DURING_TRAINING = (CONFIG_FILE, LOG_FILE, METRICS_FILE, CHECKPOINTS, "tensorboard")
# What runs wrote before the manifest existed (a run folder from an older version).
LEGACY_OUTPUTS = re.compile(r"labels\.json|README\.md|metrics\.csv|training_curves\.png|(adapter_)?config\.json|"
                            r"(adapter_)?model\.safetensors|tokenizer(_config)?\.json|special_tokens_map\.json|"
                            r"vocab\.(txt|json)|merges\.txt|generation_config\.json|"
                            r"(confusion_matrix|entity_confusion)(_\w+)?\.(txt|png)")


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
    """Create the run folder (after ``check_output_dir``) and save the resolved config in it. With
    ``overwrite``, a previous run's files go, and only those: whatever else the folder holds stays."""
    run_dir = check_output_dir(config, overwrite)
    if run_dir.is_dir():
        for name in _manifest(run_dir)["files"]:
            path = run_dir / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        (run_dir / MANIFEST).unlink(missing_ok=True)
        kept = sorted(p.name for p in run_dir.iterdir())
        if kept:
            log.info(f"run folder: kept {len(kept)} file(s) the pipeline did not write: {', '.join(kept[:5])}")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise PipelineError(f"cannot write to output_dir {run_dir} ({exc.strerror}); choose a writable folder") from None
    foreign = sorted(p.name for p in run_dir.iterdir())  # files of the user's, kept by --overwrite
    _write_manifest(run_dir, {"files": list(WRITTEN_DURING_TRAINING), "foreign": foreign})
    save_run_config(config, run_dir)
    return run_dir


def save_run_config(config: RunConfig, run_dir: Path) -> None:
    save_config(config, run_dir / CONFIG_FILE)


def record_outputs(run_dir: Path, names: list[str] | None = None) -> None:
    """Add ``names`` to the manifest; without names (the end of training), everything in the folder
    but the files that were there before the run."""
    manifest = _manifest(run_dir)
    if names is None:
        names = [p.name for p in run_dir.iterdir() if p.name != MANIFEST and p.name not in manifest["foreign"]]
    if set(names) <= set(manifest["files"]):
        return  # commands reading a run (predict caching its conversion) leave the file alone
    manifest["files"] = sorted(set(names) | set(manifest["files"]))
    _write_manifest(run_dir, manifest)


def _manifest(run_dir: Path) -> dict[str, list[str]]:
    """The manifest, or for a run folder from before manifests, the names a run writes."""
    path = run_dir / MANIFEST
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
        # names only, never a path out of the folder, whatever the file says
        return {key: [n for n in data.get(key, []) if n and "/" not in n and n not in (".", "..")]
                for key in ("files", "foreign")}
    return {"files": [p.name for p in run_dir.iterdir() if p.name in WRITTEN_DURING_TRAINING
                      or LEGACY_OUTPUTS.fullmatch(p.name)], "foreign": []}


def _write_manifest(run_dir: Path, manifest: dict[str, list[str]]) -> None:
    """Written beside and renamed into place: a process reading it meanwhile sees the old or the new."""
    staging = run_dir / f"{MANIFEST}.{os.getpid()}.{threading.get_ident()}"
    staging.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    os.replace(staging, run_dir / MANIFEST)


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints with everything a resume needs, oldest first. Trainer writes trainer_state.json
    after the weights, optimizer and scheduler, so a checkpoint cut short by a kill lacks it."""
    folder = run_dir / CHECKPOINTS
    found = []
    for path in folder.glob("checkpoint-*") if folder.is_dir() else []:
        step = path.name.rpartition("-")[2]
        # FSDP writes sharded weights and optimizer state as folders, each finished by its .metadata.
        weights = any((path / name).exists() for name in ("model.safetensors", "adapter_model.safetensors",
                                                           "pytorch_model_fsdp_0/.metadata"))
        optimizer = any((path / name).exists() for name in ("optimizer.pt", "optimizer_0/.metadata"))
        needed = ("trainer_state.json", "scheduler.pt")
        if step.isdigit() and weights and optimizer and all((path / name).exists() for name in needed):
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
        if (run_dir / LABELS_FILE).exists() or any(run_dir.glob("*.safetensors")):
            raise PipelineError(f"{path} is missing from a run folder that holds a model; retrain the run, or copy "
                                f"the run folder again")
        raise PipelineError(f"{run_dir} is not a run folder (no {CONFIG_FILE}); give the output_dir of a run")
    try:
        data = load_yaml(path)
        if "training" not in data:  # written last: a file cut short would validate with defaults in its place
            raise PipelineError("cut short: it ends before its training section")
        return validate(data, finished_run=True)
    except PipelineError as exc:
        raise damaged(path, str(exc).partition("; ")[0]) from None


def damaged(path: Path, problem: str) -> PipelineError:
    """The one-line error for a run folder's file that cannot be read as what the run wrote."""
    return PipelineError(f"{path} is damaged ({problem}); retrain the run (or re-export it), or copy the "
                         f"run folder again")


# The JSON files a run folder may hold, and the type each holds.
RUN_JSON_FILES = {LABELS_FILE: list, "config.json": dict, "adapter_config.json": dict, "tokenizer.json": dict,
                  "tokenizer_config.json": dict, "special_tokens_map.json": dict, "generation_config.json": dict}


# Files that are read together: a run with the first holds the second.
WEIGHT_PARTNERS = [("adapter_model.safetensors", "adapter_config.json"), ("adapter_config.json", "adapter_model.safetensors"),
                   ("model.safetensors", "config.json")]


def check_run_files(run_dir: str | Path) -> None:
    """Refuse, naming the file, a run folder whose weights or JSON files were cut short, emptied or
    replaced by other content: safetensors files must hold the tensors their header lists (read
    from the header and the file size alone), JSON files must parse to what they hold."""
    run_dir = Path(run_dir)
    for present, needed in WEIGHT_PARTNERS:
        if (run_dir / present).exists() and not (run_dir / needed).exists():
            raise PipelineError(f"{run_dir / needed} is missing (the run's {present} needs it); retrain the run, "
                                f"or copy the run folder again")
    for name, kind in RUN_JSON_FILES.items():
        path = run_dir / name
        if not path.exists():
            continue
        try:
            data = json.loads(path.read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise damaged(path, f"not JSON: {str(exc).partition(':')[0]}") from None
        if not isinstance(data, kind):
            raise damaged(path, f"a JSON {type(data).__name__}, not a JSON {'list' if kind is list else 'object'}")
    for path in sorted(run_dir.glob("*.safetensors")):
        problem = safetensors_problem(path)
        if problem:
            raise damaged(path, problem)


def safetensors_problem(path: Path) -> str | None:
    """What is wrong with a safetensors file, from its header and size; None when it is whole. The
    format: an 8-byte little-endian header length, a JSON header mapping each tensor to its byte
    range, then the tensors' bytes, which the ranges must cover exactly."""
    size = path.stat().st_size
    if size < 8:
        return f"{size} bytes, shorter than a safetensors header"
    with open(path, "rb") as f:
        header_length = int.from_bytes(f.read(8), "little")
        if header_length > min(size - 8, 100_000_000):
            return f"its header claims {header_length:,} bytes, the file holds {size:,}: cut short or not safetensors"
        try:
            header = json.loads(f.read(header_length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return "its header is not JSON: not a safetensors file"
    if not isinstance(header, dict):
        return "its header is not a JSON object: not a safetensors file"
    try:
        ends = [int(entry["data_offsets"][1]) for name, entry in header.items() if name != "__metadata__"]
    except (TypeError, KeyError, IndexError, ValueError):
        return "its header lists tensors without byte ranges: not a safetensors file"
    data_bytes = size - 8 - header_length
    if max(ends, default=0) != data_bytes:
        return f"its tensors need {max(ends, default=0):,} bytes after the header, the file holds {data_bytes:,}: cut short"
    return None


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
    try:
        labels = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise damaged(path, "not JSON") from None
    if not isinstance(labels, list) or not all(isinstance(name, str) for name in labels):
        raise damaged(path, "not a JSON list of label names")
    return labels


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


def record_scores(run_dir: str | Path, split: str, scores: dict[str, float]) -> dict[str, float]:
    """Save a split's scores in metrics.json (recorded as the run's file) and log them on one line."""
    save_metrics(Path(run_dir), {split: scores})
    record_outputs(Path(run_dir), [METRICS_FILE])
    log.info(f"{split}: " + " | ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    return scores
