"""Models: aliases for packaged models and loading with clear errors (``pretrained``), what differs
by architecture (``architectures``: LoRA/IA3 targets, the task head), the training methods
(``methods``: full, head and the peft wrappers, default learning rates, parameter counts), the
[CLS]-only last layer for inference (``first_token``), the SetFit model a run saves
(``sentence_classifier``), and how a loaded model trains: its own dropout and its attention kernel
(``training_setup``).

May import: ``errors``, ``log``. Not data, metrics or anything above."""
