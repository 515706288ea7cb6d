"""Run configuration: YAML loading, ``dotted.key=value`` overrides and validation into the schema.

One YAML file describes one run. It is checked against the schema (``pipeline.schema``) before any
model or dataset loads, so a typo costs a second, not a training run, and every mistake comes back
as one line that names the key, what was expected and what was given, and the closest valid key for
a misspelling. No credential may enter a config. Checks of the machine (a file exists, CUDA for
fp16) happen where the run starts, so a finished run's config always loads back.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pipeline.config.schema import RunConfig, describe, one_line
from pipeline.errors import PipelineError
from pipeline.log import log
from pipeline.registry import config_dir

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
    except RecursionError:
        raise PipelineError(f"config file {path}: values nest too deep to read; write them out flatter") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PipelineError(f"config file {path}{where}: YAML syntax error ({problem}); fix the YAML there") from None
    if data is None:
        raise PipelineError(f"config file {path} is empty; start from one in recipes/configs/")
    if refers_to_itself(data):
        raise PipelineError(f"config file {path} holds a value that contains itself (a YAML alias inside its own "
                            f"anchor, like &a [*a]); write the value out")
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
        except RecursionError:
            raise PipelineError(f"override {key}: its value nests too deep to read; write it out flatter") from None
        if refers_to_itself(value):
            raise PipelineError(f"override {key}: its value contains itself (a YAML alias inside its own anchor, "
                                f"like &a [*a]); write the value out")
        set_key(data, key, value, what=f"override {item!r}")
    return data


def apply_values(data: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Apply ``{"dotted.key": value}`` (Python values, as the API takes overrides)."""
    data = _deepcopy(data)
    for key, value in values.items():
        if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
            raise PipelineError(f"override key {key!r} is not a dotted key, e.g. training.learning_rate")
        set_key(data, key, _deepcopy(value), what=f"override {key!r}")
    return data


def set_key(data: dict[str, Any], key: str, value: Any, what: str) -> None:
    """Set ``dotted.key`` in a config mapping, making sections on the way."""
    node = data
    parts = key.split(".")
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise PipelineError(f"{what}: {'.'.join(parts[:depth + 1])} is a value, "
                                f"not a section, so it has no key {parts[depth + 1]!r}")
        node = child
    node[parts[-1]] = value


def refers_to_itself(data: Any) -> bool:
    """Whether a loaded value contains itself (YAML anchors and aliases can build such a list or
    mapping), found without recursion."""
    stack = [(data, frozenset())]
    while stack:
        node, ancestors = stack.pop()
        if isinstance(node, (dict, list)):
            if id(node) in ancestors:
                return True
            inside = ancestors | {id(node)}
            stack.extend((child, inside) for child in (node.values() if isinstance(node, dict) else node))
    return False


def _deepcopy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deepcopy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deepcopy(v) for v in data]
    return data


def override_keys(overrides: list[str] | dict[str, Any]) -> set[str]:
    """The dotted keys that ``dotted.key=value`` strings or a mapping of dotted keys set."""
    items = overrides.keys() if isinstance(overrides, dict) else (o.partition("=")[0].strip() for o in overrides)
    return {str(key) for key in items}


# A method that trains with its own loop reads its training keys with its own meaning (SetFit's
# epochs run over sentence pairs): a switch to or from it leaves none of the config's behind.
OWN_TRAINING_KEYS = ("setfit",)


def follow_method(base: dict[str, Any], data: dict[str, Any], overridden: set[str]) -> dict[str, Any]:
    """A config's learning rate belongs to the method it was written for. When an override changes the
    method and leaves the learning rate alone, the rate (and, to or from a method with its own loop,
    every training key of the config) gives way to the new method's defaults, said in one line; the
    rule is recorded as ``training.learning_rate_rule``."""
    old, new = base.get("method", "lora"), data.get("method", "lora")
    training = data.get("training")
    if old == new or not isinstance(training, dict) or not isinstance(base.get("training"), dict):
        return data
    own = old in OWN_TRAINING_KEYS or new in OWN_TRAINING_KEYS
    dropped = [key for key in base["training"] if f"training.{key}" not in overridden and "training" not in overridden
               and (own or key == "learning_rate") and key in training]
    if not dropped:
        return data
    data = _deepcopy(data)
    rate = data["training"].get("learning_rate")
    for key in dropped:
        del data["training"][key]
    if "learning_rate" in dropped:
        data["training"]["learning_rate_rule"] = f"method default (the config's {rate:g} was set for method {old})" \
            if isinstance(rate, (int, float)) else f"method default (the config's rate was set for method {old})"
    settings = ", ".join(f"training.{key}" for key in dropped)
    log.warning(f"method {new} by override: {settings} {'was' if len(dropped) == 1 else 'were'} set for method {old}, "
                f"so the run takes method {new}'s defaults; set {'it' if len(dropped) == 1 else 'them'} as an override "
                f"to choose")
    return data


def resolve_config_path(name: str) -> Path:
    """A path as given, else a shipped config by name (``sst2_lora`` -> recipes/configs/sst2_lora.yaml)."""
    path = Path(name)
    if path.exists() or path.suffix in (".yaml", ".yml") or "/" in name:
        return path
    return config_dir() / f"{name}.yaml"


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Load, override and validate a run config."""
    return validate(apply_overrides(load_yaml(path), overrides or []))


def save_config(config: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Validation and its one-line messages

# Keys that name a credential, and values that look like a Hugging Face access token.
_SECRET_KEY = re.compile(r"(^|_)(token|password|passwd|secret|api_?key|credentials?)$|password|secret", re.I)
_SECRET_VALUE = re.compile(r"^hf_[A-Za-z0-9]{20,}$")


def validate(data: dict[str, Any], finished_run: bool = False) -> RunConfig:
    """The config as a RunConfig, or a PipelineError whose one line names the first problem. A
    finished run's config (``finished_run``) skips the check of its training section against
    TrainingArguments, which was made when it trained and would import the training stack."""
    refuse_secrets(data)
    if not isinstance(data, dict):
        raise PipelineError(f"config must be a mapping of keys to values, got {describe(data)}")
    try:
        return RunConfig.model_validate({str(k): v for k, v in data.items()}, context={"finished_run": finished_run})
    except ValidationError as exc:
        raise PipelineError(one_line(exc, RunConfig, "", data)) from None


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
