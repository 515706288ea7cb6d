"""finetune-pipeline: from a pretrained transformer to a task model, from one YAML recipe."""
__version__ = "0.1.0"
