"""Which loop trains a run. Every method trains through Trainer (``trainer.train``) except those
listed here, which bring their own loop and end in the same run folder through ``trainer.finish_run``.
A method with its own loop registers it in ``LOOPS``; ``trainer`` knows none of them."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from pipeline.training import setfit, trainer

# method -> loop(config, recipe, overwrite=..., resume=...) -> run folder
LOOPS: dict[str, Callable[..., Path]] = {"setfit": setfit.train_setfit}


def train(config: Any, recipe: Any, overwrite: bool = False, resume: str | None = None) -> Path:
    """Train ``config`` with ``recipe`` by its method's loop; return the run folder."""
    trainer.quiet_unused_accelerators()  # before any loop imports a library that would announce itself
    loop = LOOPS.get(config.method, trainer.train)
    return loop(config, recipe, overwrite=overwrite, resume=resume)
