"""finetune-pipeline: from a pretrained transformer to a task model, from one YAML recipe.

From Python (the CLI calls the same functions)::

    import pipeline

    run = pipeline.train("sst2_lora", ["dataset.max_train_samples=2000"])
    model = pipeline.load(run.path)
    model(["A true cinematic achievement!"])  # [{"label": "positive", "score": 0.98}]
    pipeline.evaluate(run.path)

The package is laid out in layers, each importing only those below it (``pyproject.toml`` states
them as import-linter contracts; ``lint-imports`` checks them):

    cli                      the ``pipeline`` command: parses arguments, calls the API
    api                      train / load / evaluate
    planning                 advise, compare, tune: decisions made over several runs
    (recipes/)               the tasks, beside the library; reached through ``registry`` only
    training | inference     Trainer and its callbacks | engines, backends, serve
    runs                     the run folder: loading, export, Hub, model card
    recipe                   the interface every recipe implements
    models | data | metrics  pretrained models and PEFT methods | readers and task data | scores
    config                   the schema and YAML loading
    registry                 recipe names to modules, loaded by name
    errors | log             the one error type; the library's output

Names below are loaded on first use (PEP 562), so ``import pipeline`` imports neither torch nor
transformers.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> the module that defines it
_API = {"train": "pipeline.api", "load": "pipeline.api", "evaluate": "pipeline.api", "load_config": "pipeline.api",
        "Run": "pipeline.api", "Model": "pipeline.api", "PipelineError": "pipeline.errors"}

__all__ = ["train", "load", "evaluate", "load_config", "Run", "Model", "PipelineError", "__version__"]

if TYPE_CHECKING:
    from pipeline.api import Model, Run, evaluate, load, load_config, train
    from pipeline.errors import PipelineError


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value  # once loaded, a plain attribute
        return value
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
