"""What a recipe is: the one interface every command asks instead of assuming a task.

A recipe says *what* a task is: which transformers auto class holds its model, which peft task type
wraps it, which validation metric picks the best checkpoint, how to build the model and data for a
run, how to score a finished run, and which commands make sense for its runs. It sits below
training, inference and the run folder, which receive a recipe object; it imports only models (the
Auto class lookup) and errors. Recipes themselves (``recipes/``) are reached through
``pipeline.registry`` alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from pipeline.errors import PipelineError
from pipeline.models.pretrained import auto_model_class

# Every command that takes a run folder or a recipe config, in the order the README's table lists them.
COMMANDS = ("train", "evaluate", "compare", "tune", "predict", "serve", "ner", "qa", "fill-mask", "generate", "chat",
            "inspect", "export", "push")


@dataclass
class Task:
    """What a recipe builds for a run: a model with its task head, tokenized data, and how to score it."""
    model: Any  # torch.nn.Module
    tokenizer: Any
    train_dataset: Any
    eval_dataset: Any
    collator: Callable
    compute_metrics: Callable | None
    label_names: list[str] = field(default_factory=list)
    final_splits: tuple[str, ...] = ("validation",)  # labelled splits scored at the end (evaluate_run)
    preprocess_logits: Callable | None = None  # Trainer's preprocess_logits_for_metrics
    # language models: scores a model on the validation set with the scorer ``evaluate_run`` uses, so
    # the starting model's scores ("before" in metrics.json) compare like with like with the final ones
    score: Callable[[Any], dict[str, float]] | None = None
    # An objective that is not the model's own loss (preference pairs) trains through its own Trainer
    # subclass (TRL's), built as trainer_class(model=, args=, train_dataset=, eval_dataset=,
    # processing_class=, callbacks=), with its TrainingArguments subclass and that class's own settings.
    trainer_class: Callable[..., Any] | None = None
    arguments_class: type | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    # tokens the recipe added to the vocabulary (a chat template's): their embedding rows are new, so
    # they train and are saved with the run (methods that cannot train them are refused)
    new_token_ids: list[int] = field(default_factory=list)


class Recipe:
    """The interface. Subclasses set the class attributes and implement ``build`` and ``evaluate_run``."""

    name: ClassVar[str]
    summary: ClassVar[str]
    auto_class: ClassVar[str]  # transformers auto class name, e.g. AutoModelForSequenceClassification
    peft_task_type: ClassVar[str | None]  # peft TaskType name; None: peft's generic wrapper
    metric: ClassVar[str]  # the validation metric that picks the best checkpoint
    greater_is_better: ClassVar[bool] = True
    commands: ClassVar[frozenset[str]]  # the commands its runs support
    usage: ClassVar[str]  # a command line that uses a finished run, with {run}
    causal: ClassVar[bool] = False  # logits at position t predict token t + 1
    chat: ClassVar[bool] = False  # trained on conversations: prompts go through the run's chat template
    # whether the task model puts a fresh head on the base (classifiers), which then trains in full
    # under every method; a language model's head is pretrained (and often tied to the embeddings)
    fresh_head: ClassVar[bool] = False
    # whether training computes the head on the labelled tokens alone (masked LM: the masked 15%),
    # which a per-token head over a large vocabulary makes far cheaper than every position
    head_on_labelled_tokens: ClassVar[bool] = False
    # whether augment (EDA word edits of training texts) applies to this recipe's data, and if not,
    # why in its own terms; checked before anything loads so that augment.factor is never ignored
    augments: ClassVar[bool] = False
    augment_refusal: ClassVar[str] = ""

    def build(self, config: Any) -> Task:
        raise NotImplementedError

    def evaluate_run(self, run_dir: Path, split: str, batch_size: int | None = None, options: Any = None) -> dict[str, Any]:
        """Reload a finished run (``options``: an ``inference.LoadOptions``: device, precision, trust
        flags) and score ``split``, recording the scores in the run folder. Training records its final
        scores through this same function, so ``pipeline evaluate`` reproduces them exactly."""
        raise NotImplementedError

    def training_defaults(self, config: Any) -> dict[str, Any]:
        """The recipe's own TrainingArguments settings, e.g. ``label_names``: the batch fields Trainer
        hands to compute_metrics as labels (peft's generic wrapper hides them from Trainer's lookup)."""
        return {}

    def model_class(self, config: Any) -> Any:
        """The transformers class that loads this recipe's model for ``config``."""
        return auto_model_class(self.auto_class)

    def check(self, config: Any) -> None:
        """Refuse, in one line and before anything loads, settings this recipe cannot honour."""
        if config.augment.factor and not self.augments:
            why = self.augment_refusal or (f"augment edits the words of texts labelled as a whole "
                                           f"(sequence_classification); {self.name} runs do not use it")
            raise PipelineError(f"{why}; set augment.factor=0")

    def require(self, command: str) -> None:
        """Refuse, in one line, a command that does not apply to this recipe's runs."""
        if command not in self.commands:
            others = ", ".join(c for c in COMMANDS if c in self.commands)
            raise PipelineError(f"`pipeline {command}` does not apply to {self.name} runs; "
                                f"{self.name} runs support: {others}")
