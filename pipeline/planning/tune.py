"""Hyperparameter search: ``pipeline tune CONFIG --trials N``.

Each trial trains the config's model with sampled settings and is scored on the validation split,
all in one process through ``Trainer.hyperparameter_search`` with Optuna (TPE sampling seeded by the
config's seed; from the second epoch on, a trial whose score falls in the bottom quarter of the
earlier trials' at the same step is pruned). The data are tokenized once and every trial starts from the same initial
weights (the same task head), so trials differ by their settings alone.

The tune folder gets ``trials.csv`` and ``trials.md`` (every trial: state, score, settings, time),
``trials.png``, the Optuna study (``study.db``) and ``best_config.yaml``: the config with the best
trial's settings, ready for ``pipeline train``.
"""
from __future__ import annotations

import copy
import csv
import shutil
from pathlib import Path
from typing import Any

from pipeline.config.loader import save_config, set_key, validate
from pipeline.config.schema import RunConfig, SearchRange
from pipeline.errors import PipelineError
from pipeline.log import log
from pipeline.models.architectures import linear_layer_names, lora_targets
from pipeline.models.methods import (
    DEFAULT_LEARNING_RATE,
    apply_method,
    resolve_lora_targets,
)
from pipeline.models.pretrained import load_model_config, skeleton
from pipeline.recipe import Recipe
from pipeline.training.callbacks import NonFiniteLossGuard, ProgressLine
from pipeline.training.trainer import (
    check_machine,
    prepare_model,
    quiet_unused_accelerators,
    resolve_training,
    task_trainer,
    training_arguments,
)

ADAPTER_RANKS = {"lora.r": SearchRange(choices=[4, 8, 16, 32]), "lora.alpha": SearchRange(choices=[8, 16, 32, 64])}
SCHEDULE = {"training.num_train_epochs": SearchRange(low=1, high=5, integer=True),
            "training.warmup_steps": SearchRange(low=0.0, high=0.2),  # a share of the steps
            "training.weight_decay": SearchRange(low=0.0, high=0.1)}


def default_space(method: str, model_name: str | None = None) -> dict[str, SearchRange]:
    """The method's default learning rate /5 to x5 on a log scale, the schedule, and for LoRA-style
    adapters their rank, scale and which layers they adapt: the attention's query and value (the
    default) or every linear layer of the model (``model_name``'s, read from its config)."""
    rate = DEFAULT_LEARNING_RATE[method]
    space = {"training.learning_rate": SearchRange(low=rate / 5, high=rate * 5, log=True), **SCHEDULE}
    if method in ("lora", "dora", "adalora"):
        space.update(ADAPTER_RANKS)
        if model_name:
            space["lora.target_modules"] = SearchRange(choices=target_sets(model_name))
    return space


def target_sets(model_name: str) -> list[list[str]]:
    """LoRA's two usual target sets for a model: the architecture's query/value projections, and
    every linear layer of the base model by name (BERT: query, key, value, dense)."""
    config = load_model_config(model_name)
    model = skeleton(config)
    attention = lora_targets(config.model_type, [name for name, _ in model.named_modules()])
    linear = linear_layer_names(model)
    return [attention, linear] if set(linear) != set(attention) else [attention]


def choice_label(choice: Any) -> Any:
    """What Optuna is offered for a choice: it takes numbers and strings, so a list is named by its items."""
    return ",".join(map(str, choice)) if isinstance(choice, list) else choice


def chosen(spec: SearchRange, value: Any) -> Any:
    """The config value of what Optuna chose (a list choice comes back as its label)."""
    if spec.choices is None:
        return value
    return spec.choices[[choice_label(c) for c in spec.choices].index(value)]


def suggest(trial: Any, space: dict[str, SearchRange]) -> dict[str, Any]:
    """The trial's value for every key of the space (Optuna returns the same value when asked again)."""
    values = {}
    for key, spec in space.items():
        if spec.choices is not None:
            values[key] = chosen(spec, trial.suggest_categorical(key, [choice_label(c) for c in spec.choices]))
        elif spec.integer:
            values[key] = trial.suggest_int(key, int(spec.low), int(spec.high), log=spec.log)
        else:
            values[key] = trial.suggest_float(key, spec.low, spec.high, log=spec.log)
    return values


def with_settings(data: dict[str, Any], settings: dict[str, Any]) -> RunConfig:
    """The config ``data`` with dotted-key ``settings`` applied, validated like a config file."""
    data = copy.deepcopy(data)
    for key, value in settings.items():
        set_key(data, key, value, what=f"tune.space.{key}")
    return validate(data)


def check_space(data: dict[str, Any], space: dict[str, SearchRange]) -> None:
    """Every key must be a setting a config can hold: try each range's ends now, before any training."""
    for key, spec in space.items():
        for value in spec.choices if spec.choices is not None else (spec.low, spec.high):
            try:
                with_settings(data, {key: int(value) if spec.integer else value})
            except PipelineError as exc:
                raise PipelineError(f"tune.space.{key}: {exc}") from None


def tune(config: RunConfig, recipe: Recipe, trials: int, timeout: float | None = None,
         out_dir: Path | None = None, overwrite: bool = False) -> Path:
    """Search ``trials`` settings for ``config`` and write the tune folder; returns its path."""
    try:
        import optuna
    except ImportError:
        raise PipelineError('pipeline tune needs Optuna: pip install -e ".[tune]"') from None
    from transformers import set_seed

    recipe.require("tune")
    if config.method == "setfit":
        raise PipelineError("pipeline tune searches Trainer runs; method setfit trains through the setfit library "
                            "(vary setfit.pairs_per_sentence or training.learning_rate with pipeline train)")
    if trials < 1:
        raise PipelineError(f"--trials {trials}: give at least 1")
    out_dir = Path(out_dir or f"{config.output_dir}_tune")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise PipelineError(f"{out_dir} already holds a search; pass --overwrite to replace it, or --output DIR")
    data = config.to_dict()  # as the user wrote it: the best config keeps the pipeline's defaults implicit
    space = config.tune.space or default_space(config.method, config.model)
    check_space(data, space)
    check_machine(config)
    recipe.check(config)
    quiet_unused_accelerators()
    if out_dir.exists():  # replaced only once the search is known to start
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)

    resolve_lora_targets(config)
    resolve_training(config, recipe)
    # Trials are scored at each epoch (which also lets the pruner stop hopeless ones); keeping no
    # checkpoints makes the score the last epoch's, which is what the best config will train to.
    config.training.update(eval_strategy="epoch", save_strategy="no", load_best_model_at_end=False)
    set_seed(config.seed)
    task = recipe.build(config)
    prepare_model(task, config)
    initial = task.model

    def model_init(trial: Any = None) -> Any:
        trial_config = with_settings(data, suggest(trial, space)) if trial is not None else config
        resolve_lora_targets(trial_config)
        return apply_method(copy.deepcopy(initial), trial_config, recipe.peft_task_type, recipe.fresh_head)

    def training_settings(trial: Any) -> dict[str, Any]:
        return {key.removeprefix("training."): value for key, value in suggest(trial, space).items()
                if key.startswith("training.")}

    args, _ = training_arguments(config, out_dir / "trials")
    trainer = task_trainer(config, recipe, task, args, [ProgressLine(), NonFiniteLossGuard()], model_init=model_init)
    metric = f"eval_{recipe.metric}"
    # Hopeless means in the bottom quarter of the earlier trials at the same step, from the second
    # epoch on: after one epoch a long schedule (more warmup, slower decay) still trails short ones.
    batch = args.per_device_train_batch_size * args.gradient_accumulation_steps
    steps_per_epoch = -(-len(task.train_dataset) // batch)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{(out_dir / 'study.db').resolve()}"
    log.info(f"tune: {trials} trials of {config.method} on {config.model}, scored by validation "
             f"{recipe.metric}; space: {', '.join(space)}")
    trainer.hyperparameter_search(
        hp_space=training_settings, compute_objective=lambda metrics: metrics[metric], n_trials=trials,
        direction="maximize" if recipe.greater_is_better else "minimize", backend="optuna", timeout=timeout,
        study_name="tune", storage=storage, sampler=optuna.samplers.TPESampler(seed=config.seed),
        pruner=optuna.pruners.PercentilePruner(25.0, n_startup_trials=3, n_warmup_steps=steps_per_epoch + 1))
    shutil.rmtree(out_dir / "trials", ignore_errors=True)

    study = optuna.load_study(study_name="tune", storage=storage)
    rows = trial_rows(study, space)
    write_trials(rows, space, recipe.metric, out_dir)
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not finished:
        raise PipelineError(f"no trial finished (see {out_dir / 'trials.md'}); give more --trials or --timeout")
    best = study.best_trial
    best_config = with_settings(data, {key: chosen(spec, best.params[key]) for key, spec in space.items()})
    save_config(best_config, out_dir / "best_config.yaml")
    log.info(f"best: trial {best.number}, validation {recipe.metric} {best.value:.4f}; "
             f"train it with: pipeline train {out_dir / 'best_config.yaml'}")
    return out_dir


def trial_rows(study: Any, space: dict[str, SearchRange]) -> list[dict[str, Any]]:
    rows = []
    for t in study.trials:
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None
        last_step = max(t.intermediate_values) if t.intermediate_values else None
        rows.append({"trial": t.number, "state": t.state.name.lower(), "score": t.value, "last_step": last_step,
                     "last_reported": t.intermediate_values.get(last_step) if last_step is not None else None,
                     "seconds": round(seconds, 1) if seconds is not None else None,
                     **{key: t.params.get(key) for key in space}})
    return rows


def write_trials(rows: list[dict[str, Any]], space: dict[str, SearchRange], metric: str, out_dir: Path) -> None:
    """trials.csv, trials.md (printed too) and trials.png."""
    if not rows:
        return
    with (out_dir / "trials.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    keys = list(space)
    lines = [f"| trial | state | {metric} | {' | '.join(keys)} | seconds |", "|---" * (len(keys) + 4) + "|"]
    for row in rows:
        score = row["score"] if row["score"] is not None else row["last_reported"]
        state = row["state"] + (f" at step {row['last_step']}" if row["state"] == "pruned" else "")
        lines.append(f"| {row['trial']} | {state} | {cell(score)} | {' | '.join(cell(row[k]) for k in keys)} | "
                     f"{cell(row['seconds'])} |")
    table = "\n".join(lines)
    (out_dir / "trials.md").write_text(table + "\n", encoding="utf-8")
    log.info(table)
    plot_trials(rows, metric, out_dir / "trials.png")


def plot_trials(rows: list[dict[str, Any]], metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for state, marker in (("complete", "o"), ("pruned", "x")):
        points = [(r["trial"], r["score"] if r["score"] is not None else r["last_reported"])
                  for r in rows if r["state"] == state]
        points = [(n, s) for n, s in points if s is not None]
        if points:
            ax.scatter(*zip(*points), marker=marker, label=state)
    best, running = [], None
    for r in rows:
        if r["state"] == "complete" and r["score"] is not None:
            running = r["score"] if running is None else max(running, r["score"])
        best.append(running)
    ax.plot([r["trial"] for r in rows], best, drawstyle="steps-post", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {metric}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
