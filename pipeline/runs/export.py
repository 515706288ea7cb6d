"""Exporting a finished run: as a plain transformers model (a LoRA adapter merged into its base), as
an ONNX graph for ONNX Runtime, or as an OpenVINO IR. The two runtime formats are converted by the
runtimes' own tools (``torch.onnx.export``, ``openvino.convert_model``) and carry what a user needs
to run them without this package: the tokenizer, ``labels.json`` and the model's ``config.json``.

    model.onnx | openvino_model.xml + .bin    the graph: inputs are the tokenizer's, output ``logits``
    export.json                               format, task, inputs, max_length and the source run
"""
from __future__ import annotations

import inspect
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

from pipeline.runs import run_folder
from pipeline.errors import PipelineError, require
from pipeline.log import log
from pipeline.models.pretrained import auto_model_class
from pipeline.runs.loading import GRAPH_TASKS, LoadOptions, check_graph_task, load_run_model

FORMATS = ("transformers", "onnx", "openvino")
GRAPH_FILES = {"onnx": "model.onnx", "openvino": "openvino_model.xml"}
EXPORT_FILE = "export.json"
EXPORT_FORMAT_FAILED = "{fmt}.failed.json"  # beside RUN/exports/FMT: a conversion that failed
CPU_FP32 = LoadOptions(device="cpu", precision="fp32")


class ConversionError(PipelineError):
    """A runtime's converter could not handle the model (``--backend auto`` then runs torch)."""

    def __init__(self, fmt: str, model_name: str, reason: str):
        self.failure = f"{fmt} conversion of this {model_name} failed ({reason})"
        super().__init__(f"{self.failure}; use --backend torch, or --format transformers")


def export_run(run_dir: str | Path, out_dir: str | Path, model_class: Any, fmt: str = "transformers",
               options: LoadOptions = CPU_FP32) -> Path:
    """Export a run in ``fmt`` into the new folder ``out_dir``; see the module docstring."""
    if fmt not in FORMATS:
        raise PipelineError(f"--format {fmt!r} is unknown; choose one of {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise PipelineError(f"export folder {out_dir} is not empty; choose a new folder")
    if fmt != "transformers":
        check_graph_task(model_class, f"--format {fmt}")
        require("onnxscript" if fmt == "onnx" else "openvino", "onnx" if fmt == "onnx" else "openvino")
    options = LoadOptions(device="cpu", precision="fp32", trust_remote_code=options.trust_remote_code,
                          allow_pickle=options.allow_pickle)
    loaded = load_run_model(run_dir, model_class, options=options)  # merges a single adapter
    if loaded.adapters:
        raise PipelineError(f"run {run_dir} uses {loaded.config.method} tuning, whose virtual tokens "
                            f"are inputs, not weights: it cannot merge into a plain model; keep the adapter")
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        if fmt == "transformers":
            loaded.model.save_pretrained(out_dir)
        else:
            inputs = _write_graph(loaded, out_dir, fmt)
            description = {"format": fmt, "task": GRAPH_TASKS[model_class.__name__],
                           "inputs": inputs, "output": "logits",
                           "max_length": loaded.config.dataset.max_length, "source": source_fingerprint(run_dir)}
            (out_dir / EXPORT_FILE).write_text(json.dumps(description, indent=1), encoding="utf-8")
            loaded.model.config.save_pretrained(out_dir)
    except PipelineError:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    loaded.tokenizer.save_pretrained(out_dir)
    if loaded.label_names:
        run_folder.save_labels(out_dir, loaded.label_names)
    return out_dir


def _write_graph(loaded: Any, out_dir: Path, fmt: str) -> list[str]:
    """Trace the merged model (with the [CLS]-only last layer where it applies) on a padded batch of
    two texts, batch and sequence length left dynamic, and save it in the runtime's format; return
    the graph's input names."""
    import torch

    # both import torch: converting needs it, reading a converted graph does not
    from pipeline.models.first_token import first_token_last_layer
    from pipeline.models.span_logits import span_logits

    model = span_logits(first_token_last_layer(loaded.model.float().eval()))  # QA: start and end as one output
    # The graph's inputs: what the tokenizer gives and the model's forward names (a BERT WordPiece
    # tokenizer gives token_type_ids, which DistilBERT's forward would only swallow in **kwargs).
    accepted = getattr(model, "input_names", None) or inspect.signature(model.forward).parameters
    example = loaded.tokenizer(["a short text", "a somewhat longer text to trace the padding with"],
                               padding=True, return_tensors="pt")
    example = {name: example[name] for name in loaded.tokenizer.model_input_names
               if name in example and name in accepted}
    try:
        with warnings.catch_warnings(), quiet("torch.onnx", "torch.export", "torch._dynamo"):
            warnings.simplefilter("ignore")
            if fmt == "onnx":
                batch, length = torch.export.Dim("batch"), torch.export.Dim("sequence")
                program = torch.onnx.export(model, (), kwargs=example, input_names=list(example),
                                            output_names=["logits"], dynamo=True, verbose=False,
                                            dynamic_shapes={name: {0: batch, 1: length} for name in example})
                # One self-contained file below protobuf's 2 GB limit, weights beside it above.
                large = sum(p.numel() * 4 for p in model.parameters()) > 1.8e9
                program.save(str(out_dir / GRAPH_FILES["onnx"]), external_data=large)
            else:
                import openvino

                graph = openvino.convert_model(model, example_input=example)  # inputs named by the dict's keys
                graph.outputs[0].get_tensor().set_names({"logits"})
                openvino.save_model(graph, str(out_dir / GRAPH_FILES["openvino"]), compress_to_fp16=False)
        return list(example)
    except Exception as exc:  # a converter that cannot handle this architecture
        while exc.__cause__ is not None:  # torch.onnx wraps the reason in "step 1/3 failed"
            exc = exc.__cause__
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # no terminal colour codes
        first = text.splitlines()[0][:200] if text else type(exc).__name__
        raise ConversionError(fmt, type(loaded.model).__name__, first) from None


class quiet:
    """Lower the named loggers to errors while the converters run (they log per operator)."""

    def __init__(self, *names: str):
        self.loggers = [logging.getLogger(name) for name in names]

    def __enter__(self) -> None:
        self.levels = [lg.level for lg in self.loggers]
        for lg in self.loggers:
            lg.setLevel(logging.ERROR)

    def __exit__(self, *exc: Any) -> None:
        for lg, level in zip(self.loggers, self.levels):
            lg.setLevel(level)


def source_fingerprint(run_dir: str | Path) -> dict[str, list[int]]:
    """Size and modification time of the run's weights and configs: an export made from them is
    current while these are unchanged."""
    run_dir = Path(run_dir)
    names = ("config.json", "model.safetensors", "adapter_config.json", "adapter_model.safetensors", run_folder.CONFIG_FILE)
    return {name: [(run_dir / name).stat().st_size, (run_dir / name).stat().st_mtime_ns]
            for name in names if (run_dir / name).exists()}


def conversion_failed(run_dir: str | Path, fmt: str) -> bool:
    """Whether converting the run's current weights to ``fmt`` failed before (see ``runtime_graph``)."""
    failed = Path(run_dir) / "exports" / EXPORT_FORMAT_FAILED.format(fmt=fmt)
    try:
        return json.loads(failed.read_text(encoding="utf-8")).get("source") == source_fingerprint(run_dir)
    except (OSError, ValueError):
        return False


def runtime_graph(run_dir: str | Path, fmt: str, auto_class: str, options: LoadOptions = CPU_FP32) -> Path:
    """A folder holding the run in ``fmt`` for a runtime backend: a conversion cached in
    ``RUN/exports/FMT`` (made again when the run's weights change; in a temporary folder when the run
    folder is read-only). The conversion is written beside the cache and renamed into place, so
    processes starting together never read half a graph; a failed one is recorded in
    ``RUN/exports/FMT.failed.json`` for ``--backend auto`` to skip."""
    with _CONVERTING:  # tracing a model is not thread-safe: one conversion at a time in a process
        return _runtime_graph(Path(run_dir), fmt, auto_class, options)


_CONVERTING = threading.Lock()


def _runtime_graph(run_dir: Path, fmt: str, auto_class: str, options: LoadOptions) -> Path:
    cache = run_dir / "exports" / fmt
    description = cache / EXPORT_FILE
    if description.exists():
        if json.loads(description.read_text(encoding="utf-8")).get("source") == source_fingerprint(run_dir):
            return cache
        shutil.rmtree(cache, ignore_errors=True)
    try:
        cache.parent.mkdir(exist_ok=True)
        run_folder.record_outputs(run_dir, ["exports"])
        staging = cache.parent / f".{fmt}-{os.getpid()}-{threading.get_ident()}"  # mkdir keeps the umask
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
    except OSError:
        log.warning(f"run folder {run_dir} is read-only: converting to {fmt} for this process only")
        return export_run(run_dir, Path(tempfile.mkdtemp(prefix=f"pipeline-{fmt}-")) / fmt, auto_model_class(auto_class), fmt, options)
    failed = cache.parent / EXPORT_FORMAT_FAILED.format(fmt=fmt)
    try:
        export_run(run_dir, staging, auto_model_class(auto_class), fmt, options)
    except PipelineError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, ConversionError):
            failed.write_text(json.dumps({"error": str(exc), "source": source_fingerprint(run_dir)}), encoding="utf-8")
        raise
    failed.unlink(missing_ok=True)
    try:
        staging.rename(cache)
    except OSError:  # another process put its conversion in place first
        shutil.rmtree(staging, ignore_errors=True)
    return cache
