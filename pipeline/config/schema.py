"""The run configuration's schema: one pydantic model per section, each field's limits and choices
beside it, the rules that join fields as validators beside those fields. The training section holds
transformers.TrainingArguments keys under their own names, checked against TrainingArguments' own
fields and types, plus the pipeline's extras. ``pipeline.config`` loads YAML into it and turns its
errors into one-line messages."""
from __future__ import annotations

import dataclasses
import difflib
import functools
import typing
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pipeline.errors import PipelineError
from pipeline.registry import check_recipe_name

# full and head train the model's own weights; the rest train small added parameters through peft.
# setfit (sequence classification) fine-tunes a sentence encoder on sentence pairs, then fits a head.
METHODS = ("full", "head", "lora", "dora", "adalora", "ia3", "prompt", "prefix", "setfit")
Method = Literal["full", "head", "lora", "dora", "adalora", "ia3", "prompt", "prefix", "setfit"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DatasetConfig(Section):
    name: str | None = None  # catalogue name (sst2, rotten_tomatoes, imdb, ...) or a Hub id
    train_file: str | None = None
    validation_file: str | None = None
    test_file: str | None = None
    text_column: str | None = None  # default: the catalogue's column, else "text"
    label_column: str | None = None  # default: the catalogue's column, else "label"
    max_length: int = Field(128, gt=0)
    max_train_samples: int | None = Field(None, gt=0)
    max_eval_samples: int | None = Field(None, gt=0)
    # text classification, few-shot: this many seeded training rows of each label (balanced classes)
    samples_per_label: int | None = Field(None, gt=0)
    validation_split: float = Field(0.1, gt=0, lt=1)  # share of train held out when there is no validation split
    # question answering: the columns of flat files (SQuAD JSON is read as published)
    question_column: str = "question"
    context_column: str = "context"
    answers_column: str = "answers"  # {"text": [...], "answer_start": [...]}; empty lists: no answer
    # instruction tuning: several conversations per row, none attending to another (position ids
    # restart per conversation; no padding)
    packing: bool = False
    # token classification only
    tag_scheme: Literal["IOB1", "IOB2"] = "IOB2"  # of local files: IOB1 is converted to IOB2
    label_all_subtokens: bool = False  # label every sub-token of a word, not just the first

    @model_validator(mode="after")
    def one_source(self) -> "DatasetConfig":
        if self.name and self.train_file:
            raise ValueError("dataset.name and dataset.train_file are both set; keep one "
                             "(on the command line: dataset.name=null dataset.train_file=...)")
        if self.samples_per_label and self.max_train_samples:
            raise ValueError("dataset.samples_per_label and dataset.max_train_samples both limit the training rows; "
                             "keep one")
        if not self.name and not self.train_file:
            raise ValueError("no data: set dataset.name (e.g. sst2) or dataset.train_file")
        if not self.train_file and (self.validation_file or self.test_file):
            raise ValueError("dataset.validation_file/test_file need dataset.train_file; "
                             "set dataset.name=null dataset.train_file=...")
        return self


# lora.target_modules: [all-linear] adapts every linear layer of the transformer blocks, by their names.
ALL_LINEAR = "all-linear"


class LoraConfig(Section):
    r: int = Field(8, gt=0)
    alpha: int = Field(16, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    # None: the architecture's attention query/value projections (pipeline.architectures), resolved
    # when the run starts and recorded in run_config.yaml
    target_modules: list[str] | None = None

    @field_validator("target_modules", mode="before")
    @classmethod
    def comma_separated(cls, value: Any) -> Any:
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value

    @field_validator("target_modules")
    @classmethod
    def not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value == []:
            raise ValueError("lora.target_modules is empty; name the modules to adapt, e.g. [query, value], "
                             "or remove the key for the architecture's default")
        if value and ALL_LINEAR in value and len(value) > 1:
            raise ValueError(f"lora.target_modules {value} mixes {ALL_LINEAR} with module names; {ALL_LINEAR} "
                             "already names every linear layer of the blocks: write [all-linear] alone, or list the names")
        return value


class PromptConfig(Section):
    """Prompt tuning (learned input embeddings) and prefix tuning (learned keys/values per layer)."""
    num_virtual_tokens: int = Field(20, gt=0)


class SetFitConfig(Section):
    """method setfit: how many contrastive sentence pairs each training sentence starts per epoch
    (as many same-label as different-label); SetFit's own default draws every pair instead."""
    pairs_per_sentence: int = Field(8, gt=0)
    # at most this many pairs an epoch: past a few hundred sentences more pairs cost time, and
    # other methods overtake SetFit there anyway (bench/small_data.py)
    max_pairs: int = Field(4000, gt=0)


class QAConfig(Section):
    """Extractive question answering: how long contexts are windowed and how answers are decoded."""
    doc_stride: int = Field(128, gt=0)  # tokens two windows of one context share
    max_answer_length: int = Field(30, gt=0)  # tokens
    n_best: int = Field(20, gt=0)  # start and end candidates per window, and answers kept per question
    # SQuAD v2: a question may have no answer; "" is answered when the null score beats the best
    # span's by more than null_threshold
    version_2: bool = False
    null_threshold: float = 0.0
    f1_unit: Literal["word", "char"] | None = None  # None: the dataset's (char for Japanese, JGLUE's convention)


class ChatConfig(Section):
    """Instruction tuning (recipe instruction): how rows become conversations, what trains, and the
    generation check on held-out prompts."""
    format: Literal["auto", "alpaca", "messages", "sharegpt", "prompt_completion"] = "auto"
    # the layout's field names where a file differs, e.g. {instruction: question, output: answer}
    columns: dict[str, str] = Field(default_factory=dict)
    system_prompt: str | None = None  # put first in every conversation that has no system turn
    train_on_prompt: bool = False  # the loss on every token, not only the assistant's replies
    max_new_tokens: int = Field(128, gt=0)  # the generation check: a reply must end within this
    generation_samples: int = Field(20, ge=0)  # held-out prompts the generation check answers


class PreferenceConfig(Section):
    """Preference tuning (recipe preference): the objective TRL computes on each pair. Column names,
    the system prompt and the generation check come from the chat section."""
    # dpo: Direct Preference Optimization against the starting model (the reference); orpo: the
    # odds-ratio objective, reference-free, with the chosen reply's language-model loss
    objective: Literal["dpo", "orpo"] = "dpo"
    beta: float = Field(0.1, gt=0)  # dpo: how far from the reference the policy may move; orpo: the odds-ratio weight
    # dpo: the reference's log-probabilities computed once before training, so that no reference
    # model (nor a reference adapter) stays in memory while training
    precompute_reference: bool = True


class AugmentConfig(Section):
    """EDA-style training-set augmentation (Wei and Zou, 2019), seeded by the run's seed. ``factor``
    augmented copies of each training text are added; each copy applies every operation whose share
    (of the text's words) is above zero. Synonym replacement and insertion need a lexicon."""
    factor: int = Field(0, ge=0)  # 0 = off
    deletion: float = Field(0.1, ge=0, lt=1)  # each word dropped with this probability
    swap: float = Field(0.1, ge=0, lt=1)  # share of words swapped with another position
    synonym: float = Field(0.0, ge=0, lt=1)  # share of words replaced by a synonym
    insertion: float = Field(0.0, ge=0, lt=1)  # share of words whose synonym is inserted at a random position
    lexicon: str | None = None  # TSV file, one line per word: word<TAB>synonym,synonym,...

    @model_validator(mode="after")
    def lexicon_for_synonyms(self) -> "AugmentConfig":
        if self.factor and (self.synonym or self.insertion) and not self.lexicon:
            raise ValueError("augment.synonym and augment.insertion need a synonym lexicon; set augment.lexicon="
                             "PATH (TSV: word<TAB>synonym,synonym) or set them to 0")
        return self


class LMConfig(Section):
    """Language-model recipes (masked_lm, causal_lm)."""
    block_size: int = Field(128, gt=0)  # texts are concatenated and cut into blocks of this many tokens
    # share of tokens chosen for prediction (80% [MASK], 10% random, 10% kept); BERT uses 0.15
    mlm_probability: float = Field(0.15, gt=0, lt=1)
    whole_word_mask: bool = False  # choose whole words: all sub-tokens of a word together
    next_sentence_prediction: bool = False  # masked_lm: sentence pairs, MLM + NSP (BertForPreTraining)
    from_scratch: bool = False  # causal_lm: a fresh GPT-2 of the sizes below, tokenizer trained on the corpus
    vocab_size: int = Field(8000, gt=0)
    n_layer: int = Field(4, gt=0)
    n_head: int = Field(4, gt=0)
    n_embd: int = Field(256, gt=0)

    @model_validator(mode="after")
    def heads_divide_width(self) -> "LMConfig":
        if self.n_embd % self.n_head:
            raise ValueError(f"lm.n_embd ({self.n_embd}) must be a multiple of lm.n_head ({self.n_head})")
        return self


class HubConfig(Section):
    push_to_hub: bool = False  # push the run folder at the end of training
    repo_id: str | None = None  # USER/NAME
    private: bool = False
    merged: bool = False  # push the LoRA adapter merged into its base

    @model_validator(mode="after")
    def repo_for_push(self) -> "HubConfig":
        if self.push_to_hub and not self.repo_id:
            raise ValueError("hub.push_to_hub is true but hub.repo_id is not set; set hub.repo_id=USER/NAME")
        return self


# Training keys that are ours, not TrainingArguments', with their limits.
class TrainingExtras(Section):
    early_stopping_patience: int | None = Field(None, gt=0)  # stop after N evaluations without improvement
    # full fine-tuning: each layer down from the top learns at this factor of the one above it
    layerwise_lr_decay: float | None = Field(None, gt=0, le=1)
    # every dropout of the model itself (embeddings, attention, hidden states, head); unset: the checkpoint's.
    # Adapters keep theirs (lora.dropout).
    dropout: float | None = Field(None, ge=0, lt=1)
    # how learning_rate was chosen, recorded by the pipeline in run_config.yaml (pipeline.config.loader)
    learning_rate_rule: str | None = None


TRAINING_EXTRAS = tuple(TrainingExtras.model_fields)
# Limits on TrainingArguments keys that TrainingArguments itself would accept or report deep inside.
TRAINING_LIMITS: dict[str, tuple[str, float, float | None]] = {  # key -> (interval, low, high)
    "per_device_train_batch_size": ("(", 0, None), "per_device_eval_batch_size": ("(", 0, None),
    "gradient_accumulation_steps": ("(", 0, None), "num_train_epochs": ("(", 0, None),
    "learning_rate": ("(]", 0, 1),
}
class SearchRange(Section):
    """One setting's range for `pipeline tune`: low..high (log: sampled on a log scale; integer:
    whole numbers), or a list of choices."""
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def range_or_choices(self) -> "SearchRange":
        if self.choices is not None:
            if not self.choices or self.low is not None or self.high is not None:
                raise ValueError("give either choices (a non-empty list) or low and high, not both")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"needs low < high (got low={self.low}, high={self.high}), or choices")
        elif self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


class TuneConfig(Section):
    # dotted config keys (training.learning_rate, lora.r, ...) to their ranges; empty: the method's
    # default space (pipeline.tune.default_space)
    space: dict[str, SearchRange] = Field(default_factory=dict)


# Set by the pipeline itself; a user value would be silently ignored or break the run folder.
RESERVED_TRAINING_KEYS = {"output_dir": "output_dir (top level)", "seed": "seed (top level)"}


class RunConfig(Section):
    recipe: str
    output_dir: str
    model: str = "minilm"  # alias, Hub id or local path
    method: Method = "lora"
    seed: int = 42
    trust_remote_code: bool = False  # run Python code shipped with a Hub model; off unless asked
    allow_pickle: bool = False  # load weights from pickle files (.bin/.pt), which can run code
    dataset: DatasetConfig
    lora: LoraConfig = Field(default_factory=LoraConfig)  # lora, dora and adalora
    prompt: PromptConfig = Field(default_factory=PromptConfig)  # prompt and prefix
    setfit: SetFitConfig = Field(default_factory=SetFitConfig)  # method setfit
    qa: QAConfig = Field(default_factory=QAConfig)  # question_answering
    chat: ChatConfig = Field(default_factory=ChatConfig)  # instruction and preference
    preference: PreferenceConfig = Field(default_factory=PreferenceConfig)  # preference
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    lm: LMConfig = Field(default_factory=LMConfig)
    hub: HubConfig = Field(default_factory=HubConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)  # the search space of `pipeline tune`
    # transformers.TrainingArguments keys (HF names) plus TRAINING_EXTRAS; when a run starts, the
    # pipeline's defaults and the method's learning rate are filled in (pipeline.training)
    training: dict[str, Any] = Field(default_factory=dict)

    @field_validator("recipe")
    @classmethod
    def known_recipe(cls, name: str) -> str:
        check_recipe_name(name)
        return name

    @field_validator("training", mode="before")
    @classmethod
    def training_arguments(cls, training: Any, info: ValidationInfo) -> Any:
        if (info.context or {}).get("finished_run"):  # checked when it trained; inference needs no Trainer
            return training
        return validate_training(training) if isinstance(training, dict) else training

    @model_validator(mode="after")
    def decay_needs_full(self) -> "RunConfig":
        if self.training.get("layerwise_lr_decay") is not None and self.method != "full":
            raise ValueError(f"training.layerwise_lr_decay applies to method full, not {self.method}; "
                             f"remove it or set method=full")
        return self

    @model_validator(mode="after")
    def setfit_classifies_sentences(self) -> "RunConfig":
        if self.method == "setfit" and self.recipe != "sequence_classification":
            raise ValueError(f"method setfit classifies whole texts (recipe sequence_classification), not "
                             f"{self.recipe}; choose method lora or full")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


# --------------------------------------------------------------------------------------------
# The training section: TrainingArguments' own keys and types


@functools.cache
def training_argument_types() -> dict[str, Any]:
    """The init fields of transformers.TrainingArguments with their types."""
    from transformers import TrainingArguments

    hints = typing.get_type_hints(TrainingArguments)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(TrainingArguments) if f.init}


def validate_training(training: dict[str, Any]) -> dict[str, Any]:
    """Check each key against TrainingArguments (or our extras) and convert values losslessly."""
    from pydantic import TypeAdapter

    known = training_argument_types()
    checked: dict[str, Any] = {}
    extras = {str(k): v for k, v in training.items() if str(k) in TRAINING_EXTRAS}
    try:
        checked.update(TrainingExtras(**extras).model_dump(exclude_unset=True))
    except ValidationError as exc:
        raise PipelineError(one_line(exc, TrainingExtras, "training.")) from None
    for key, value in training.items():
        key = str(key)
        if key in TRAINING_EXTRAS:
            continue
        if key in RESERVED_TRAINING_KEYS:
            raise PipelineError(f"training.{key} is set by the pipeline; use {RESERVED_TRAINING_KEYS[key]} instead")
        if key not in known:
            raise unknown_key("training.", key, [*known, *TRAINING_EXTRAS])
        hint = known[key]
        if value is False and _accepts(hint, str) and not _accepts(hint, bool):
            value = "no"  # YAML 1.1 reads `no` as false; HF strategies spell it "no" (eval_strategy: no)
        try:
            value = TypeAdapter(_plain(hint)).validate_python(value, strict=False)
        except ValidationError as exc:
            raise PipelineError(f"training.{key} expects {_expected(exc)}, got {describe(value)}") from None
        if key in TRAINING_LIMITS and value is not None:
            _check_interval(f"training.{key}", value, *TRAINING_LIMITS[key])
        checked[key] = getattr(value, "value", value)  # enums (IntervalStrategy) as their strings
    if checked.get("max_steps") == 0:
        raise PipelineError("training.max_steps=0 trains nothing; use -1 (epochs decide) or a positive number")
    if checked.get("bf16") and checked.get("fp16"):
        raise PipelineError("training.bf16 and training.fp16 are both true; choose one")
    return checked


def _plain(hint: Any) -> Any:
    """TrainingArguments' hints, made checkable: str-valued enums accept their strings, and a field
    typed ``dict | str`` (JSON strings allowed) keeps either."""
    import enum

    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint | str
    args = typing.get_args(hint)
    if args:
        plain = tuple(_plain(a) for a in args)
        origin = typing.get_origin(hint)
        if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            return typing.Union[plain]
    return hint


def _accepts(hint: Any, kind: type) -> bool:
    """Whether a TrainingArguments hint takes values of ``kind`` (str: str-valued enums too)."""
    import enum

    options = typing.get_args(hint) or (hint,)
    if kind is bool:
        return bool in options
    return any(o is str or (isinstance(o, type) and issubclass(o, (str, enum.Enum))) for o in options)


def _expected(exc: ValidationError) -> str:
    kinds = {e["type"].split("_")[0] for e in exc.errors()}
    names = {"int": "an integer", "float": "a number", "bool": "true or false", "string": "a string",
             "list": "a list", "dict": "a mapping"}
    return " or ".join(names[k] for k in sorted(kinds) if k in names) or "another type"


def _check_interval(key: str, value: float, interval: str, low: float, high: float | None) -> None:
    above = value > low if interval[0] == "(" else value >= low
    below = high is None or (value <= high if interval.endswith("]") else value < high)
    if above and below:
        return
    if high is None:
        raise PipelineError(f"{key} must be positive, got {value}" if low == 0 and interval[0] == "("
                            else f"{key} must be at least {low}, got {value}")
    hint = "; typical values are 1e-5 to 1e-3" if key.endswith("learning_rate") else ""
    raise PipelineError(f"{key} must be in {interval[0]}{low:g}, {high:g}{interval[-1]}, got {value}{hint}")


# --------------------------------------------------------------------------------------------
# One-line messages from pydantic's reports

_EXAMPLES = {"recipe": "sequence_classification", "output_dir": "runs/my_run", "dataset": "{name: sst2}"}


def one_line(exc: ValidationError, model: type[BaseModel], prefix: str, data: Any = None) -> str:
    """The first error of a pydantic report as the one line a user reads."""
    error = exc.errors(include_url=False)[0]
    loc = [str(part) for part in error["loc"]]
    key = prefix + ".".join(loc)
    value, kind, ctx = error.get("input"), error["type"], error.get("ctx") or {}
    if kind == "extra_forbidden":
        return str(unknown_key(prefix + ".".join(loc[:-1]) + ("." if loc[:-1] else ""), loc[-1],
                               list(_section(model, loc[:-1]).model_fields), value))
    if kind == "missing":
        return f"config is missing the required key {key}; add it (e.g. {key}: {_EXAMPLES.get(loc[-1], '...')})"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == "literal_error":
        choices = typing.get_args(_section(model, loc[:-1]).model_fields[loc[-1]].annotation)
        return f"{key} {value!r} is unknown; choose one of {', '.join(map(str, choices))}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return _interval_message(key, value, _section(model, loc[:-1]).model_fields[loc[-1]])
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"{key or 'config'} must be a mapping of keys to values, got {describe(value)}"
    expected = {"int": "an integer", "float": "a number", "bool": "true or false", "string": "a string",
                "list": "a list"}.get(kind.split("_")[0])
    if expected:
        hint = "; write e.g. [a, b]" if expected == "a list" else ""
        return f"{key} expects {expected}, got {describe(value)}{hint}"
    return f"{key}: {error['msg']}, got {describe(value)}"


def _section(model: type[BaseModel], loc: list[str]) -> type[BaseModel]:
    for part in loc:
        annotation = model.model_fields[part].annotation
        options = typing.get_args(annotation) or (annotation,)
        model = next(o for o in options if isinstance(o, type) and issubclass(o, BaseModel))
    return model


def _interval_message(key: str, value: Any, field: Any) -> str:
    low = high = None
    low_open = high_open = True
    for rule in field.metadata:
        for name in ("gt", "ge", "lt", "le"):
            bound = getattr(rule, name, None)
            if bound is not None:
                if name in ("gt", "ge"):
                    low, low_open = bound, name == "gt"
                else:
                    high, high_open = bound, name == "lt"
    if high is None:
        return f"{key} must be positive, got {value}" if low == 0 and low_open else \
            f"{key} must be {low} or more, got {value}" if low == 0 else f"{key} must be at least {low}, got {value}"
    if low_open and high_open:
        return f"{key} must be between {low:g} and {high:g}, got {value}"
    return f"{key} must be in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}, got {value}"


def unknown_key(prefix: str, key: str, valid: list[str], value: Any = None) -> PipelineError:
    # Show the whole dotted path the user wrote (trainig.learning_rate), corrected at the bad part.
    rest = ""
    while isinstance(value, dict) and len(value) == 1:
        (sub, value), = value.items()
        rest += f".{sub}"
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f"did you mean {prefix}{close[0]}{rest}?" if close else f"valid keys here: {', '.join(sorted(valid))}"
    return PipelineError(f"unknown config key {prefix}{key}{rest}; {hint}")


def describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"
