"""Training: resolved training settings and the Trainer subclass (``trainer``), the callbacks
(``callbacks``: progress, NaN guard, JSON-lines log, AdaLoRA's schedule), what the pipeline adds to
FSDP and DeepSpeed (``distributed``), method setfit's own loop (``setfit``) and which loop trains a
run (``loops``: a method with its own loop registers it there).

May import: ``runs`` and everything below it. Not inference (its sibling), planning or the API."""
