"""Planning a run before any weights load: LoRA parameter counts, memory per method, and a method
recommendation. Everything works from a model *config*: the model is built on PyTorch's meta device
(shapes only, no memory, no download of weights), and the configs of common Hub models ship with
the package so that ``bert-base-uncased`` works offline too.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pipeline.config.schema import ALL_LINEAR
from pipeline.errors import PipelineError
from pipeline.models.architectures import (block_linear_layers, head_modules, linear_layer_names, linear_layers,
                                          lora_targets)
from pipeline.models.methods import expand_target_aliases
from pipeline.models.pretrained import load_model_config, skeleton
from pipeline.registry import get_recipe

GiB = 2**30
# The recipes that put a fresh head on a pretrained encoder, with what a plan assumes when the user
# says nothing: the head's outputs (labels; a span head's start and end) and tokens per row (a
# question-answering window is 384).
PLANNED_RECIPES = {"sequence_classification": {"num_labels": 2, "seq_len": 128},
                   "token_classification": {"num_labels": 9, "seq_len": 128},  # CoNLL-2003's IOB2 tags
                   "question_answering": {"num_labels": 2, "seq_len": 384}}
DISPLAY = {"full": "full fine-tuning", "head": "head-only training", "lora": "LoRA", "ia3": "IA3", "prompt": "prompt tuning",
           "setfit": "SetFit"}


# --------------------------------------------------------------------------------------------
# LoRA parameter counts


@dataclass
class LoraTarget:
    target: str  # as the user named it
    shape: tuple[int, int]  # (in_features, out_features) of each matched layer
    modules: list[str]
    per_module: int  # r * (in + out)

    @property
    def total(self) -> int:
        return self.per_module * len(self.modules)


@dataclass
class LoraCount:
    r: int
    targets: list[LoraTarget]
    targeted_weights: int  # parameters in the adapted weight matrices
    model_parameters: int
    head: int = 0  # the task head's parameters, which train in full beside the adapter
    recipe: str | None = None  # the task the model was built for; None: the bare base

    @property
    def total(self) -> int:
        return sum(t.total for t in self.targets)

    @property
    def percent_of_targeted(self) -> float:
        return 100.0 * self.total / max(self.targeted_weights, 1)

    @property
    def percent_of_model(self) -> float:
        return 100.0 * self.total / max(self.model_parameters, 1)


def lora_parameters(model: torch.nn.Module, r: int, targets: list[str]) -> LoraCount:
    """LoRA adds A (r x in) and B (out x r) beside each targeted linear layer: r * (in + out)
    parameters per layer. Targets match module names by their last dotted parts, as in peft."""
    if r <= 0:
        raise PipelineError(f"--r must be positive, got {r}")
    if list(targets) == [ALL_LINEAR]:  # as a run resolves it: the blocks' linear layers
        targets = block_linear_layers(model)
    linear = linear_layers(model)
    rows, targeted, counted = [], 0, set()
    for user_target, target in zip(targets, expand_target_aliases(list(linear), targets)):
        matched = [n for n in linear if n == target or n.endswith("." + target)]
        names = [n for n in matched if n not in counted]  # output.dense also matches attention.output.dense
        counted.update(names)
        if not matched:
            short = sorted(linear_layer_names(model))
            raise PipelineError(f"target {user_target!r} matches no linear layer; linear layers are named "
                                f"{', '.join(short)} (or use a longer suffix such as attention.output.dense)")
        by_shape: dict[tuple[int, int], list[str]] = {}
        for n in names:
            by_shape.setdefault(linear[n], []).append(n)
        for shape, group in by_shape.items():
            rows.append(LoraTarget(user_target, shape, group, r * (shape[0] + shape[1])))
            targeted += len(group) * shape[0] * shape[1]
    total = sum(p.numel() for p in model.parameters())
    return LoraCount(r, rows, targeted, total)


def task_model(model_name: str, recipe: str | None = None, num_labels: int | None = None) -> Any:
    """The model a run of ``recipe`` trains, built on the meta device from the config alone: the base
    with the recipe's fresh head (classifier, tagger or span head), or the bare base without a recipe."""
    config = load_model_config(model_name)
    if recipe is None:
        return skeleton(config)
    if recipe not in PLANNED_RECIPES:
        raise PipelineError(f"--recipe {recipe}: plans cover the recipes that put a head on an encoder: "
                            f"{', '.join(PLANNED_RECIPES)}")
    config.num_labels = num_labels or PLANNED_RECIPES[recipe]["num_labels"]
    return skeleton(config, get_recipe(recipe).auto_class)


def head_parameters(model: torch.nn.Module) -> int:
    """Parameters of the fresh task head (BERT's pooler included where the head reads it): what
    trains in full beside an adapter."""
    modules = dict(model.named_modules())
    return sum(p.numel() for name in head_modules(model) for p in modules[name].parameters())


def lora_count(model_name: str, r: int, targets: list[str] | None = None, recipe: str | None = None) -> LoraCount:
    """``pipeline lora-params``: LoRA parameters for a model named by alias, Hub id or folder (with
    ``recipe``, the task model, whose head trains in full beside the adapter); without ``targets``,
    the architecture's default query/value projections (what a run would adapt)."""
    config = load_model_config(model_name)
    model = task_model(model_name, recipe)
    if targets is None:
        targets = lora_targets(config.model_type, [n for n, _ in model.named_modules()])
    if not targets:
        raise PipelineError("--targets is empty; name modules, e.g. query,value")
    count = lora_parameters(model, r, targets)
    count.head = head_parameters(model) if recipe else 0
    count.recipe = recipe
    return count


def format_lora_count(count: LoraCount, model_name: str) -> str:
    what = f"{model_name} for {count.recipe}" if count.recipe else model_name
    lines = [f"LoRA r={count.r} on {what} ({count.model_parameters:,} parameters)",
             f"{'target':24s} {'layers':>6s} {'shape (in x out)':>17s} {'per layer':>11s} {'total':>11s}"]
    for t in count.targets:
        example = re.sub(r"\.\d+\.", ".N.", t.modules[0])
        lines.append(f"{t.target:24s} {len(t.modules):6d} {f'{t.shape[0]} x {t.shape[1]}':>17s} "
                     f"{t.per_module:11,d} {t.total:11,d}   e.g. {example}")
    lines.append(f"total LoRA parameters: {count.total:,} = {count.percent_of_targeted:.2f}% of the "
                 f"{count.targeted_weights:,} targeted weights, {count.percent_of_model:.2f}% of the model")
    if count.recipe:
        trainable = count.total + count.head
        lines.append(f"the {count.recipe} head trains in full beside them: {count.head:,} parameters; trainable in "
                     f"all {trainable:,} ({100 * trainable / max(count.model_parameters, 1):.2f}% of the model)")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Memory estimates and the advisor

# Framework overhead on a GPU (CUDA context, allocator slack): about half a GiB in practice.
OVERHEAD_BYTES = 0.5 * GiB


@dataclass
class MethodEstimate:
    method: str
    trainable: int
    weights: float  # bytes
    gradients: float
    optimizer: float
    activations: float
    storage_per_task: float  # bytes on disk for one more task (fp32 safetensors)

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations + OVERHEAD_BYTES


def activation_bytes(config: Any, batch: int, seq_len: int, bytes_per_value: int, stored_layers: int) -> float:
    """Activations kept for the backward pass: s*b*h*(34 + 5*a*s/h) bytes per transformer layer at
    16-bit (Korthikanti et al., 2022, "Reducing Activation Recomputation in Large Transformer
    Models"), doubled at fp32."""
    h, a = config.hidden_size, config.num_attention_heads
    per_layer = seq_len * batch * h * (34 + 5 * a * seq_len / h)
    return per_layer * stored_layers * bytes_per_value / 2


def estimate(config: Any, model: torch.nn.Module, batch: int, seq_len: int, precision: str, r: int = 8,
             targets: tuple[str, ...] | None = None, virtual_tokens: int = 20) -> list[MethodEstimate]:
    """Training memory per method for ``model``, the task model (its fresh head included).
    ``precision`` fp32: 4 bytes per weight; bf16: the frozen weights in bf16 (2 bytes), trainable
    ones as fp32 masters (4 bytes). Gradients 4 bytes and AdamW's two moments 8 bytes per trainable
    parameter."""
    params = sum(p.numel() for p in model.parameters())
    h, layers = config.hidden_size, config.num_hidden_layers
    head = head_parameters(model)  # what head-only and the peft methods train in full
    if targets is None:  # what a run with no lora.target_modules adapts
        targets = tuple(lora_targets(config.model_type, [n for n, _ in model.named_modules()]))
    lora = lora_parameters(model, r, list(targets)).total + head
    ia3 = layers * (2 * h + config.intermediate_size) + head
    prompt = virtual_tokens * h + head
    frozen_bytes = 4 if precision == "fp32" else 2
    act_bytes = 4 if precision == "fp32" else 2
    rows = []
    for method, trainable, stored, seq in [("full", params, layers, seq_len), ("head", head, 1, seq_len),
                                           ("lora", lora, layers, seq_len), ("ia3", ia3, layers, seq_len),
                                           ("prompt", prompt, layers, seq_len + virtual_tokens)]:
        frozen = params - trainable
        rows.append(MethodEstimate(
            method, trainable, weights=frozen * frozen_bytes + trainable * 4, gradients=trainable * 4.0,
            optimizer=trainable * 8.0, activations=activation_bytes(config, batch, seq, act_bytes, stored),
            storage_per_task=trainable * 4.0))
    return rows


@dataclass
class Advice:
    method: str  # the recommendation: full, lora, head
    summary: str
    reasons: list[str] = field(default_factory=list)
    tune: bool = False  # search the learning rate and epochs with `pipeline tune`
    shared_base: bool = False  # one base model with one adapter per task
    estimates: dict[str, list[MethodEstimate]] = field(default_factory=dict)  # precision -> rows
    recipe: str = "sequence_classification"
    seq_len: int = 128  # tokens per row the estimates assume


def parse_memory(text: str) -> float:
    """'16GB', '16 GiB', '8g', '24000MB' -> bytes (GB and GiB are read alike: GPU makers' GB are GiB)."""
    found = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([gmt]i?b?)?\s*", text.lower())
    if not found:
        raise PipelineError(f"--gpu-memory {text!r} is not a size; write e.g. 16GB or 24000MB")
    scale = {"g": GiB, "m": 2**20, "t": 2**40}[(found.group(2) or "g")[0]]
    return float(found.group(1)) * scale


CROSSOVERS = Path(__file__).parent / "crossovers.json"  # written by bench/small_data.py


def crossovers() -> dict[str, Any] | None:
    """Which method won at which training-set size, as bench/small_data.py measured it."""
    return json.loads(CROSSOVERS.read_text()) if CROSSOVERS.exists() else None


def nearest_measured(rows: list[dict[str, Any]], train_size: int) -> dict[str, Any]:
    """The measured size closest to ``train_size`` on a log scale (sizes grow by factors of four)."""
    return min(rows, key=lambda row: abs(math.log(row["train_size"] / train_size)))


def advise(model_name: str, train_size: int, gpu_memory: float, tasks: int = 1, seq_len: int | None = None,
           batch_size: int = 32, recipe: str = "sequence_classification", num_labels: int | None = None) -> Advice:
    """Recommend a method for a ``recipe`` run from the data size, the memory at hand and the number
    of tasks; ``seq_len`` defaults to the recipe's (384-token windows for question answering).

    The rules, in order: several tasks sharing a deployment -> one base with one LoRA adapter per
    task; for sentence classification up to the largest training-set size bench/small_data.py
    measured (``crossovers.json``) -> the method that won at the measured size nearest the user's
    (if it fits in memory); otherwise full fine-tuning when it fits (enough data to move every
    weight, usually the best accuracy), else LoRA, else head-only.
    """
    if recipe not in PLANNED_RECIPES:
        raise PipelineError(f"--recipe {recipe}: plans cover the recipes that put a head on an encoder: "
                            f"{', '.join(PLANNED_RECIPES)}")
    seq_len = seq_len or PLANNED_RECIPES[recipe]["seq_len"]
    if train_size <= 0 or tasks <= 0 or seq_len <= 0 or batch_size <= 0 or (num_labels is not None and num_labels <= 0):
        raise PipelineError("--train-size, --tasks, --seq-len, --batch-size and --labels must be positive")
    table = crossovers()
    # measured on SST-2 sentences: it says nothing of tagging or span reading
    measured = table["crossovers"] if table and recipe == "sequence_classification" else []
    config = load_model_config(model_name)
    model = task_model(model_name, recipe, num_labels)
    rows = {p: estimate(config, model, batch_size, seq_len, p) for p in ("fp32", "bf16")}
    best = {r.method: r for r in rows["bf16"]}  # bf16 mixed precision: what a modern GPU run uses
    fits = {m for m, r in best.items() if r.total <= gpu_memory}
    gib = lambda b: f"{b / GiB:.1f} GiB"  # noqa: E731
    params = best["full"].trainable
    reasons: list[str] = []
    if tasks > 1:
        method = "lora" if "lora" in fits else "head"
        full_storage = tasks * best["full"].storage_per_task
        shared = best["full"].storage_per_task + tasks * best[method].storage_per_task
        reasons += [f"{tasks} tasks: {tasks} fully fine-tuned copies take {gib(full_storage)} on disk and in serving "
                    f"memory; one base plus {tasks} {method} adapters take {gib(shared)} "
                    f"({best[method].storage_per_task / 2**20:.1f} MiB per task)",
                    "one process serves every task: the base loads once and requests pick their adapter "
                    "(pipeline serve --adapter NAME=RUN ...)"]
        advice = Advice(method, f"one {model_name} base with {tasks} {DISPLAY[method]} adapters, one per task"
                        if method == "lora" else f"one {model_name} base with {tasks} trained heads, one per task",
                        reasons, shared_base=True)
    elif measured and train_size <= measured[-1]["train_size"]:
        row = nearest_measured(measured, train_size)
        method = row["best"]
        trains = "full" if method == "setfit" else method  # SetFit trains every encoder weight, on sentence pairs
        if trains not in fits:
            method = trains = "lora" if "lora" in fits else "head"
        scores = ", ".join(f"{m} {a:.3f}" for m, a in sorted(row["accuracy_by_method"].items(), key=lambda x: -x[1]))
        winners = ", ".join(f"{r['train_size']:,} {r['best']}" for r in measured)
        reasons += [f"measured at {row['train_size']:,} training sentences (SST-2, {table['model']}, dev accuracy, "
                    f"mean of {len(table['seeds'])} seeds; bench/small_data.py): {scores}; the best method by "
                    f"training-set size: {winners}"]
        if method == "setfit":
            reasons += ["SetFit fine-tunes the sentence encoder on pairs of training sentences, then fits a "
                        "logistic-regression head (method: setfit; recipes/configs/sst2_setfit.yaml)"]
            advice = Advice(method, "SetFit (contrastive sentence pairs, then a classification head)", reasons)
        else:
            reasons += [f"{train_size:,} rows against {params / 1e6:.0f}M parameters: search the learning rate and "
                        f"epochs (pipeline tune CONFIG --trials 12), with early stopping on the validation metric "
                        f"(training.early_stopping_patience=2)"]
            advice = Advice(method, f"{DISPLAY[method]} with a searched learning rate and early stopping", reasons,
                            tune=True)
    elif "full" in fits:
        reasons += [f"{train_size:,} rows are enough to move every weight; full fine-tuning is usually the most "
                    f"accurate (LoRA typically lands within a point of it)",
                    f"it fits: about {gib(best['full'].total)} in bf16 mixed precision at batch {batch_size} x "
                    f"{seq_len} tokens, of {gib(gpu_memory)}"]
        advice = Advice("full", "full fine-tuning", reasons)
    elif "lora" in fits:
        reasons += [f"full fine-tuning needs about {gib(best['full'].total)}, more than {gib(gpu_memory)}; "
                    f"LoRA needs {gib(best['lora'].total)} (no gradients or optimizer state for the base)"]
        advice = Advice("lora", "LoRA (full fine-tuning does not fit)", reasons)
    else:
        reasons += [f"even LoRA needs about {gib(best['lora'].total)} at batch {batch_size}; lower --batch-size "
                    f"or --seq-len, or train the head alone ({gib(best['head'].total)})"]
        advice = Advice("head", "head-only training (nothing else fits)", reasons)
    if advice.method != "full" and "full" not in fits:
        advice.reasons.append(f"full fine-tuning would need about {gib(best['full'].total)} of {gib(gpu_memory)}")
    advice.estimates, advice.recipe, advice.seq_len = rows, recipe, seq_len
    return advice


def format_advice(advice: Advice, model_name: str, gpu_memory: float, batch_size: int) -> str:
    lines = [f"memory to train {model_name} for {advice.recipe} at batch {batch_size} x {advice.seq_len} tokens (AdamW; "
             f"+{OVERHEAD_BYTES / GiB:.1f} GiB framework overhead in the totals):",
             f"{'method':8s} {'trainable':>12s} {'weights':>9s} {'grads':>9s} {'AdamW':>9s} {'activ.':>9s} "
             f"{'total fp32':>11s} {'total bf16':>11s} {'per task':>10s}"]
    gib = lambda b: f"{b / GiB:.2f}G"  # noqa: E731
    for fp32, bf16 in zip(advice.estimates["fp32"], advice.estimates["bf16"]):
        fit = "" if bf16.total <= gpu_memory else "  (does not fit)"
        lines.append(f"{bf16.method:8s} {bf16.trainable:12,d} {gib(bf16.weights):>9s} {gib(bf16.gradients):>9s} "
                     f"{gib(bf16.optimizer):>9s} {gib(bf16.activations):>9s} {gib(fp32.total):>11s} "
                     f"{gib(bf16.total):>11s} {bf16.storage_per_task / 2**20:>8.1f}M{fit}")
    lines.append("(weights/grads/AdamW/activations columns: bf16 mixed precision)")
    lines.append(f"recommendation: {advice.summary}")
    lines += [f"  - {reason}" for reason in advice.reasons]
    return "\n".join(lines)
