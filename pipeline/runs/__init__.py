"""The run folder and what reads it: its layout and manifest (``run_folder``), loading a finished run
on a device and precision (``loading``), export as a transformers model or a runtime graph
(``export``), the model card (``model_card``) and the Hub push (``hub``).

May import: ``recipe``, ``models``, ``data``, ``metrics``, ``config``, ``registry``, ``errors``,
``log``. Not training or inference, which use it."""
