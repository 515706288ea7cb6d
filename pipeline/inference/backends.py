"""Inference backends: what turns a padded batch of token ids into logits.

    torch        the run's model in PyTorch: CPU or GPU, fp32, bf16 or int8 (dynamic quantization);
                 the only one that switches several LoRA adapters on one base
    onnxruntime  the run exported to ONNX (``pipeline export --format onnx``), ONNX Runtime's CPU
                 provider: fp32, or int8 matrix multiplies with a scale per token (``onnx_int8``)
    openvino     the run exported to OpenVINO IR, OpenVINO's CPU plugin: fp32; bf16 where the CPU
                 has bf16 units (AMX or AVX512-BF16); int8 weights (NNCF), whose activations the
                 plugin quantizes per group of 32 as it runs

Every backend takes and returns numpy arrays, so the engines in ``inference`` batch, sort and
restore order the same way whichever runs the model. A run folder is converted once and the
conversion cached in ``RUN/exports/``. ``auto`` chooses by the measurements in ``bench/RESULTS.md``:
see ``resolve_backend``.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Protocol

import numpy as np

from pipeline.errors import PipelineError, require
from pipeline.inference.onnx_int8 import quantize_per_token, weight_steps_exact_here
from pipeline.log import log
from pipeline.models.pretrained import auto_model_class
from pipeline.runs import run_folder
from pipeline.runs.export import (
    GRAPH_FILES,
    ConversionError,
    conversion_failed,
    quiet,
    runtime_graph,
)
from pipeline.runs.loading import (
    GRAPH_TASKS,
    LoadOptions,
    device_type,
    load_run_model,
    load_run_tokenizer,
    resolve_device,
    resolve_precision,
)

BACKENDS = ("torch", "onnxruntime", "openvino")
BACKEND_PRECISIONS = {"torch": ("fp32", "bf16", "int8"), "onnxruntime": ("fp32", "int8"),
                      "openvino": ("fp32", "bf16", "int8")}
EXPORT_FORMAT = {"onnxruntime": "onnx", "openvino": "openvino"}


class Runner(Protocol):
    """Forward passes: tokenizer arrays in, float32 logits out. ``run_batches`` may run several
    batches at once (the runtimes do, one stream per pair of cores' worth of threads) and yields
    their logits in order."""
    backend: str
    precision: str

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray: ...

    def run_batches(self, batches: list[dict[str, np.ndarray]]) -> Iterator[np.ndarray]: ...


@dataclass
class Engine:
    """What an inference engine needs from a run, whichever backend runs it."""
    runner: Runner
    tokenizer: Any
    label_names: list[str]
    max_length: int
    adapters: list[str]

    def batch_size(self, on_cpu: int) -> int:
        """A GPU fills up with four times the CPU's batch; past that, bf16 kernels gain little."""
        on_gpu = isinstance(self.runner, TorchRunner) and self.runner.device.type != "cpu"
        return on_cpu * 4 if on_gpu else on_cpu


class TorchRunner:
    backend = "torch"

    def __init__(self, model: Any, precision: str | None = None):
        import torch

        parameter = next(model.parameters())
        self.model, self.device = model, parameter.device
        self.precision = precision or ("bf16" if parameter.dtype == torch.bfloat16 else "fp32")

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            inputs = {name: torch.from_numpy(array).to(self.device) for name, array in batch.items()}
            return self.model(**inputs).logits.float().cpu().numpy()

    def run_batches(self, batches: list[dict[str, np.ndarray]]) -> Iterator[np.ndarray]:
        return map(self, batches)

    def set_adapter(self, name: str) -> None:
        self.model.set_adapter(name)


class OnnxRuntimeRunner:
    backend = "onnxruntime"

    def __init__(self, folder: Path, precision: str = "fp32"):
        ort = require("onnxruntime")
        path = folder / GRAPH_FILES["onnx"]
        if precision == "int8":
            path = _quantized(path)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Two batches at a time, each on half the threads, keep every core busy through the small
        # operators between matrix multiplies (measured: bench/inference_throughput.py).
        self.streams = min(2, _threads())
        options.intra_op_num_threads = max(1, _threads() // self.streams)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.precision = precision

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, {name: batch[name] for name in self.inputs})[0].astype(np.float32, copy=False)

    def run_batches(self, batches: list[dict[str, np.ndarray]]) -> Iterator[np.ndarray]:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.streams) as pool:  # ONNX Runtime sessions take concurrent calls
            yield from pool.map(self, batches)


class OpenVinoRunner:
    backend = "openvino"

    def __init__(self, folder: Path, precision: str = "fp32"):
        openvino = require("openvino")
        if precision == "bf16" and not openvino_has_bf16():
            raise PipelineError("--backend openvino --precision bf16 needs a CPU with bf16 units (AMX or "
                                "AVX512-BF16), which this one lacks; use --precision fp32")
        # The throughput hint runs several batches at once in streams that split the cores.
        config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                  "PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_NUM_THREADS": _threads()}
        path = folder / GRAPH_FILES["openvino"]
        if precision == "int8":
            path = _compressed(path)
            config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = 32  # the plugin's default, pinned: it sets the agreement
        self.model = openvino.Core().compile_model(str(path), "CPU", config)
        self.requests = openvino.AsyncInferQueue(self.model, self.model.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.inputs = [port.any_name for port in self.model.inputs]
        self.precision = precision

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return next(self.run_batches([batch]))

    def run_batches(self, batches: list[dict[str, np.ndarray]]) -> Iterator[np.ndarray]:
        results: list[np.ndarray | None] = [None] * len(batches)

        def done(request: Any, index: int) -> None:
            results[index] = np.array(request.get_output_tensor(0).data, dtype=np.float32)

        self.requests.set_callback(done)
        for index, batch in enumerate(batches):
            self.requests.start_async({name: batch[name] for name in self.inputs}, index)
        self.requests.wait_all()
        return iter(results)  # type: ignore[arg-type]


def resolve_backend(options: LoadOptions) -> tuple[str, str]:
    """The backend and precision a command runs with. ``auto``: torch on a GPU; on the CPU the
    runtime that measured fastest at the asked precision (``bench/inference_throughput.py``):
    OpenVINO (ONNX Runtime when it alone is installed), torch when neither is: the default never
    asks a user to install something."""
    import importlib.util

    name, kind = options.backend, device_type(options.device)
    if name == "auto":
        wanted = options.precision or "fp32"
        # A runtime counts when it and its converter (and for OpenVINO int8, NNCF) are installed.
        needs = {"openvino": ["openvino"] + (["nncf"] if wanted == "int8" else []),
                 "onnxruntime": ["onnxruntime", "onnx", "onnxscript"]}
        installed = [b for b in ("openvino", "onnxruntime") if all(importlib.util.find_spec(m) for m in needs[b])]
        candidates = [b for b in installed if wanted in BACKEND_PRECISIONS[b]
                      and not (b == "openvino" and wanted == "bf16" and not openvino_has_bf16())]
        if kind != "cpu" or not candidates:
            name = "torch"
        else:
            name = candidates[0]
    if name not in BACKENDS:
        raise PipelineError(f"--backend {name!r} is unknown; choose one of {', '.join(BACKENDS)} or auto")
    if name == "torch":
        return name, resolve_precision(options.precision, resolve_device(options.device))
    if kind != "cpu":
        where = kind if options.device == "auto" else options.device
        raise PipelineError(f"--backend {name} runs on the CPU; use --backend torch on {where}")
    precision = options.precision or "fp32"
    if precision not in BACKEND_PRECISIONS[name]:
        others = [b for b in BACKENDS if precision in BACKEND_PRECISIONS[b] and b != name]
        raise PipelineError(f"--backend {name} runs {' or '.join(BACKEND_PRECISIONS[name])}, not {precision}; "
                            f"for {precision} use --backend {' or '.join(others)}")
    return name, precision


def load_engine(run_dir: str | Path, auto_class: str, adapters: dict[str, str | Path] | None = None,
                options: LoadOptions = LoadOptions()) -> Engine:
    """A finished run ready to predict with the backend ``options`` names; ``auto_class`` names the
    transformers Auto class the run loads with on torch. Under ``auto`` a run a runtime cannot hold
    (extra adapters, prompt or prefix tuning, a graph its converter fails on) runs on torch. A
    runtime backend with a converted graph starts without importing torch."""
    run_folder.check_run_files(run_dir)  # a damaged file is named before any conversion reads it
    backend, precision = resolve_backend(options)
    on_torch = functools.partial(resolve_backend, replace(options, backend="torch"))  # auto's fallback
    if backend != "torch" and options.backend == "auto" and _torch_only(run_dir, auto_class, adapters, backend):
        backend, precision = on_torch()
    if backend != "torch":
        if adapters:
            raise PipelineError(f"--adapter switches LoRA adapters on --backend torch only; run each adapter's "
                                f"run folder on its own with --backend {backend}")
        require(backend)  # before converting anything
        try:
            folder = runtime_graph(run_dir, EXPORT_FORMAT[backend], auto_class, options)
        except ConversionError as exc:
            if options.backend != "auto":
                raise
            log.warning(f"{exc.failure}; running on torch")
            backend, precision = on_torch()
    if backend == "torch":
        # both import torch: only this path needs it
        from pipeline.models.first_token import first_token_last_layer
        from pipeline.models.span_logits import span_logits

        loaded = load_run_model(run_dir, auto_model_class(auto_class), adapters, options)
        model = span_logits(loaded.model if loaded.adapters else first_token_last_layer(loaded.model))
        return Engine(TorchRunner(model, precision), loaded.tokenizer, loaded.label_names,
                      loaded.config.dataset.max_length, loaded.adapters)
    config = run_folder.load_run_config(run_dir)
    runner = (OnnxRuntimeRunner if backend == "onnxruntime" else OpenVinoRunner)(folder, precision)
    tokenizer = load_run_tokenizer(folder, options.trust_remote_code, runner.inputs)  # the one saved beside the graph
    return Engine(runner, tokenizer, run_folder.load_labels(run_dir), config.dataset.max_length, [])


def _torch_only(run_dir: str | Path, auto_class: str, adapters: dict[str, str | Path] | None, backend: str) -> bool:
    """Whether ``auto`` keeps a run on torch without trying a runtime: the run has extra adapters,
    virtual tokens (prompt, prefix), is no classifier, or its conversion failed before."""
    if adapters or auto_class not in GRAPH_TASKS:
        return True
    return run_folder.load_run_config(run_dir).method in ("prompt", "prefix") or \
        conversion_failed(run_dir, EXPORT_FORMAT[backend])


@functools.cache
def openvino_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin runs bf16 here (AMX or AVX512-BF16 units)."""
    import openvino

    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _threads() -> int:
    """The threads torch would use: the cores this process may run on, or OMP_NUM_THREADS."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return int(os.environ["OMP_NUM_THREADS"])
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _quantized(path: Path) -> Path:
    """The graph with int8 matrix multiplies, a scale per token and per weight column
    (``onnx_int8``), made once beside the graph for the weight range this CPU multiplies exactly
    (a graph made on one kind of CPU is not read on another)."""
    require("onnx")  # the graph rewrite's library, in the same extra as the runtime
    steps = weight_steps_exact_here()
    out = path.with_name("model_int8_per_token.onnx" if steps == 127 else f"model_int8_per_token_{steps}.onnx")
    if not out.exists() or out.stat().st_mtime_ns < path.stat().st_mtime_ns:
        staged = out.with_name(f".{out.name}.{os.getpid()}")  # renamed into place: never read half-written
        try:
            quantize_per_token(path, staged, steps)
            os.replace(staged, out)
        finally:
            staged.unlink(missing_ok=True)
    return out


def _compressed(path: Path) -> Path:
    """The OpenVINO graph with int8 weights (NNCF's weight compression: a scale and zero point per
    output channel; no calibration data), made once beside the graph. At run time the CPU plugin
    quantizes the activations per group of 32 values, so the matrix multiplies run in int8; on SST-2
    this keeps 99.2-99.3% of fp32's labels where ONNX Runtime's dynamic int8 keeps 97%."""

    nncf = require("nncf", "openvino")
    import openvino

    out = path.with_name("openvino_model_int8.xml")
    if not out.exists() or out.stat().st_mtime_ns < path.stat().st_mtime_ns:
        import contextlib
        import io

        # NNCF prints a table and a progress bar on stdout, where predict writes its predictions.
        with quiet("nncf"), contextlib.redirect_stdout(io.StringIO()):
            model = nncf.compress_weights(openvino.Core().read_model(str(path)), mode=nncf.CompressWeightsMode.INT8_ASYM)
        openvino.save_model(model, str(out), compress_to_fp16=False)
    return out
