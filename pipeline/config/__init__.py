"""The run config: its schema (``schema``: one pydantic model per section, limits and choices beside
each field, the training section checked against TrainingArguments) and its files (``loader``: YAML
with the safe loader, ``dotted.key=value`` overrides, validation into one-line messages, secrets
refused, shipped configs found by name).

May import: ``registry`` (recipe names), ``errors``, ``log``."""
