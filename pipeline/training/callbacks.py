"""Trainer callbacks: a readable progress line, a NaN/inf guard, a JSON-lines metrics log and
AdaLoRA's rank schedule."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from transformers import TrainerCallback

from pipeline.errors import PipelineError
from pipeline.log import TRANSIENT, log


class ProgressLine(TrainerCallback):
    """One line per logging step: step, epoch, running loss and accuracy, learning rate, then the time
    so far, samples per second and the time left; one line per evaluation. On a terminal the line
    also updates in place between logging steps (at most twice a second); in a log file only the
    logging steps' lines appear."""

    def __init__(self, redraw_seconds: float = 0.5):
        self.redraw_seconds = redraw_seconds
        self.start = self.first_step = self.last_draw = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start, self.first_step = time.perf_counter(), state.global_step  # a resumed run counts from here

    def timing(self, args, state) -> str:
        elapsed = time.perf_counter() - self.start
        done = state.global_step - self.first_step
        if done <= 0 or elapsed <= 0:
            return f"{clock(elapsed)} elapsed"
        samples = done * args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        left = (state.max_steps - state.global_step) * elapsed / done
        return f"{clock(elapsed)} elapsed | {samples / elapsed:.1f} samples/s | {clock(left)} left"

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        if state.is_world_process_zero and now - self.last_draw >= self.redraw_seconds:
            self.last_draw = now
            log.info(f"train | step {state.global_step}/{state.max_steps} | {self.timing(args, state)}",
                     extra={TRANSIENT: True})  # drawn in place on a terminal, skipped in a log

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        epoch = f"epoch {logs.get('epoch', state.epoch or 0):.2f}"
        if "loss" in logs:
            parts = [f"step {state.global_step}/{state.max_steps}", epoch, f"loss {logs['loss']:.4f}"]
            if "accuracy" in logs:
                parts.append(f"acc {logs['accuracy']:.3f}")
            if "learning_rate" in logs:
                parts.append(f"lr {logs['learning_rate']:.2e}")
            log.info("train | " + " | ".join(parts) + " | " + self.timing(args, state))
        elif any(key.startswith("eval_") for key in logs):
            shown = {k[5:]: v for k, v in logs.items() if k.startswith("eval_") and isinstance(v, float)
                     and not k.endswith(("runtime", "per_second"))}
            log.info(f"eval  | step {state.global_step} | {epoch} | " +
                  " | ".join(f"{k} {v:.4f}" for k, v in shown.items()))


def clock(seconds: float) -> str:
    """12s, 4m05s, 1h02m."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class NonFiniteLossGuard(TrainerCallback):
    """Stops the run with a clear message when the training loss becomes NaN or infinite.

    Needs ``logging_nan_inf_filter=False`` so the logged loss shows the NaN instead of hiding it.
    """

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise PipelineError(
                f"training loss became {loss} at step {state.global_step}; lower training.learning_rate "
                f"(now {args.learning_rate:g}), keep max_grad_norm, or check the data (checkpoints so far: "
                f"{args.output_dir})")


class MetricsLog(TrainerCallback):
    """Appends every log record (training and evaluation) to ``metrics.jsonl`` in the run folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        record = {"step": state.global_step, **logs}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=float) + "\n")


class PairLossAsLoss(TrainerCallback):
    """SetFit logs its contrastive pair loss as ``embedding_loss``; the progress line, metrics.jsonl
    and the training curves read ``loss``, as for every other method."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "embedding_loss" in logs:
            logs["loss"] = logs.pop("embedding_loss")


class AdaLoraSchedule(TrainerCallback):
    """AdaLoRA reallocates its rank budget from the gradients of each step, so peft needs a call
    between the optimizer step and zeroing the gradients, and the run's total step count: the
    budget stays full for the first 10% of steps, shrinks to the target rank until 70%, then is fixed."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        config = model.peft_config["default"]
        config.total_step = state.max_steps
        config.tinit = int(0.1 * state.max_steps)
        config.tfinal = int(0.3 * state.max_steps)
        config.deltaT = max(1, state.max_steps // 100)
        model.base_model.rankallocator.peft_config = config

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        model.base_model.update_and_allocate(state.global_step)
