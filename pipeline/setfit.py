"""``method: setfit``: few-shot text classification with the ``setfit`` library.

SetFit fine-tunes a sentence encoder contrastively on pairs of training sentences (same label: pull
together, different labels: push apart), then fits a logistic-regression head on the encoder's
sentence embeddings. Our defaults draw ``setfit.pairs_per_sentence`` pairs per sentence rather than
the library's every-pair oversampling (measured in ``bench/small_data.py``: as accurate, several
times faster).

The run folder holds the fine-tuned encoder as a sentence-transformers model (``SentenceTransformer
(run_dir)`` loads it), and the head as safetensors: no pickle. ``SentenceClassifier`` joins them
into one torch module returning logits, so ``predict``, ``evaluate``, ``serve``, ``export`` and the
ONNX Runtime and OpenVINO backends run a SetFit run like any other classifier.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline import runs
from pipeline.errors import PipelineError
from pipeline.log import log
from pipeline.methods import DEFAULT_LEARNING_RATE

SETTINGS_FILE = "sentence_classifier.json"  # pooling, normalisation: what turns token states into the head's input
HEAD_FILE = "classifier_head.safetensors"
POOLING_MODES = ("cls", "mean", "max")
# The training keys a SetFit run reads (its other settings are SetFit's own); any other is refused.
SETFIT_TRAINING_KEYS = {"num_train_epochs": 1, "per_device_train_batch_size": 16,
                        "learning_rate": DEFAULT_LEARNING_RATE["setfit"],
                        "warmup_steps": 0.1, "max_steps": -1, "logging_steps": 10}


def is_setfit_run(run_dir: str | Path) -> bool:
    return (Path(run_dir) / SETTINGS_FILE).exists()


def run_files(run_dir: str | Path) -> list[str]:
    """A SetFit run's files beyond a transformers model's (what a push uploads): the head, its
    settings, and the sentence-transformers module files (``1_Pooling/config.json``, ...)."""
    run_dir = Path(run_dir)
    names = [SETTINGS_FILE, HEAD_FILE, "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"]
    modules = json.loads((run_dir / "modules.json").read_text()) if (run_dir / "modules.json").exists() else []
    for module in modules:
        if module.get("path"):
            names += [p.relative_to(run_dir).as_posix() for p in sorted((run_dir / module["path"]).rglob("*"))
                      if p.is_file()]
    return [name for name in names if (run_dir / name).is_file()]


class SentenceClassifier(torch.nn.Module):
    """A sentence encoder, its pooling, optional L2 normalisation and a linear head, as one module
    whose output has ``.logits`` like a transformers classifier's."""

    def __init__(self, encoder: Any, head: torch.nn.Linear, pooling: str, normalize: bool):
        super().__init__()
        if pooling not in POOLING_MODES:
            raise PipelineError(f"sentence pooling {pooling!r} is not supported; supported: {', '.join(POOLING_MODES)}")
        self.encoder, self.head, self.pooling, self.normalize = encoder, head, pooling, normalize
        import inspect

        self._takes_token_types = "token_type_ids" in inspect.signature(encoder.forward).parameters

    @property
    def config(self) -> Any:
        return self.encoder.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False) -> Any:
        from transformers.modeling_outputs import SequenceClassifierOutput

        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None and self._takes_token_types else {}
        encoded = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                               output_hidden_states=output_hidden_states, **extra)
        embedding = pool(encoded.last_hidden_state, attention_mask, self.pooling)
        if self.normalize:
            embedding = torch.nn.functional.normalize(embedding, dim=-1)
        return SequenceClassifierOutput(logits=self.head(embedding),
                                        hidden_states=encoded.hidden_states)

    def save_pretrained(self, folder: str | Path, **_: Any) -> None:
        """The encoder as a transformers model, the pooling settings and the head beside it."""
        from safetensors.torch import save_file

        folder = Path(folder)
        self.encoder.save_pretrained(folder)
        settings = {"pooling": self.pooling, "normalize": self.normalize, "labels": self.head.out_features}
        (folder / SETTINGS_FILE).write_text(json.dumps(settings, indent=1) + "\n", encoding="utf-8")
        save_file({"weight": self.head.weight.detach().float().contiguous(),
                   "bias": self.head.bias.detach().float().contiguous()}, str(folder / HEAD_FILE))

    @classmethod
    def from_pretrained(cls, folder: str | Path, trust_remote_code: bool = False) -> "SentenceClassifier":
        from safetensors.torch import load_file
        from transformers import AutoModel

        from pipeline.models import load_pretrained

        folder = Path(folder)
        settings = json.loads((folder / SETTINGS_FILE).read_text(encoding="utf-8"))
        if not (folder / HEAD_FILE).exists():
            raise PipelineError(f"SetFit run {folder} has no {HEAD_FILE}; the run did not finish, train it again")
        weights = load_file(str(folder / HEAD_FILE))
        head = torch.nn.Linear(weights["weight"].shape[1], weights["weight"].shape[0])
        head.load_state_dict(weights)
        encoder = load_pretrained(AutoModel, str(folder), trust_remote_code)
        return cls(encoder, head, settings["pooling"], settings["normalize"]).eval()


def pool(states: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """One vector per text from the token states, padding left out (sentence-transformers' Pooling)."""
    if mode == "cls":
        return states[:, 0]
    keep = mask.unsqueeze(-1).to(states.dtype)
    if mode == "max":
        return states.masked_fill(keep == 0, torch.finfo(states.dtype).min).max(dim=1).values
    return (states * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1e-9)


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

    from pipeline.models import load_model_config

    config = load_model_config(model_name)
    if config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES or getattr(config, "is_decoder", False):
        raise PipelineError(f"method setfit needs a bidirectional sentence encoder (minilm, mpnet, BERT-style "
                            f"models); {model_name!r} is a {config.model_type} model: choose method lora for it")


def setfit_settings(config: Any) -> dict[str, Any]:
    """SetFit's settings from the training section: our keys with SetFit's meaning, nothing else."""
    unknown = sorted(set(config.training) - set(SETFIT_TRAINING_KEYS))
    if unknown:
        raise PipelineError(f"training.{unknown[0]} does not apply to method setfit; its training keys are "
                            f"{', '.join(SETFIT_TRAINING_KEYS)} (and the setfit section)")
    settings = {**SETFIT_TRAINING_KEYS, **config.training}
    for key in ("num_train_epochs", "per_device_train_batch_size", "max_steps", "logging_steps"):
        if float(settings[key]) != int(settings[key]):
            raise PipelineError(f"training.{key}={settings[key]} must be a whole number for method setfit")
        settings[key] = int(settings[key])
    return settings


def train_setfit(config: Any, recipe: Any, overwrite: bool = False) -> Path:
    """Train ``config`` (method setfit) and write a run folder like every other method's."""
    from transformers import set_seed

    from pipeline.data import load_text_classification, split_summary
    from pipeline.export import require
    from pipeline.models import check_pickles, resolve_model
    from pipeline.training import finish_run, peak_memory_mb

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
    run_dir = runs.prepare(config, overwrite)
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
        output_dir=str(run_dir / runs.CHECKPOINTS), batch_size=settings["per_device_train_batch_size"],
        num_epochs=settings["num_train_epochs"], max_steps=max_steps,
        num_iterations=config.setfit.pairs_per_sentence, body_learning_rate=settings["learning_rate"],
        warmup_proportion=settings["warmup_steps"], max_length=config.dataset.max_length, seed=config.seed,
        logging_steps=settings["logging_steps"], save_strategy="no", report_to="none", show_progress_bar=False)
    log.info(f"model: {config.model} with method setfit: {pairs:,} sentence pairs per epoch, "
             f"then a logistic-regression head on {pooling}-pooled{' normalised' if normalize else ''} embeddings")
    from transformers.trainer_callback import PrinterCallback

    from pipeline.callbacks import MetricsLog, PairLossAsLoss, ProgressLine

    trainer = setfit.Trainer(model=model, args=args, train_dataset=train_rows.select_columns(["text", "label"]),
                             callbacks=[PairLossAsLoss(), ProgressLine(), MetricsLog(run_dir / runs.LOG_FILE)])
    trainer.st_trainer.remove_callback(PrinterCallback)  # it would print each log dict beside our progress line
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    shutil.rmtree(run_dir / runs.CHECKPOINTS, ignore_errors=True)  # SetFit's output_dir; nothing is saved there
    body = model.model_body
    classifier = SentenceClassifier(body[0].auto_model, linear_head(model.model_head, len(label_names)),
                                    pooling, normalize)
    body.save(str(run_dir))  # sentence-transformers' own files, so SentenceTransformer(run_dir) loads the encoder
    classifier.save_pretrained(run_dir)
    body.tokenizer.save_pretrained(run_dir)
    runs.save_labels(run_dir, label_names)
    total = sum(p.numel() for p in classifier.parameters())
    steps = trainer.st_trainer.state.global_step
    runs.save_metrics(run_dir, {
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

