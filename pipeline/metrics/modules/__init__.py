"""The pipeline's metrics as Hugging Face ``evaluate`` modules, for your own evaluation loops: the same
numbers a run's metrics.json holds, through ``evaluate.load`` and ``evaluate.combine``, offline.

    import evaluate
    from pipeline.metrics.modules import path
    entity_f1 = evaluate.load(path("entity_f1"))
    entity_f1.compute(predictions=[["B-LOC", "O"]], references=[["B-LOC", "O"]])

(``evaluate.load("accuracy")`` would fetch the metric's code from the Hub, which an offline machine
cannot reach; these modules ship with the package.)
"""
from __future__ import annotations

from pathlib import Path

MODULES = ("classification", "entity_f1", "squad")


def path(name: str) -> str:
    """The file ``evaluate.load`` takes for one of ``MODULES``."""
    if name not in MODULES:
        raise ValueError(f"no metric module {name!r}; choose one of {', '.join(MODULES)}")
    return str(Path(__file__).parent / name / f"{name}.py")
