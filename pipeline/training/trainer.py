"""Running a recipe: TrainingArguments with the pipeline's defaults, Trainer with our callbacks, and
the run folder at the end.

A recipe (``pipeline.recipe.Recipe``, handed in by the caller) builds the model and data
(``build(config) -> Task``) and scores a finished run (``evaluate_run``); this module owns the loop
around them.
"""
from __future__ import annotations

import os
import re
import resource
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import SequentialSampler
from accelerate.utils import gather_object
from transformers import EarlyStoppingCallback, Trainer, TrainingArguments, set_seed
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from pipeline.config.schema import TRAINING_EXTRAS, RunConfig, validate_training
from pipeline.errors import PipelineError
from pipeline.log import log
from pipeline.metrics.scores import plot_curves
from pipeline.models.methods import (
    DEFAULT_LEARNING_RATE,
    apply_method,
    parameter_report,
    resolve_lora_targets,
)
from pipeline.models.training_setup import choose_training_attention, head_on_positions, set_dropout
from pipeline.recipe import Recipe, Task
from pipeline.runs import run_folder
from pipeline.runs.hub import push
from pipeline.runs.model_card import write_model_card
from pipeline.training.callbacks import (
    AdaLoraSchedule,
    MetricsLog,
    NonFiniteLossGuard,
    ProgressLine,
)
from pipeline.training.distributed import (
    adalora_checkpoint_at_full_rank,
    check_fsdp_launch,
    end_zero3_loading,
    full_state_dict,
    leave_process_group,
    separate_whole_parameters,
    setup_fsdp,
)


class PipelineTrainer(Trainer):
    """Trainer that also reports running training accuracy in its logs (the argmax of the logits
    against the labels, ignoring -100), at no extra forward pass, can give each layer its own
    learning rate (``layerwise_lr_decay``), and can run a per-token head on the labelled tokens alone
    (``head_on_labelled_tokens``: the masked-LM head on the masked 15%)."""

    def __init__(self, *args: Any, layerwise_lr_decay: float | None = None, causal: bool = False,
                 head_on_labelled_tokens: bool = False, **kwargs: Any):
        self.layerwise_lr_decay = layerwise_lr_decay
        self.causal = causal
        self.head_on_labelled_tokens = head_on_labelled_tokens
        super().__init__(*args, **kwargs)
        if not causal:
            # Classification and masked-LM heads average their loss over the batch themselves; Trainer
            # would otherwise scale it by the process count for a token average they do not take.
            self.model_accepts_loss_kwargs = False
        # counted where the logits are: reading them back each step would wait for the device
        self._correct: torch.Tensor | None = None
        self._seen: torch.Tensor | None = None

    def _get_eval_sampler(self, eval_dataset: Any) -> Any:
        """Evaluation in the dataset's order: transformers 5 also length-groups the evaluation batches
        under group_by_length, and metrics that read each row's metadata beside the predictions (the
        question and character offsets of a QA window) need them in order. Grouping is for training."""
        if self.args.train_sampling_strategy == "group_by_length" and eval_dataset is not None:
            return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None
        return super()._get_eval_sampler(eval_dataset)

    def create_accelerator_and_postprocess(self) -> None:
        super().create_accelerator_and_postprocess()
        self.is_fsdp_enabled = setup_fsdp(self.accelerator, self.model, cpu=cpu_only())

    def _save_checkpoint(self, model: torch.nn.Module, trial: Any) -> None:
        if self.is_fsdp_enabled:
            # Trainer marks the best checkpoint by whether its folder exists once every process has saved
            # the weights; with sharded FSDP state the folder only appears later, so a process that looked
            # early skipped loading the best model while the other waited for it: make the folder first.
            folder = Path(self._get_output_dir(trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            folder.mkdir(parents=True, exist_ok=True)
            with adalora_checkpoint_at_full_rank(self.model, folder, saving=True, write=self.args.should_save):
                super()._save_checkpoint(model, trial)
        else:
            super()._save_checkpoint(model, trial)

    def _load_best_model(self) -> None:
        if not self.is_fsdp_enabled:
            return super()._load_best_model()
        with adalora_checkpoint_at_full_rank(self.model, Path(self.state.best_model_checkpoint), saving=False):
            super()._load_best_model()

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: torch.nn.Module | None = None) -> None:
        if not self.is_fsdp_enabled:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        with adalora_checkpoint_at_full_rank(self.model, Path(resume_from_checkpoint), saving=False):
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.get("labels")
        # (a next-sentence head reads the pooled output beside the tokens: that model keeps its own loss)
        if self.head_on_labelled_tokens and model.training and labels is not None and "next_sentence_label" not in inputs:
            return self.labelled_token_loss(model, inputs, return_outputs)
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        logits = outputs.get("logits") if isinstance(outputs, dict) else None
        if model.training and labels is not None and logits is not None and logits.shape[:-1] == labels.shape:
            if self.causal:
                logits, labels = logits[:, :-1], labels[:, 1:]
            with torch.no_grad():
                mask = labels != -100
                self.count_correct(((logits.argmax(-1) == labels) & mask).sum(), mask.sum())
        return (loss, outputs) if return_outputs else loss

    def labelled_token_loss(self, model: torch.nn.Module, inputs: dict[str, Any], return_outputs: bool) -> Any:
        """The masked-LM loss with the head run on the labelled (masked) tokens alone: the mean
        cross-entropy over them, as the model's own loss takes it over its full logits."""
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        keep = labels != -100
        with head_on_positions(self.accelerator.unwrap_model(model), keep) as gathered:
            outputs = model(**inputs)
        logits = outputs.logits[0] if gathered else outputs.logits[keep]
        targets = labels[keep]
        loss = torch.nn.functional.cross_entropy(logits, targets)  # logits: (masked tokens, vocabulary)
        with torch.no_grad():
            self.count_correct((logits.argmax(-1) == targets).sum(), keep.sum())
        return (loss, outputs) if return_outputs else loss

    def count_correct(self, correct: torch.Tensor, seen: torch.Tensor) -> None:
        if self._correct is None:
            self._correct, self._seen = correct, seen
        else:
            self._correct, self._seen = self._correct + correct, self._seen + seen

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        if self.optimizer is not None:
            return super().create_optimizer(model)
        if self.layerwise_lr_decay:
            model = self.model if model is None else model
            groups = layerwise_parameter_groups(model, self.args.learning_rate, self.layerwise_lr_decay,
                                                self.args.weight_decay, set(self.get_decay_parameter_names(model)))
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        else:
            super().create_optimizer(model)
        if self.is_fsdp_enabled:
            separate_whole_parameters(self.optimizer, self.model)
        return self.optimizer

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._seen is not None:
            seen = self._seen.item()
            if seen:
                logs["accuracy"] = round(self._correct.item() / seen, 4)
            self._correct = self._seen = None
        super().log(logs, start_time)


def layerwise_parameter_groups(model: torch.nn.Module, learning_rate: float, decay: float, weight_decay: float,
                                decay_names: set[str]) -> list[dict[str, Any]]:
    """Layer-wise learning-rate decay (Howard and Ruder, 2018; ELECTRA): the task head learns at
    ``learning_rate``, the top transformer layer at ``lr * decay``, each layer below at ``decay`` times
    the one above, the embeddings lowest. General features near the input move least."""
    layers = getattr(model.config, "num_hidden_layers", None)
    if not layers:
        raise PipelineError("training.layerwise_lr_decay needs a model config with num_hidden_layers")
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        found = re.search(r"\.(?:layer|layers|h|block)\.(\d+)\.", name)
        depth = int(found.group(1)) + 1 if found else 0 if "embed" in name else layers + 1
        decays = name in decay_names
        group = groups.setdefault((depth, decays), {
            "params": [], "weight_decay": weight_decay if decays else 0.0,
            "lr": learning_rate * decay ** (layers + 1 - depth)})
        group["params"].append(param)
    return [groups[key] for key in sorted(groups)]


def resolve_training(config: RunConfig, recipe: Recipe) -> None:
    """Fill ``config.training`` with every setting the run will use: the seed's recipe as defaults
    (AdamW, linear decay after 10% warmup, weight decay 0.01, which Trainer keeps off biases and
    LayerNorm, clipping at 1.0), the method's learning rate, the recipe's own settings, mixed
    precision by hardware, then the user's keys on top. run_config.yaml records the result, so
    training from it repeats the run."""
    settings: dict[str, Any] = dict(
        num_train_epochs=3,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        learning_rate=DEFAULT_LEARNING_RATE[config.method],
        lr_scheduler_type="linear",
        warmup_steps=0.1,
        weight_decay=0.01,
        max_grad_norm=1.0,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model=recipe.metric,
        greater_is_better=recipe.greater_is_better,
        logging_steps=0.05,
        logging_nan_inf_filter=False,  # the NaN guard must see a NaN loss
        train_sampling_strategy="group_by_length",
        report_to="none",
        disable_tqdm=True,
    )
    settings.update(recipe.training_defaults(config))
    if recipe.causal:
        # A decoder's evaluation logits cover its vocabulary at every position (SmolLM2: 49,152 a token,
        # 512 tokens a conversation): 64 rows held over 20 GB of them at once. Evaluate at the
        # training batch, which fits wherever training does.
        settings["per_device_eval_batch_size"] = config.training.get("per_device_train_batch_size",
                                                                     settings["per_device_train_batch_size"])
    settings.update(config.training)
    settings["learning_rate_rule"] = config.training.get("learning_rate_rule") or (
        "set in the config" if "learning_rate" in config.training else "method default")
    check_learning_rate(settings["learning_rate"], config.method, recipe)
    if settings.get("early_stopping_patience") and settings.get("eval_strategy") == "no":
        raise PipelineError("training.early_stopping_patience needs evaluation; set training.eval_strategy=epoch")
    if settings.get("eval_strategy") == "no":
        settings["load_best_model_at_end"] = False
    if settings.get("save_strategy") != settings.get("eval_strategy") and settings.get("load_best_model_at_end"):
        settings["load_best_model_at_end"] = False  # Trainer needs the two aligned to track the best
    if "bf16" not in config.training and "fp16" not in config.training:
        launched = os.environ.get("ACCELERATE_MIXED_PRECISION")  # accelerate launch --mixed_precision
        if launched in ("bf16", "fp16"):
            settings[launched] = True
            if launched == "bf16" and cpu_only() and not native_bf16():
                log.warning("training: the launch asks for bf16, which this CPU emulates (no AVX512-BF16 or AMX) "
                            "at a fraction of fp32's speed; add --mixed_precision no to the accelerate launch line")
        else:  # "no" is also accelerate's unset default, so it does not turn the automatic choice off
            settings["bf16"] = native_bf16()
    config.training = validate_training(settings)


# How far from a method's default learning rate a fine-tune's rate may stray before the run says so.
LEARNING_RATE_SPREAD = 10


def check_learning_rate(rate: float, method: str, recipe: Recipe) -> None:
    """Report, before training, a fine-tuning learning rate far outside its method's usual range
    (pretraining recipes, whose rates follow the corpus and model size, are left alone)."""
    default = DEFAULT_LEARNING_RATE.get(method)
    if not recipe.fresh_head or default is None or not isinstance(rate, (int, float)) or rate <= 0:
        return
    if not default / LEARNING_RATE_SPREAD <= rate <= default * LEARNING_RATE_SPREAD:
        log.warning(f"training.learning_rate {rate:g} is far from method {method}'s usual range "
                    f"({default / LEARNING_RATE_SPREAD:g} to {default * LEARNING_RATE_SPREAD:g}, default {default:g}); "
                    f"check it was meant for method {method}")


def training_arguments(config: RunConfig, run_dir: Path, task: Task | None = None) -> tuple[TrainingArguments, int | None]:
    """TrainingArguments from the resolved ``config.training`` and where this process runs (the task's
    own TrainingArguments subclass and settings where it brings them)."""
    settings = {k: v for k, v in config.training.items() if k not in TRAINING_EXTRAS}
    settings.setdefault("dataloader_pin_memory", torch.cuda.is_available())
    if cpu_only():  # Trainer's CPU path: bf16 autocast, and DDP over gloo when launched with several processes
        settings.setdefault("use_cpu", True)
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / "tensorboard")  # for report_to: tensorboard
    try:
        arguments_class = (task and task.arguments_class) or TrainingArguments
        extra = task.arguments if task else {}
        args = arguments_class(output_dir=str(run_dir / run_folder.CHECKPOINTS), seed=config.seed, **settings, **extra)
    except (ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise PipelineError(f"training settings rejected: {first}") from None
    return args, config.training.get("early_stopping_patience")


def peak_memory_mb() -> float:
    """Peak memory of the run so far: CUDA allocations on a GPU, else the process's peak resident set."""
    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux reports KiB


def cpu_only() -> bool:
    return not torch.cuda.is_available() and not torch.backends.mps.is_available()


def native_bf16() -> bool:
    """Whether bf16 autocast pays here: a GPU with bf16, or a CPU with bf16 matrix instructions
    (AVX512-BF16 or AMX; elsewhere CPU bf16 is emulated and slower than fp32)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def quiet_unused_accelerators() -> None:
    """DeepSpeed, when installed, is imported by Trainer and announces a warning on every CPU-only
    start ("unable to detect" a GPU) whether or not the run uses it: where torch sees no accelerator,
    name the CPU for it (a launch that sets DS_ACCELERATOR keeps its own)."""
    xpu = getattr(torch, "xpu", None)
    if not (torch.cuda.is_available() or torch.backends.mps.is_available() or (xpu is not None and xpu.is_available())):
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


def check_machine(config: RunConfig) -> None:
    """What the config needs of this machine, checked before anything loads (validation checks the
    config alone, so that a finished run's config loads anywhere)."""
    check_fsdp_launch(config.method)
    lexicon = config.augment.lexicon
    if config.augment.factor and lexicon and not Path(lexicon).is_file():
        raise PipelineError(f"augment.lexicon {lexicon} does not exist; check the path")
    if config.training.get("fp16") and cpu_only():
        raise PipelineError("training.fp16 needs a CUDA GPU; on a CPU use training.bf16=true")


def prepare_model(task: Task, config: RunConfig) -> str:
    """Set the loaded model's own dropout where ``training.dropout`` asks, and choose the attention
    kernel its training steps use from the longest training row; returns that kernel's name."""
    dropout = config.training.get("dropout")
    if dropout is not None:
        set_dropout(task.model, dropout)
    longest = None if config.dataset.packing else longest_row(task.train_dataset)  # a packed row joins several
    return choose_training_attention(task.model, longest, cpu_only())


def longest_row(data: Any) -> int | None:
    """Tokens in the longest ``input_ids`` row of a tokenized dataset (read from its Arrow column),
    or None for data without one."""
    import pyarrow.compute as pc

    if "input_ids" not in (getattr(data, "column_names", None) or []):
        return None
    longest = pc.max(pc.list_value_length(data.data.column("input_ids"))).as_py()
    return int(longest) if longest is not None else None


def evaluated(task: Task, args: TrainingArguments) -> Any:
    """The held-out set the trainer evaluates during training; none without evaluation, so that no
    trainer prepares one for nothing (TRL's DPO computes the reference's log-probabilities of every
    held-out pair when it is given them)."""
    return None if args.eval_strategy == "no" else task.eval_dataset


def task_trainer(config: RunConfig, recipe: Recipe, task: Task, args: TrainingArguments, callbacks: list[Any],
                 **model: Any) -> PipelineTrainer:
    """A PipelineTrainer over a recipe's task (its data, collator and metrics) for ``model=`` a model,
    or ``model_init=`` a function that builds one per hyperparameter-search trial."""
    trainer = PipelineTrainer(layerwise_lr_decay=config.training.get("layerwise_lr_decay"), causal=recipe.causal,
                              head_on_labelled_tokens=recipe.head_on_labelled_tokens,
                              args=args, train_dataset=task.train_dataset, eval_dataset=evaluated(task, args),
                              data_collator=task.collator, processing_class=task.tokenizer,
                              compute_metrics=task.compute_metrics, preprocess_logits_for_metrics=task.preprocess_logits,
                              callbacks=callbacks, **model)
    if args.disable_tqdm:
        trainer.remove_callback(PrinterCallback)  # it would print each log dict beside our progress line
    return trainer


def train(config: RunConfig, recipe: Recipe, overwrite: bool = False, resume: str | None = None) -> Path:
    """Run ``config`` with ``recipe`` through Trainer end to end and return the run folder; ``resume``
    ("latest" or a checkpoint path) continues an interrupted run from its checkpoint."""
    check_machine(config)
    recipe.check(config)
    # Before the config is saved or compared with a resumed run's: the run records what it does.
    resolve_lora_targets(config)
    resolve_training(config, recipe)
    set_seed(config.seed)  # before the task head is initialised: the same seed gives the same run
    checkpoint = None
    if resume:
        run_dir, checkpoint = run_folder.resume_checkpoint(config, resume)
        run_folder.check_same_config(config, run_dir)
        log.info(f"resuming from {checkpoint}")
    else:
        # Every process checks; then the main one alone writes the run folder while the others wait.
        from accelerate import PartialState

        state = PartialState(cpu=cpu_only())  # the same state TrainingArguments will use
        run_dir = run_folder.check_output_dir(config, overwrite)
        state.wait_for_everyone()
        if state.is_main_process:
            run_folder.prepare(config, overwrite)
        state.wait_for_everyone()
    task = recipe.build(config)
    attention = prepare_model(task, config)
    model = apply_method(task.model, config, recipe.peft_task_type, recipe.fresh_head, task.new_token_ids)
    params = parameter_report(model)
    log.info(f"model: {config.model} with method {config.method}: {params['trainable']:,} trainable of "
          f"{params['total']:,} parameters ({params['percent']:.2f}%)")
    args, patience = training_arguments(config, run_dir, task)
    precision = "bf16 autocast" if args.bf16 else "fp16" if args.fp16 else "fp32"
    log.info(f"training: {precision}, {getattr(args.optim, 'value', args.optim)}, lr {args.learning_rate:g}, batch "
          f"{args.per_device_train_batch_size} x {args.gradient_accumulation_steps} accumulation, {attention} attention")
    callbacks = [ProgressLine(), NonFiniteLossGuard(), MetricsLog(run_dir / run_folder.LOG_FILE)]
    if patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=patience))
    if config.method == "adalora":
        callbacks.append(AdaLoraSchedule())
    if task.trainer_class:
        trainer = task.trainer_class(model=model, args=args, train_dataset=task.train_dataset,
                                     eval_dataset=evaluated(task, args), processing_class=task.tokenizer,
                                     callbacks=callbacks)
        trainer.remove_callback(PrinterCallback)
    else:
        trainer = task_trainer(config, recipe, task, args, callbacks, model=model)
    if task.score and not checkpoint and trainer.is_world_process_zero():
        before = task.score(model)
        log.info("before training: " + " | ".join(f"{k} {v:.4f}" for k, v in before.items()))
        run_folder.save_metrics(run_dir, {"before": before})
    start = time.perf_counter()
    try:
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        train_seconds = time.perf_counter() - start
        full_state = full_state_dict(trainer)  # sharded training: every process helps gather the weights
        end_zero3_loading()
        peaks = gather_object([peak_memory_mb()])  # every process's, for the scaling comparisons
        if not trainer.is_world_process_zero():
            leave_process_group()
            return run_dir
        # The best checkpoint is loaded (load_best_model_at_end); save it before anything else can fail.
        model.save_pretrained(run_dir, state_dict=full_state)
        task.tokenizer.save_pretrained(run_dir)
        run_folder.save_labels(run_dir, task.label_names)
    except OSError as exc:  # a full disk, a vanished folder: the checkpoints written so far stay usable
        raise PipelineError(f"could not write the run ({exc.strerror or exc}); make room, then continue with "
                            f"pipeline train ... --resume (complete checkpoints: "
                            f"{len(run_folder.complete_checkpoints(run_dir))} in {run_dir / run_folder.CHECKPOINTS})") from None
    run_folder.save_metrics(run_dir, {
        "parameters": params,
        "train": {"seconds": round(train_seconds, 1), "steps": result.global_step,
                  "samples_per_second": result.metrics.get("train_samples_per_second"),
                  "loss": result.metrics.get("train_loss"),
                  "best_checkpoint": trainer.state.best_model_checkpoint, "attention": attention,
                  "peak_memory_mb": max(peaks), "peak_memory_mb_per_process": peaks},
    })
    del trainer, model  # the final scores come from the saved run, reloaded as `pipeline evaluate` reloads it
    finish_run(config, recipe, run_dir, task.final_splits)
    leave_process_group()
    return run_dir


def finish_run(config: RunConfig, recipe: Recipe, run_dir: Path, splits: tuple[str, ...]) -> None:
    """After the weights are saved: score ``splits`` from the reloaded run, plot the curves, write the
    log table and the model card, record the run's files, and push when the config asks."""
    for split in splits:
        recipe.evaluate_run(run_dir, split)
    plot_curves(run_dir / run_folder.LOG_FILE, run_dir / "training_curves.png", recipe.metric)
    run_folder.write_csv_log(run_dir)
    write_model_card(run_dir, recipe)
    run_folder.record_outputs(run_dir)  # everything the run wrote: what --overwrite may remove later
    log.info(f"run folder: {run_dir}")
    if config.hub.push_to_hub:
        push(run_dir, config.hub.repo_id, recipe, private=config.hub.private, merged=config.hub.merged)
