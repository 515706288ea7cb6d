"""Planning: decisions made over several runs or before any. ``advise`` estimates memory per method
from a model config and recommends one (reading ``crossovers.json``, measured by
bench/small_data.py); ``compare`` trains one config with several methods side by side; ``tune``
searches training settings with Optuna.

May import: ``training`` and everything below it, and ``registry``. Not inference, the API or the CLI."""
