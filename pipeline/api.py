"""The Python API: ``train``, ``load`` and ``evaluate``, for notebooks and scripts.

The command line calls these same functions, so a config, a run folder and every error behave the
same from Python as from a shell. Errors are ``pipeline.PipelineError`` with the CLI's one-line
message; nothing here prints a result or exits.

    import pipeline

    run = pipeline.train("sst2_lora", {"dataset.max_train_samples": 2000})
    model = pipeline.load(run.path)
    model(["A true cinematic achievement!", "Boring and predictable."])
    pipeline.evaluate(run.path, split="validation")

The library is imported when a function is called, not with ``import pipeline``: a notebook (or
``pipeline --help``) that does not train never pays for importing torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from pipeline.errors import PipelineError

ConfigSource = Any  # a shipped config name, a YAML path, a mapping, or a RunConfig
Overrides = Sequence[str] | Mapping[str, Any] | None


@dataclass(frozen=True)
class Run:
    """A finished run folder."""
    path: Path

    @property
    def metrics(self) -> dict[str, Any]:
        """metrics.json: the scores of each split (``before`` training too, where recorded), parameter
        counts and timing."""
        from pipeline.runs import run_folder

        return run_folder.load_metrics(self.path)

    @property
    def config(self) -> Any:
        """The resolved config the run trained with (run_config.yaml), as a ``RunConfig``."""
        from pipeline.runs import run_folder

        return run_folder.load_run_config(self.path)

    def load(self, **options: Any) -> "Model":
        return load(self.path, **options)

    def evaluate(self, split: str = "validation", **options: Any) -> dict[str, Any]:
        return evaluate(self.path, split, **options)


def load_config(config: ConfigSource, overrides: Overrides = None) -> Any:
    """A validated ``RunConfig`` from a shipped config name (``sst2_lora``), a YAML path, a mapping or
    a RunConfig, with ``overrides`` as the CLI's ``dotted.key=value`` strings or a mapping of dotted
    keys to values (``{"training.learning_rate": 1e-3}``)."""
    from pipeline.config import loader

    if isinstance(config, (str, Path)):
        data = loader.load_yaml(loader.resolve_config_path(str(config)))
    elif isinstance(config, Mapping):
        data = dict(config)
    elif hasattr(config, "to_dict"):
        data = config.to_dict()
    else:
        raise PipelineError(f"config must be a config name, a YAML path or a mapping, not a {type(config).__name__}")
    if overrides is None or isinstance(overrides, Mapping):
        overrides = dict(overrides or {})
        changed = loader.apply_values(data, overrides)
    elif isinstance(overrides, str):
        raise PipelineError(f"overrides must be a list of key=value strings or a mapping, not the string {overrides!r}")
    else:
        overrides = list(overrides)
        changed = loader.apply_overrides(data, overrides)
    return loader.validate(loader.follow_method(data, changed, loader.override_keys(overrides)))


def train(config: ConfigSource, overrides: Overrides = None, *, overwrite: bool = False, resume: str | None = None,
          allow_pickle: bool = False) -> Run:
    """Train a run end to end (data, model, method, Trainer, final scores, model card) and return its
    folder. ``resume`` ("latest" or a checkpoint path) continues an interrupted run; ``overwrite``
    replaces the run already in the config's output_dir; ``allow_pickle`` lets the base model load
    from pickle weights."""
    from pipeline.registry import get_recipe
    from pipeline.training.loops import train as train_run

    if resume and overwrite:
        raise PipelineError("--resume and --overwrite contradict each other; choose one")
    resolved = load_config(config, overrides)
    if allow_pickle:
        resolved.allow_pickle = True
    return Run(train_run(resolved, get_recipe(resolved.recipe), overwrite=overwrite, resume=resume))


def run_recipe(run_dir: str | Path, command: str | None = None) -> Any:
    """The recipe of a finished run; with ``command``, after checking that its runs support it."""
    from pipeline.registry import get_recipe
    from pipeline.runs import run_folder

    recipe = get_recipe(run_folder.load_run_config(run_dir).recipe)
    if command:
        recipe.require(command)
    return recipe


def load_options(device: str = "auto", backend: str = "auto", precision: str | None = None,
                 trust_remote_code: bool = False, allow_pickle: bool = False) -> Any:
    """How a finished run loads. A run folder is data: running its code and unpickling its weights take
    the caller's flags, never the run's own config."""
    from pipeline.runs.loading import LoadOptions

    return LoadOptions(device=device, precision=precision, backend=backend, trust_remote_code=trust_remote_code,
                       allow_pickle=allow_pickle)


class Model:
    """A finished run loaded for inference, callable on texts.

    - classification runs: per text ``{"label", "score"}`` (``top_k=K``: the K best; ``adapter=NAME``)
    - NER runs: per text its entities ``{"entity", "text", "start", "end", "score"}``
    - question-answering runs: per ``{"question", "context"}`` (or a (question, context) pair) its answer
      ``{"question", "answer", "score", "start", "end"}`` with ``context[start:end] == answer`` (``top_k``)
    - masked-LM runs: per text, for each mask, the candidates ``{"token", "score"}`` (``top_k``)
    - causal-LM runs: per prompt its continuation (``max_new_tokens``, ``temperature``, ``top_p``, ``seed``)

    A single string (or question) gives its one result; a list gives a list. ``engine`` is what runs underneath
    (``TextClassifier``, ``TokenTagger``, ``MaskFiller`` or ``TextGenerator``).
    """

    def __init__(self, path: Path, recipe: Any, engine: Any, predict: Callable[..., list[Any]], device: str,
                 backend: str, precision: str):
        self.path, self.engine, self._predict = path, engine, predict
        self.recipe: str = recipe.name
        self.device, self.backend, self.precision = device, backend, precision

    def __call__(self, texts: str | dict[str, str] | Sequence[Any], **options: Any) -> Any:
        if isinstance(texts, (str, dict)):
            return self._predict([texts], **options)[0]
        return self._predict(list(texts), **options)

    def __repr__(self) -> str:
        return (f"Model({str(self.path)!r}, recipe={self.recipe!r}, device={self.device!r}, "
                f"backend={self.backend!r}, precision={self.precision!r})")


def load(run_dir: str | Path, device: str = "auto", backend: str = "auto", precision: str | None = None, *,
         adapters: Mapping[str, str | Path] | None = None, batch_size: int | None = None,
         max_length: int | None = None, trust_remote_code: bool = False, allow_pickle: bool = False) -> Model:
    """Load a finished run for inference on ``device`` (auto: a GPU when there is one) with ``backend``
    (auto: the fastest installed runtime that holds the run, else torch) at ``precision`` (None: bf16
    on a bf16-capable GPU, else fp32). ``adapters`` adds LoRA runs of the same base, by name."""
    run_dir = Path(run_dir)
    recipe = run_recipe(run_dir)
    options = load_options(device, backend, precision, trust_remote_code, allow_pickle)
    _check_batch_size(batch_size)
    for command, loader in ENGINES.items():
        if command in recipe.commands:
            return loader(run_dir, recipe, options, dict(adapters or {}), batch_size, max_length)
    raise PipelineError(f"{recipe.name} runs have no inference engine; they support: {', '.join(recipe.commands)}")


def _check_batch_size(batch_size: int | None) -> None:
    if batch_size is not None and batch_size <= 0:
        raise PipelineError(f"--batch-size must be positive, got {batch_size}")


def _runner_facts(runner: Any) -> tuple[str, str, str]:
    device = getattr(runner, "device", "cpu")
    return str(device), runner.backend, runner.precision


def _classifier(run_dir: Path, recipe: Any, options: Any, adapters: dict[str, Any], batch_size: int | None,
                max_length: int | None) -> Model:
    from pipeline.inference.engines import TextClassifier

    engine = TextClassifier.from_run(run_dir, batch_size=batch_size, max_length=max_length, adapters=adapters,
                                     options=options)

    def predict(texts: list[str], top_k: int | None = None, adapter: str | None = None) -> list[Any]:
        if top_k is not None and top_k <= 0:
            raise PipelineError(f"--top-k must be positive, got {top_k}")
        return engine.predict(texts, top_k=top_k, adapter=adapter)

    return Model(run_dir, recipe, engine, predict, *_runner_facts(engine.runner))


def _tagger(run_dir: Path, recipe: Any, options: Any, adapters: dict[str, Any], batch_size: int | None,
            max_length: int | None) -> Model:
    from pipeline.inference.engines import TokenTagger

    _no_adapters(adapters, recipe)
    engine = TokenTagger.from_run(run_dir, batch_size=batch_size, max_length=max_length, options=options)
    return Model(run_dir, recipe, engine, engine.entities, *_runner_facts(engine.runner))


def _answerer(run_dir: Path, recipe: Any, options: Any, adapters: dict[str, Any], batch_size: int | None,
              max_length: int | None) -> Model:
    from pipeline.inference.question_answering import QuestionAnswerer

    _no_adapters(adapters, recipe)
    engine = QuestionAnswerer.from_run(run_dir, batch_size=batch_size, max_length=max_length, options=options)

    def predict(items: list[Any], top_k: int | None = None) -> list[Any]:
        pairs = [_question_pair(item, i) for i, item in enumerate(items)]
        return engine.answers([q for q, _ in pairs], [c for _, c in pairs], top_k=top_k)

    return Model(run_dir, recipe, engine, predict, *_runner_facts(engine.runner))


def _question_pair(item: Any, index: int) -> tuple[Any, Any]:
    if isinstance(item, dict) and "question" in item and "context" in item:
        return item["question"], item["context"]
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return item[0], item[1]
    raise PipelineError(f"item {index + 1} is not a question with its context; give "
                        f"{{\"question\": ..., \"context\": ...}} or a (question, context) pair")


def _mask_filler(run_dir: Path, recipe: Any, options: Any, adapters: dict[str, Any], batch_size: int | None,
                 max_length: int | None) -> Model:
    from pipeline.inference.lm_tools import MaskFiller

    _no_adapters(adapters, recipe)
    engine = MaskFiller.load(str(run_dir), _torch_options(options))

    def predict(texts: list[str], top_k: int = 5) -> list[Any]:
        return [engine(text, top_k) for text in texts]

    return Model(run_dir, recipe, engine, predict, *_language_model_facts(engine.model))


def _generator(run_dir: Path, recipe: Any, options: Any, adapters: dict[str, Any], batch_size: int | None,
               max_length: int | None) -> Model:
    from pipeline.inference.lm_tools import TextGenerator

    _no_adapters(adapters, recipe)
    engine = TextGenerator.load(str(run_dir), _torch_options(options))

    def predict(prompts: list[str], **settings: Any) -> list[str]:
        return [engine(prompt, **settings)[0] for prompt in prompts]

    return Model(run_dir, recipe, engine, predict, *_language_model_facts(engine.model))


def _torch_options(options: Any) -> Any:
    """Language models run on torch: the runtimes hold classifiers (``auto`` takes torch for them)."""
    from dataclasses import replace

    if options.backend not in ("auto", "torch"):
        raise PipelineError(f"--backend {options.backend} covers sequence- and token-classification and question-answering runs; "
                            f"language models run on --backend torch")
    return replace(options, backend="torch")


def _language_model_facts(model: Any) -> tuple[str, str, str]:
    import torch

    dtype = next(model.parameters()).dtype
    return str(model.device), "torch", "bf16" if dtype == torch.bfloat16 else "fp32"


def _no_adapters(adapters: dict[str, Any], recipe: Any) -> None:
    if adapters:
        raise PipelineError(f"adapters switch on classification runs only; this is a {recipe.name} run")


# The inference command a recipe's runs support -> how ``load`` builds their engine.
ENGINES: dict[str, Callable[..., Model]] = {"predict": _classifier, "ner": _tagger, "qa": _answerer,
                                            "fill-mask": _mask_filler, "generate": _generator}


def evaluate(run_dir: str | Path, split: str = "validation", *, batch_size: int | None = None, device: str = "auto",
             backend: str = "auto", precision: str | None = None, trust_remote_code: bool = False,
             allow_pickle: bool = False) -> dict[str, Any]:
    """Score a finished run on a split of its data (``validation`` or ``test``), as training scored it,
    and record the scores in its metrics.json; return them."""
    _check_batch_size(batch_size)
    options = load_options(device, backend, precision, trust_remote_code, allow_pickle)
    return run_recipe(run_dir, "evaluate").evaluate_run(Path(run_dir), split, batch_size=batch_size, options=options)
