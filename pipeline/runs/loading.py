"""Loading a finished run: devices and precisions, the model (a full model, or the base with the
run's adapter, merged when it is alone), its tokenizer and label map.

A run folder is data: whether code may run from it (``trust_remote_code``) or pickle weights load
(``allow_pickle``) is the caller's flag, never the run's own config.
"""
from __future__ import annotations

import importlib.util
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.runs import run_folder
from pipeline.errors import PipelineError
from pipeline.models.pretrained import grow_embeddings, load_pretrained, load_tokenizer, resolve_model

if TYPE_CHECKING:  # torch is imported where a model runs: the runtime backends start without it
    import torch

PRECISIONS = ("fp32", "bf16", "int8")
# What the ONNX and OpenVINO formats and backends hold: logits per text or per token.
GRAPH_TASKS = {"AutoModelForSequenceClassification": "sequence_classification",
               "AutoModelForTokenClassification": "token_classification",
               "AutoModelForQuestionAnswering": "question_answering"}  # start and end logits as one output
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


@dataclass(frozen=True)
class LoadOptions:
    """How a finished run is loaded. A run folder is data: running code from it (``trust_remote_code``)
    or unpickling its weights (``allow_pickle``) takes the caller's flag, never the run's own config."""
    device: str = "auto"  # auto: a GPU when there is one
    precision: str | None = None  # None: bf16 on a bf16-capable GPU, else fp32
    backend: str = "torch"  # or onnxruntime, openvino, auto (see pipeline.backends)
    trust_remote_code: bool = False
    allow_pickle: bool = False


def device_type(name: str = "auto") -> str:
    """What ``resolve_device(name).type`` is, without importing torch (most of a runtime backend's
    start-up) where torch cannot see a GPU: a CPU-only build on Linux or Windows."""
    if name == "cpu" or (name == "auto" and not _gpu_build()):
        return "cpu"
    return resolve_device(name).type


def _gpu_build() -> bool:
    """Whether the installed torch could see a GPU: built for CUDA, ROCm or XPU (read from its
    version file), or on macOS (MPS)."""
    if "torch" in sys.modules or sys.platform == "darwin":
        return True
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return True
    version = Path(spec.origin).with_name("version.py")
    if not version.exists():
        return True
    return re.search(r"^(cuda|hip|xpu)\b[^=]*=\s*['\"]", version.read_text(), re.MULTILINE) is not None


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` takes a CUDA GPU, else Apple's MPS, else the CPU; a named device must exist."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", name):
        raise PipelineError(f"--device {name!r} is not a device; use {DEVICE_CHOICES}")
    if name.startswith("cuda"):
        count = torch.cuda.device_count()
        index = int(name.partition(":")[2] or 0)
        if index >= count:
            found = f"{count} CUDA GPU(s)" if count else "no CUDA GPU (or a CPU-only torch build)"
            raise PipelineError(f"--device {name}: this machine has {found}; use --device auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise PipelineError("--device mps: Apple's MPS backend is not available here; use --device auto or cpu")
    return torch.device(name)


def check_graph_task(model_class: Any, what: str) -> None:
    """The runtime formats and backends hold classifiers; stop with one line for other runs."""
    if model_class.__name__ not in GRAPH_TASKS:
        raise PipelineError(f"{what} covers sequence- and token-classification and question-answering runs; "
                            f"this run loads as "
                            f"{model_class.__name__}: use the torch backend and the transformers format")


def resolve_precision(precision: str | None, device: torch.device) -> str:
    if precision is None:
        if device.type != "cuda":
            return "fp32"
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if precision not in PRECISIONS:
        raise PipelineError(f"precision {precision!r} is unknown; choose one of {', '.join(PRECISIONS)}")
    if precision == "int8" and device.type != "cpu":
        raise PipelineError(f"--precision int8 (dynamic quantization) runs on the CPU only; use bf16 on {device}")
    return precision


@dataclass
class LoadedRun:
    model: torch.nn.Module
    tokenizer: Any
    label_names: list[str]
    config: Any  # the run's RunConfig
    adapters: list[str]


def load_run_model(run_dir: str | Path, auto_class: Any, adapters: dict[str, str | Path] | None = None,
                   options: LoadOptions = LoadOptions()) -> LoadedRun:
    """Load a finished run: a full model, or the base model plus the run's adapter, on
    ``options.device`` at ``options.precision``.

    ``adapters`` adds more LoRA runs of the same base (name -> run folder); the run's own adapter
    is then called ``default``. With no extra adapters a LoRA adapter is merged into the base,
    which gives the same predictions at plain-model speed.
    """
    from pipeline.models.sentence_classifier import SentenceClassifier, is_setfit_run  # imports torch

    run_dir = Path(run_dir)
    if options.backend not in ("torch", "auto"):  # classifiers reach the runtimes through backends.load_engine
        check_graph_task(auto_class, f"--backend {options.backend}")
    config = run_folder.load_run_config(run_dir)
    run_folder.check_run_files(run_dir)
    label_names = run_folder.load_labels(run_dir)
    resolve_precision(options.precision, resolve_device(options.device))  # fail before loading
    tokenizer = load_run_tokenizer(run_dir, options.trust_remote_code)
    names: list[str] = []
    if run_folder.is_adapter_run(run_dir):
        from peft import PeftModel

        base = load_pretrained(auto_class, config.model, options.trust_remote_code, options.allow_pickle,
                               **label_kwargs(label_names))
        grow_embeddings(base, tokenizer)  # rows the run added (a chat template's tokens) come from its adapter
        _check_adapter_files(run_dir)
        with warnings.catch_warnings():  # AdaLoRA's saved rank pattern names its own tensors, which peft
            warnings.filterwarnings("ignore", message="The following rank_pattern keys")  # then reports
            model = PeftModel.from_pretrained(base, run_dir, adapter_name="default")
        names = ["default"]
        for name, other in (adapters or {}).items():
            _check_compatible(run_dir, config.model, label_names, Path(other))
            run_folder.check_run_files(other)
            model.load_adapter(str(other), adapter_name=name)
            names.append(name)
        if len(names) == 1 and not model.peft_config["default"].is_prompt_learning:
            model, names = model.merge_and_unload(), []  # virtual tokens cannot merge into weights
    elif is_setfit_run(run_dir):
        if adapters:
            raise PipelineError(f"--adapter needs a LoRA run as the base run; {run_dir} holds a SetFit model")
        model = SentenceClassifier.from_pretrained(run_dir, options.trust_remote_code)
    else:
        if adapters:
            raise PipelineError(f"--adapter needs a LoRA run as the base run; {run_dir} holds a full model")
        if not (run_dir / "config.json").exists():
            raise PipelineError(f"run folder {run_dir} has neither a model nor an adapter; "
                                f"the run did not finish, retrain or resume it")
        if not any(run_dir.glob("model*.safetensors*")) and not options.allow_pickle:
            raise PipelineError(f"{run_dir / 'model.safetensors'} is missing (the run's config.json needs it); "
                                f"retrain the run, or copy the run folder again")
        model = load_pretrained(auto_class, str(run_dir), options.trust_remote_code, options.allow_pickle)
    return LoadedRun(place(model, options), tokenizer, label_names, config, names)


def load_run_tokenizer(run_dir: str | Path, trust_remote_code: bool = False, inputs: list[str] | None = None) -> Any:
    """The run's tokenizer, with a padding token (a decoder's end-of-text token if it has none).
    Given ``inputs`` (a converted graph's input names), a folder with a tokenizer.json loads as a
    plain fast tokenizer giving those inputs: AutoTokenizer would import torch (through transformers'
    configuration module), most of a runtime backend's start-up. Others (a Japanese BERT's word
    segmenter) load through AutoTokenizer."""
    if inputs is not None and (Path(run_dir) / "tokenizer.json").exists():
        from transformers import PreTrainedTokenizerFast

        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(run_dir), model_input_names=inputs)
    else:
        tokenizer = load_tokenizer(str(run_dir), trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def place(model: torch.nn.Module, options: LoadOptions) -> torch.nn.Module:
    """A loaded model for inference: eval mode, at ``options.precision``, on ``options.device``."""
    device = resolve_device(options.device)
    return with_precision(model.eval(), resolve_precision(options.precision, device)).to(device)


def label_kwargs(label_names: list[str]) -> dict[str, Any]:
    if not label_names:  # language models
        return {}
    return {"num_labels": len(label_names), "id2label": dict(enumerate(label_names)),
            "label2id": {name: i for i, name in enumerate(label_names)}}


def with_precision(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """bf16 weights, or dynamic int8 quantization of the Linear layers (CPU): a weight scale per
    output channel (one per tensor flipped a point more of SST-2's labels), one activation scale
    per tensor computed as it runs."""
    import torch

    if precision == "bf16":
        return model.to(torch.bfloat16)
    if precision == "int8":
        import warnings

        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch flags its quantized tensor API as deprecated
            return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
    return model


def _check_adapter_files(run_dir: Path) -> None:
    if not (run_dir / "adapter_model.safetensors").exists():
        raise PipelineError(f"run folder {run_dir} has no adapter_model.safetensors; retrain the run")


def _check_compatible(run_dir: Path, base: str, label_names: list[str], other: Path) -> None:
    other_config = run_folder.load_run_config(other)
    if not run_folder.is_adapter_run(other):
        raise PipelineError(f"--adapter {other} is not a LoRA run folder; only adapters share a base")
    _check_adapter_files(other)
    if resolve_model(other_config.model) != resolve_model(base):
        raise PipelineError(f"adapter {other} was trained on {other_config.model}, the base run {run_dir} on "
                            f"{base}; adapters must share the base model")
    if len(run_folder.load_labels(other)) != len(label_names):
        raise PipelineError(f"adapter {other} has {len(run_folder.load_labels(other))} labels, the base run "
                            f"{len(label_names)}; adapters on one base need the same number of labels")


