"""Run configuration: the schema, YAML loading, ``dotted.key=value`` overrides and validation.

One YAML file describes one run. Everything is validated here, before any model or dataset loads,
so a typo costs a second, not a training run. Errors name the key, what was expected and what was
given, and suggest the closest valid key for a misspelling.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import PipelineError

# full and head train the model's own weights; the rest train small added parameters through peft.
METHODS = ("full", "head", "lora", "dora", "adalora", "ia3", "prompt", "prefix")


@dataclass
class DatasetConfig:
    name: str | None = None  # catalogue name (sst2, rotten_tomatoes, imdb, ...) or a Hub id
    train_file: str | None = None
    validation_file: str | None = None
    test_file: str | None = None
    text_column: str | None = None  # default: the catalogue's column, else "text"
    label_column: str | None = None  # default: the catalogue's column, else "label"
    max_length: int = 128
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    validation_split: float = 0.1  # share of train held out when there is no validation split
    # token classification only
    tag_scheme: str = "IOB2"  # of local files: IOB1 is converted to IOB2
    label_all_subtokens: bool = False  # label every sub-token of a word, not just the first


@dataclass
class LoraConfig:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.1
    # None: the architecture's attention query/value projections (pipeline.architectures), resolved
    # when the run starts and recorded in run_config.yaml
    target_modules: list[str] | None = None


@dataclass
class PromptConfig:
    """Prompt tuning (learned input embeddings) and prefix tuning (learned keys/values per layer)."""
    num_virtual_tokens: int = 20


@dataclass
class AugmentConfig:
    """EDA-style training-set augmentation (Wei and Zou, 2019), seeded by the run's seed. ``factor``
    augmented copies of each training text are added; each copy applies every operation whose share
    (of the text's words) is above zero. Synonym replacement and insertion need a lexicon."""
    factor: int = 0  # 0 = off
    deletion: float = 0.1  # each word dropped with this probability
    swap: float = 0.1  # share of words swapped with another position
    synonym: float = 0.0  # share of words replaced by a synonym
    insertion: float = 0.0  # share of words whose synonym is inserted at a random position
    lexicon: str | None = None  # TSV file, one line per word: word<TAB>synonym,synonym,...


@dataclass
class LMConfig:
    """Language-model recipes (masked_lm, causal_lm)."""
    block_size: int = 128  # texts are concatenated and cut into blocks of this many tokens
    mlm_probability: float = 0.15  # share of tokens chosen for prediction (80% [MASK], 10% random, 10% kept)
    whole_word_mask: bool = False  # choose whole words: all sub-tokens of a word together
    next_sentence_prediction: bool = False  # masked_lm: sentence pairs, MLM + NSP (BertForPreTraining)
    from_scratch: bool = False  # causal_lm: a fresh GPT-2 of the sizes below, tokenizer trained on the corpus
    vocab_size: int = 8000
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256


@dataclass
class HubConfig:
    push_to_hub: bool = False  # push the run folder at the end of training
    repo_id: str | None = None  # USER/NAME
    private: bool = False
    merged: bool = False  # push the LoRA adapter merged into its base


@dataclass
class RunConfig:
    recipe: str
    output_dir: str
    model: str = "minilm"  # alias, Hub id or local path
    method: str = "lora"  # one of METHODS
    seed: int = 42
    trust_remote_code: bool = False  # run Python code shipped with a Hub model; off unless asked
    allow_pickle: bool = False  # load weights from pickle files (.bin/.pt), which can run code
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)  # lora, dora and adalora
    prompt: PromptConfig = field(default_factory=PromptConfig)  # prompt and prefix
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    lm: LMConfig = field(default_factory=LMConfig)
    hub: HubConfig = field(default_factory=HubConfig)
    # transformers.TrainingArguments keys (HF names) plus the pipeline's own TRAINING_EXTRAS.
    training: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Training keys that are ours, not TrainingArguments'.
TRAINING_EXTRAS: dict[str, Any] = {
    "early_stopping_patience": int | None,
    # full fine-tuning: each layer down from the top learns at this factor of the one above it
    "layerwise_lr_decay": float | None,
}


# --------------------------------------------------------------------------------------------
# Loading and overrides


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config file with the safe loader; syntax errors name the line."""
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"config file {path} does not exist; check the path "
                            f"(`pipeline recipes` lists the shipped configs)")
    if path.is_dir():
        raise PipelineError(f"config path {path} is a directory; give a .yaml file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PipelineError(f"config file {path} is not UTF-8 text; save it as UTF-8") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PipelineError(f"config file {path}{where}: YAML syntax error ({problem}); fix the YAML there") from None
    if data is None:
        raise PipelineError(f"config file {path} is empty; start from one in recipes/configs/")
    if not isinstance(data, dict):
        raise PipelineError(f"config file {path} must be a mapping of keys to values, "
                            f"not a {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides; values are YAML scalars/lists (``null``, ``[a, b]``)."""
    data = _deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise PipelineError(f"override {item!r} is not of the form dotted.key=value, "
                                f"e.g. training.learning_rate=3e-5")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw  # not YAML: keep the text and let the schema judge it
        node = data
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise PipelineError(f"override {item!r}: {'.'.join(parts[:depth + 1])} is a value, "
                                    f"not a section, so it has no key {parts[depth + 1]!r}")
            node = child
        node[parts[-1]] = value
    return data


def _deepcopy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deepcopy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deepcopy(v) for v in data]
    return data


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Load, override and validate a run config."""
    return validate(apply_overrides(load_yaml(path), overrides or []))


# --------------------------------------------------------------------------------------------
# Validation


def validate(data: dict[str, Any]) -> RunConfig:
    refuse_secrets(data)
    config = _build(RunConfig, data, prefix="")
    config.training = _validate_training(config.training)
    _check_values(config)
    return config


# Keys that name a credential, and values that look like a Hugging Face access token.
_SECRET_KEY = re.compile(r"(^|_)(token|password|passwd|secret|api_?key|credentials?)$|password|secret", re.I)
_SECRET_VALUE = re.compile(r"^hf_[A-Za-z0-9]{20,}$")


def refuse_secrets(data: Any, prefix: str = "") -> None:
    """A config is saved in the run folder, its model card and the Hub: no credential may enter it.
    The message never repeats the value."""
    if isinstance(data, dict):
        for key, value in data.items():
            where = f"{prefix}{key}"
            if _SECRET_KEY.search(str(key)):
                raise PipelineError(f"{where} would store a credential in the run folder and its model card; remove it "
                                    f"and log in instead (`hf auth login`, or set HF_TOKEN in the environment)")
            refuse_secrets(value, f"{where}.")
    elif isinstance(data, list):
        for i, value in enumerate(data):
            refuse_secrets(value, f"{prefix.rstrip('.')}[{i}].")
    elif isinstance(data, str) and _SECRET_VALUE.match(data.strip()):
        raise PipelineError(f"{prefix.rstrip('.')} holds what looks like a Hugging Face access token, which would be "
                            f"stored in the run folder; remove it and log in instead (`hf auth login` or HF_TOKEN)")


def _build(cls: type, data: Any, prefix: str) -> Any:
    """Build dataclass ``cls`` from a mapping, checking keys and types against its fields."""
    if not isinstance(data, dict):
        raise PipelineError(f"{prefix.rstrip('.') or 'config'} must be a mapping of keys to values, "
                            f"got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise _unknown_key(prefix, str(key), list(fields), data[key])
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required:
                raise PipelineError(f"config is missing the required key {prefix}{name!s}; add it "
                                    f"(e.g. {prefix}{name}: {_EXAMPLES.get(name, '...')})")
            continue
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, data[name] if data[name] is not None else {}, f"{prefix}{name}.")
        else:
            kwargs[name] = coerce(f"{prefix}{name}", data[name], hint)
    return cls(**kwargs)


_EXAMPLES = {"recipe": "sequence_classification", "output_dir": "runs/my_run"}


def _unknown_key(prefix: str, key: str, valid: list[str], value: Any = None) -> PipelineError:
    # Show the whole dotted path the user wrote (trainig.learning_rate), corrected at the bad part.
    rest = ""
    while isinstance(value, dict) and len(value) == 1:
        (sub, value), = value.items()
        rest += f".{sub}"
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f"did you mean {prefix}{close[0]}{rest}?" if close else f"valid keys here: {', '.join(sorted(valid))}"
    return PipelineError(f"unknown config key {prefix}{key}{rest}; {hint}")


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def coerce(key: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against a type hint, converting where it is lossless (``'3e-5'`` -> float)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(key, value, option)
            except PipelineError as exc:
                errors.append(exc)
        raise errors[0] if len(errors) == 1 else PipelineError(
            f"{key} expects {_type_name(hint)}, got {_describe(value)}")
    if hint is Any or hint is object:
        return value
    if origin in (list, tuple):
        (item_hint, *_) = typing.get_args(hint) or (Any,)
        if isinstance(value, str):  # a single item or a comma-separated list from the command line
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise PipelineError(f"{key} expects a list, got {_describe(value)}; write e.g. [a, b]")
        return [coerce(f"{key}[{i}]", v, item_hint) for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise PipelineError(f"{key} expects a mapping, got {_describe(value)}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise PipelineError(f"{key} expects true or false, got {_describe(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise PipelineError(f"{key} expects an integer, got {_describe(value)}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:  # PyYAML reads 3e-5 (no dot) as a string
                return float(value)
            except ValueError:
                pass
        raise PipelineError(f"{key} expects a number, got {_describe(value)}")
    if (hint is str or (isinstance(hint, type) and issubclass(hint, str))) and value is False:
        return "no"  # YAML 1.1 reads `no` as false; HF strategies spell it "no" (eval_strategy: no)
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise PipelineError(f"{key} expects a string, got {_describe(value)}")
    if isinstance(hint, type) and issubclass(hint, str):  # str-valued enums such as IntervalStrategy
        if isinstance(value, str):
            return value
        raise PipelineError(f"{key} expects a string, got {_describe(value)}")
    return value  # other library types: TrainingArguments checks them itself


def _type_name(hint: Any) -> str:
    names = [getattr(a, "__name__", str(a)) for a in typing.get_args(hint) if a is not type(None)]
    return " or ".join(names) + (" or null" if type(None) in typing.get_args(hint) else "")


@functools.cache
def training_argument_types() -> dict[str, Any]:
    """The init fields of transformers.TrainingArguments with their types, plus our extras."""
    from transformers import TrainingArguments

    hints = typing.get_type_hints(TrainingArguments)
    fields = {f.name: hints.get(f.name, Any) for f in dataclasses.fields(TrainingArguments) if f.init}
    return {**fields, **TRAINING_EXTRAS}


# Set by the pipeline itself; a user value would be silently ignored or break the run folder.
_RESERVED_TRAINING_KEYS = {"output_dir": "output_dir (top level)", "seed": "seed (top level)"}


def _validate_training(training: dict[str, Any]) -> dict[str, Any]:
    known = training_argument_types()
    checked = {}
    for key, value in training.items():
        key = str(key)
        if key in _RESERVED_TRAINING_KEYS:
            raise PipelineError(f"training.{key} is set by the pipeline; use {_RESERVED_TRAINING_KEYS[key]} instead")
        if key not in known:
            raise _unknown_key("training.", key, list(known))
        checked[key] = coerce(f"training.{key}", value, known[key])
    return checked


def _check_values(config: RunConfig) -> None:
    from pipeline.registry import check_recipe_name

    check_recipe_name(config.recipe)
    if config.method not in METHODS:
        raise PipelineError(f"method {config.method!r} is unknown; choose one of {', '.join(METHODS)}")
    data = config.dataset
    if data.name and data.train_file:
        raise PipelineError("dataset.name and dataset.train_file are both set; keep one "
                            "(on the command line: dataset.name=null dataset.train_file=...)")
    if not data.name and not data.train_file:
        raise PipelineError("no data: set dataset.name (e.g. sst2) or dataset.train_file")
    if not data.train_file and (data.validation_file or data.test_file):
        raise PipelineError("dataset.validation_file/test_file need dataset.train_file; "
                            "set dataset.name=null dataset.train_file=...")
    _positive("dataset.max_length", data.max_length)
    _positive("dataset.max_train_samples", data.max_train_samples)
    _positive("dataset.max_eval_samples", data.max_eval_samples)
    if not 0 < data.validation_split < 1:
        raise PipelineError(f"dataset.validation_split must be between 0 and 1, got {data.validation_split}")
    if data.tag_scheme not in ("IOB1", "IOB2"):
        raise PipelineError(f"dataset.tag_scheme must be IOB1 or IOB2, got {data.tag_scheme!r}")
    if config.hub.push_to_hub and not config.hub.repo_id:
        raise PipelineError("hub.push_to_hub is true but hub.repo_id is not set; set hub.repo_id=USER/NAME")
    _positive("lora.r", config.lora.r)
    _positive("lora.alpha", config.lora.alpha)
    if not 0 <= config.lora.dropout < 1:
        raise PipelineError(f"lora.dropout must be in [0, 1), got {config.lora.dropout}")
    if config.lora.target_modules == []:
        raise PipelineError("lora.target_modules is empty; name the modules to adapt, e.g. [query, value], "
                            "or remove the key for the architecture's default")
    _positive("prompt.num_virtual_tokens", config.prompt.num_virtual_tokens)
    aug = config.augment
    if aug.factor < 0:
        raise PipelineError(f"augment.factor must be 0 (off) or more, got {aug.factor}")
    for key in ("deletion", "swap", "synonym", "insertion"):
        if not 0 <= getattr(aug, key) < 1:
            raise PipelineError(f"augment.{key} must be in [0, 1), got {getattr(aug, key)}")
    if aug.factor and (aug.synonym or aug.insertion) and not aug.lexicon:
        raise PipelineError("augment.synonym and augment.insertion need a synonym lexicon; set augment.lexicon="
                            "PATH (TSV: word<TAB>synonym,synonym) or set them to 0")
    if aug.lexicon and not Path(aug.lexicon).is_file():
        raise PipelineError(f"augment.lexicon {aug.lexicon} does not exist; check the path")
    lm = config.lm
    for key in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
        _positive(f"lm.{key}", getattr(lm, key))
    if not 0 < lm.mlm_probability < 1:
        raise PipelineError(f"lm.mlm_probability must be between 0 and 1, got {lm.mlm_probability}; BERT uses 0.15")
    if lm.n_embd % lm.n_head:
        raise PipelineError(f"lm.n_embd ({lm.n_embd}) must be a multiple of lm.n_head ({lm.n_head})")
    t = config.training
    decay = t.get("layerwise_lr_decay")
    if decay is not None:
        if not 0 < decay <= 1:
            raise PipelineError(f"training.layerwise_lr_decay must be in (0, 1], got {decay}; typical: 0.8 to 0.95")
        if config.method != "full":
            raise PipelineError(f"training.layerwise_lr_decay applies to method full, not {config.method}; "
                                f"remove it or set method=full")
    for key in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        _positive(f"training.{key}", t.get(key))
    if "learning_rate" in t and not 0 < t["learning_rate"] <= 1:
        raise PipelineError(f"training.learning_rate must be in (0, 1], got {t['learning_rate']}; "
                            f"typical values are 1e-5 to 1e-3")
    if "num_train_epochs" in t and t["num_train_epochs"] <= 0:
        raise PipelineError(f"training.num_train_epochs must be positive, got {t['num_train_epochs']}")
    if t.get("max_steps") == 0:
        raise PipelineError("training.max_steps=0 trains nothing; use -1 (epochs decide) or a positive number")
    if t.get("bf16") and t.get("fp16"):
        raise PipelineError("training.bf16 and training.fp16 are both true; choose one")
    if t.get("early_stopping_patience") is not None:
        _positive("training.early_stopping_patience", t["early_stopping_patience"])


def _positive(key: str, value: int | float | None) -> None:
    if value is not None and value <= 0:
        raise PipelineError(f"{key} must be positive, got {value}")


def save_config(config: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
