"""Data: the file readers (``readers``: CSV, TSV, JSON lines, JSON, parquet, CoNLL, text, streamed),
named datasets (``catalogue``: the local data root or the Hub), task data (``tasks``: texts and label
maps, sentences and IOB2 tags, documents, splits), language-model data (``language_modeling``:
blocks, NSP pairs, the masking collator, the LM scorer), words as a tokenizer splits them
(``words``) and training-set augmentation (``augment``).

May import: ``errors``, ``log``. Not models, metrics or anything above."""
