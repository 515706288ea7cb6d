"""Metrics: classification and entity scores, confusion tables and plots (``scores``), and the same
scores as ``evaluate`` modules for your own loops (``modules``: ``evaluate.load(path("entity_f1"))``).

May import: ``errors``, ``log``. Not data, models or anything above."""
