"""``method: setfit``: few-shot text classification with the ``setfit`` library.

SetFit fine-tunes a sentence encoder contrastively on pairs of training sentences (same label: pull
together, different labels: push apart), then fits a logistic-regression head on the encoder's
sentence embeddings. Our defaults draw ``setfit.pairs_per_sentence`` pairs per sentence rather than
the library's every-pair oversampling (measured in ``bench/small_data.py``: as accurate, several
times faster).

The trained encoder and head are saved as a ``pipeline.models.sentence_classifier.SentenceClassifier``,
which every engine, backend and export reads like any other classifier.
"""
from __future__ import annotations

import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.data.tasks import load_text_classification, split_summary
from pipeline.errors import PipelineError, require
from pipeline.log import log
from pipeline.models.methods import DEFAULT_LEARNING_RATE
from pipeline.models.pretrained import check_pickles, load_model_config, resolve_model
from pipeline.models.sentence_classifier import POOLING_MODES, SentenceClassifier
from pipeline.runs import run_folder
from pipeline.training.callbacks import MetricsLog, PairLossAsLoss, ProgressLine
from pipeline.training.trainer import finish_run, peak_memory_mb

# The training keys a SetFit run reads (its other settings are SetFit's own); any other is refused.
SETFIT_TRAINING_KEYS = {"num_train_epochs": 1, "per_device_train_batch_size": 16,
                        "learning_rate": DEFAULT_LEARNING_RATE["setfit"],
                        "warmup_steps": 0.1, "max_steps": -1, "logging_steps": 10, "learning_rate_rule": None}


def linear_head(classifier: Any, n_labels: int) -> torch.nn.Linear:
    """A fitted scikit-learn LogisticRegression as a linear layer whose softmax gives its predict_proba:
    a binary model's one score z becomes the logits (0, z), since softmax(0, z) = (1 - sigmoid(z), sigmoid(z))."""
    coef, intercept = np.asarray(classifier.coef_, dtype=np.float32), np.asarray(classifier.intercept_, dtype=np.float32)
    if coef.shape[0] == 1 and n_labels == 2:
        coef = np.concatenate([np.zeros_like(coef), coef])
        intercept = np.concatenate([np.zeros_like(intercept), intercept])
    head = torch.nn.Linear(coef.shape[1], coef.shape[0])
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(coef))
        head.bias.copy_(torch.from_numpy(intercept))
    return head


def sentence_modules(body: Any, model_name: str) -> tuple[str, bool]:
    """The pooling mode and normalisation of a SentenceTransformer, refusing modules we cannot carry
    into the saved classifier (e.g. a Dense projection)."""
    pooling, normalize = None, False
    for module in body:
        kind = type(module).__name__
        if kind == "Pooling":
            settings = module.get_config_dict()
            modes = settings.get("pooling_mode")  # sentence-transformers 6; earlier: one flag per mode
            if modes is None:
                modes = [m for m in POOLING_MODES if settings.get(f"pooling_mode_{m}_tokens" if m != "cls"
                                                                  else "pooling_mode_cls_token")]
            modes = [modes] if isinstance(modes, str) else list(modes)
            if len(modes) != 1 or modes[0] not in POOLING_MODES:
                raise PipelineError(f"model {model_name!r} pools sentences by {'+'.join(map(str, modes))}; "
                                    f"method setfit supports {', '.join(POOLING_MODES)} pooling")
            pooling = modes[0]
        elif kind == "Normalize":
            normalize = True
        elif kind != "Transformer":
            raise PipelineError(f"model {model_name!r} has a {kind} module after its pooling, which method setfit "
                                f"cannot save with the classifier; choose a model of Transformer, Pooling and Normalize")
    if pooling is None:
        raise PipelineError(f"model {model_name!r} has no pooling module; method setfit needs a sentence encoder")
    return pooling, normalize


def check_encoder(model_name: str) -> None:
    """SetFit embeds sentences with a bidirectional encoder; a decoder-only language model is refused."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    config = load_model_config(model_name)
    if config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES or getattr(config, "is_decoder", False):
        raise PipelineError(f"method setfit needs a bidirectional sentence encoder (minilm, mpnet, BERT-style "
                            f"models); {model_name!r} is a {config.model_type} model: choose method lora for it")


def setfit_settings(config: Any) -> dict[str, Any]:
    """SetFit's settings from the training section: our keys with SetFit's meaning, nothing else."""
    unknown = sorted(set(config.training) - set(SETFIT_TRAINING_KEYS))
    if unknown:
        raise PipelineError(f"training.{unknown[0]} does not apply to method setfit; its training keys are "
                            f"{', '.join(k for k in SETFIT_TRAINING_KEYS if k != 'learning_rate_rule')} (and the setfit section)")
    settings = {**SETFIT_TRAINING_KEYS, **config.training}
    settings["learning_rate_rule"] = config.training.get("learning_rate_rule") or (
        "set in the config" if "learning_rate" in config.training else "method default")
    for key in ("num_train_epochs", "per_device_train_batch_size", "max_steps", "logging_steps"):
        if float(settings[key]) != int(settings[key]):
            raise PipelineError(f"training.{key}={settings[key]} must be a whole number for method setfit")
        settings[key] = int(settings[key])
    return settings


def train_setfit(config: Any, recipe: Any, overwrite: bool = False, resume: str | None = None) -> Path:
    """Train ``config`` (method setfit) and write a run folder like every other method's."""
    if resume:
        raise PipelineError("method setfit keeps no checkpoints to resume (a run takes minutes); "
                            "train again with --overwrite")
    from transformers import set_seed


    require("setfit", "setfit")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise PipelineError("method setfit trains in one process (the setfit library); run it without "
                            "accelerate launch's several processes")
    import setfit

    if config.augment.factor:
        raise PipelineError("augment does not apply to method setfit: its sentence pairs already multiply the data; "
                            "remove augment.factor")
    check_encoder(config.model)
    settings = setfit_settings(config)
    config.training = settings  # run_config.yaml records every setting the run used
    set_seed(config.seed)
    run_dir = run_folder.prepare(config, overwrite)
    data = load_text_classification(config.dataset, config.seed)
    label_names = data.label_names
    train_rows = data.splits["train"].filter(lambda row: row["label"] >= 0)
    log.info(split_summary(data.splits, label_names))
    path = resolve_model(config.model)
    check_pickles(path, config.allow_pickle)
    logging.getLogger("setfit.modeling").setLevel(logging.ERROR)  # "no model_head.pkl": the head is fitted here
    logging.getLogger("setfit.trainer").setLevel(logging.WARNING)  # our progress line says what it would
    model = setfit.SetFitModel.from_pretrained(path, trust_remote_code=config.trust_remote_code,
                                               labels=list(range(len(label_names))))
    pooling, normalize = sentence_modules(model.model_body, config.model)
    drawn = 2 * config.setfit.pairs_per_sentence * len(train_rows)  # same-label and different-label pairs
    pairs = min(drawn, config.setfit.max_pairs)
    max_steps = settings["max_steps"]
    if max_steps < 0 and pairs < drawn:
        max_steps = settings["num_train_epochs"] * math.ceil(pairs / settings["per_device_train_batch_size"])
    args = setfit.TrainingArguments(
        output_dir=str(run_dir / run_folder.CHECKPOINTS), batch_size=settings["per_device_train_batch_size"],
        num_epochs=settings["num_train_epochs"], max_steps=max_steps,
        num_iterations=config.setfit.pairs_per_sentence, body_learning_rate=settings["learning_rate"],
        warmup_proportion=settings["warmup_steps"], max_length=config.dataset.max_length, seed=config.seed,
        logging_steps=settings["logging_steps"], save_strategy="no", report_to="none", show_progress_bar=False)
    log.info(f"model: {config.model} with method setfit: {pairs:,} sentence pairs per epoch, "
             f"then a logistic-regression head on {pooling}-pooled{' normalised' if normalize else ''} embeddings")
    from transformers.trainer_callback import PrinterCallback

    trainer = setfit.Trainer(model=model, args=args, train_dataset=train_rows.select_columns(["text", "label"]),
                             callbacks=[PairLossAsLoss(), ProgressLine(), MetricsLog(run_dir / run_folder.LOG_FILE)])
    trainer.st_trainer.remove_callback(PrinterCallback)  # it would print each log dict beside our progress line
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    shutil.rmtree(run_dir / run_folder.CHECKPOINTS, ignore_errors=True)  # SetFit's output_dir; nothing is saved there
    body = model.model_body
    classifier = SentenceClassifier(body[0].auto_model, linear_head(model.model_head, len(label_names)),
                                    pooling, normalize)
    body.save(str(run_dir))  # sentence-transformers' own files, so SentenceTransformer(run_dir) loads the encoder
    classifier.save_pretrained(run_dir)
    body.tokenizer.save_pretrained(run_dir)
    run_folder.save_labels(run_dir, label_names)
    total = sum(p.numel() for p in classifier.parameters())
    steps = trainer.st_trainer.state.global_step
    run_folder.save_metrics(run_dir, {
        "parameters": {"trainable": total, "total": total, "percent": 100.0},
        "train": {"seconds": round(seconds, 1), "steps": steps, "pairs": pairs, "loss": _last_loss(trainer),
                  # a sample is a sentence pair here
                  "samples_per_second": round(steps * settings["per_device_train_batch_size"] / seconds, 2),
                  "peak_memory_mb": peak_memory_mb()},
    })
    del trainer, model, classifier
    labelled = tuple(name for name, split in data.splits.items()
                     if name != "train" and len(split) and min(split["label"]) >= 0)
    finish_run(config, recipe, run_dir, labelled)
    return run_dir


def _last_loss(trainer: Any) -> float | None:
    losses = [entry["loss"] for entry in trainer.st_trainer.state.log_history if "loss" in entry]
    return losses[-1] if losses else None

