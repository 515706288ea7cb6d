"""Task data: a dataset (named, from the catalogue, or files) checked and shaped for a recipe:
texts with integer labels and a label map, sentences with IOB2 tag ids, or documents for language
modelling; splits made and limited reproducibly. Files are read by ``pipeline.readers``, named
datasets found by ``pipeline.catalogue``.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pipeline.data.catalogue import CATALOGUE, Entry, data_root, load_named
from pipeline.data.readers import (
    Columns,
    Sentences,
    check_exists,
    documents_from_text,
    read_conll,
    read_file,
    suffix_of,
    text_lines,
)
from pipeline.errors import PipelineError
from pipeline.log import log

# --------------------------------------------------------------------------------------------
# Text classification data: columns checked, texts cleaned, labels mapped, splits made


@dataclass
class TextClassificationData:
    splits: Any  # datasets.DatasetDict with columns "text" and "label" (ids; -1 where unlabelled)
    label_names: list[str]
    dropped_empty: dict[str, int]


def load_text_classification(cfg: Any, seed: int) -> TextClassificationData:
    """Load ``cfg`` (a DatasetConfig) into train/validation[/test] with integer labels."""
    import datasets

    entry = None
    if cfg.name:
        raw, entry = load_named(cfg.name, "classification")
        source = f"dataset {cfg.name}"
    else:
        raw = {"train": read_file(cfg.train_file)}
        if cfg.validation_file:
            raw["validation"] = read_file(cfg.validation_file)
        if cfg.test_file:
            raw["test"] = read_file(cfg.test_file)
        source = "dataset files"
    text_col = cfg.text_column or (entry.text_column if entry else "text")
    label_col = cfg.label_column or (entry.label_column if entry else "label")
    if "train" not in raw:
        raise PipelineError(f"{source} has no train split (splits: {', '.join(raw)})")

    texts: dict[str, list[str]] = {}
    labels: dict[str, list[Any]] = {}
    dropped: dict[str, int] = {}
    for split, columns in raw.items():
        where = _where(cfg, split, source)
        for col, role in ((text_col, "text"), (label_col, "label")):
            if col not in columns:
                raise PipelineError(f"{where} has no {role} column {col!r}; its columns are "
                                    f"{', '.join(map(str, columns))}; set dataset.{role}_column")
        kept_text, kept_label = [], []
        for i, (text, label) in enumerate(zip(columns[text_col], columns[label_col])):
            if text is None or not str(text).strip():
                dropped[split] = dropped.get(split, 0) + 1
                continue
            if label is None or (isinstance(label, str) and not label.strip()):
                if split == "test":
                    label = None
                else:
                    raise PipelineError(f"{where} row {i + 1} has no label; fill it in or remove the row")
            kept_text.append(str(text))
            kept_label.append(label)
        if not kept_text:
            raise PipelineError(f"{where}: every text in column {text_col!r} is empty; check dataset.text_column")
        texts[split], labels[split] = kept_text, kept_label
    for split, count in dropped.items():
        log.info(f"data: dropped {count} empty text(s) from {split}")

    label_names, to_id = _label_map(labels, entry, cfg, source)
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=label_names)})
    splits = {}
    for split in texts:
        ids = []
        for i, label in enumerate(labels[split]):
            if label is None:
                ids.append(-1)
                continue
            label_id = to_id(label)
            if label_id is None:
                raise PipelineError(f"{_where(cfg, split, source)} has label {label!r}, which the training "
                                    f"data never has (train labels: {', '.join(label_names)}); fix or drop those rows")
            ids.append(label_id)
        if -1 in ids:  # unlabelled (e.g. GLUE test): ClassLabel cannot hold -1
            split_features = datasets.Features({"text": datasets.Value("string"), "label": datasets.Value("int64")})
        else:
            split_features = features
        splits[split] = datasets.Dataset.from_dict({"text": texts[split], "label": ids}, features=split_features)

    dataset = datasets.DatasetDict(splits)
    if "validation" not in dataset:
        parts = dataset["train"].train_test_split(test_size=cfg.validation_split, seed=seed,
                                                  stratify_by_column="label")
        dataset["train"], dataset["validation"] = parts["train"], parts["test"]
        log.info(f"data: no validation split; held out a stratified {cfg.validation_split:.0%} of train "
              f"({len(dataset['validation'])} rows, seed {seed})")
    limit_rows(dataset, cfg, seed)
    if cfg.samples_per_label:
        dataset["train"] = per_label(dataset["train"], cfg.samples_per_label, seed)
    classes = set(dataset["train"]["label"])
    if len(classes) < 2:
        only = label_names[next(iter(classes))] if classes else "none"
        raise PipelineError(f"the training data has a single class ({only}); a classifier needs at least two "
                            f"(check dataset.label_column, or raise dataset.max_train_samples)")
    return TextClassificationData(dataset, label_names, dropped)


def _where(cfg: Any, split: str, source: str) -> str:
    file = getattr(cfg, f"{split}_file", None) if not cfg.name else None
    return f"{file} ({split})" if file else f"{source} ({split} split)"


def _label_map(labels: dict[str, list[Any]], entry: Entry | None, cfg: Any,
               source: str) -> tuple[list[str], Callable[[Any], int | None]]:
    """Label names in id order (the catalogue's, the integers 0..max, or sorted strings), and a
    function from a raw label to its id (None for a label training never had)."""
    train = [l for l in labels["train"] if l is not None]
    kinds = {_label_kind(l) for l in train}
    if len(kinds) > 1:
        counts = Counter(_label_kind(l) for l in train)
        raise PipelineError(f"{_where(cfg, 'train', source)} mixes label types ({', '.join(f'{n} {k}' for k, n in counts.items())}); "
                            f"use all integers or all strings")
    kind = kinds.pop() if kinds else "str"
    if kind == "int":
        values = sorted({int(float(str(l).strip())) for l in train})
        if values[0] < 0:
            raise PipelineError(f"{_where(cfg, 'train', source)} has negative label {values[0]}; "
                                f"integer labels must be 0..N-1 (or use label names)")
        # Integer labels keep their ids; names come from the catalogue or are the integers.
        names = list(entry.label_names) if entry and len(entry.label_names) > values[-1] else \
            [str(i) for i in range(values[-1] + 1)]
        seen = set(values)

        def int_id(label: Any) -> int | None:
            text = str(label).strip()
            if _label_kind(label) != "int":
                return None
            value = int(float(text))
            return value if value in seen else None
        return names, int_id
    names = sorted({str(l).strip() for l in train})
    ids = {name: i for i, name in enumerate(names)}
    return names, lambda label: ids.get(str(label).strip())


def _label_kind(label: Any) -> str:
    if isinstance(label, bool):
        return "bool"
    if isinstance(label, int):
        return "int"
    if isinstance(label, float):
        return "int" if label.is_integer() else "float"
    text = str(label).strip()
    if text.lstrip("-").isdigit():
        return "int"
    try:  # "1.0": pandas writes integer labels so when the column had a missing value
        return "int" if float(text).is_integer() else "str"
    except ValueError:
        return "str"


def run_split(config: Any, name: str, load: Callable[[Any, int], Any]) -> tuple[Any, list[str]]:
    """Split ``name`` of the data a run was trained on (``load``: the recipe's loader) with the data's
    label names, or a one-line error naming the splits there are."""
    data = load(config.dataset, config.seed)
    if name not in data.splits:
        raise PipelineError(f"the run's data has no {name} split (splits: {', '.join(data.splits)})")
    return data.splits[name], data.label_names


def limit_rows(dataset: Any, cfg: Any, seed: int) -> None:
    """Apply dataset.max_train_samples / max_eval_samples: seeded random subsets, in place."""
    limits = {"train": cfg.max_train_samples, "validation": cfg.max_eval_samples, "test": cfg.max_eval_samples}
    for split, n in limits.items():
        if n and split in dataset and n < len(dataset[split]):
            dataset[split] = dataset[split].shuffle(seed=seed).select(range(n))


def split_summary(splits: Any, label_names: list[str], unit: str = "rows", labels: str = "labels") -> str:
    """The log line a run starts with: the size of each split and the label names."""
    return ("data: " + ", ".join(f"{name} {len(split):,}" for name, split in splits.items()) +
            f" {unit}; {labels}: {', '.join(label_names)}")


def per_label(split: Any, n: int, seed: int) -> Any:
    """A few-shot training set: ``n`` seeded rows of each label (every row of a label that has fewer)."""
    shuffled = split.shuffle(seed=seed)
    taken: dict[int, list[int]] = {}
    for i, label in enumerate(shuffled["label"]):
        if len(rows := taken.setdefault(label, [])) < n:
            rows.append(i)
    return shuffled.select(sorted(i for rows in taken.values() for i in rows))


# --------------------------------------------------------------------------------------------
# Token classification (NER): CoNLL-style files, IOB1 -> IOB2, tag maps


def iob1_to_iob2(tags: list[str]) -> list[str]:
    """IOB1 starts an entity with I- unless it follows one of the same type; IOB2 always with B-."""
    out = []
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and (previous == "O" or previous[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
        previous = tag
    return out


@dataclass
class TaggingData:
    splits: Any  # datasets.DatasetDict with "tokens" (list of words) and "tags" (tag ids)
    label_names: list[str]


def load_token_classification(cfg: Any, seed: int) -> TaggingData:
    """Sentences with word-level tag ids; tags in IOB2 whatever the source scheme."""
    import datasets

    raw: dict[str, Sentences] = {}
    scheme = "IOB2"
    if cfg.name:
        raw, entry = load_named(cfg.name, "tagging")
        local = entry is not None and data_root() is not None and (data_root() / entry.folder).is_dir()
        scheme = entry.scheme if local else "IOB2"  # the Hub copies are IOB2 already
    else:
        for split in ("train", "validation", "test"):
            file = getattr(cfg, f"{split}_file")
            if file:
                raw[split] = _read_tagging_file(Path(file), cfg)
        scheme = cfg.tag_scheme
    if scheme == "IOB1":
        for split in raw.values():
            split["tags"] = [iob1_to_iob2(t) for t in split["tags"]]
    names = sorted({tag for sentence in raw["train"]["tags"] for tag in sentence},
                   key=lambda t: (t != "O", t[2:], t[:2]))  # O first, then B-/I- by type
    ids = {name: i for i, name in enumerate(names)}
    splits = {}
    for split, sentences in raw.items():
        for i, sentence in enumerate(sentences["tags"]):
            for tag in sentence:
                if tag not in ids:
                    raise PipelineError(f"the {split} data has tag {tag!r} (sentence {i + 1}), which training never "
                                        f"has (train tags: {', '.join(names)}); fix the tag or add training examples")
        splits[split] = datasets.Dataset.from_dict(
            {"tokens": sentences["tokens"], "tags": [[ids[t] for t in s] for s in sentences["tags"]]})
    dataset = datasets.DatasetDict(splits)
    if "validation" not in dataset:
        parts = dataset["train"].train_test_split(test_size=cfg.validation_split, seed=seed)
        dataset["train"], dataset["validation"] = parts["train"], parts["test"]
    limit_rows(dataset, cfg, seed)
    return TaggingData(dataset, names)


def _read_tagging_file(path: Path, cfg: Any) -> Sentences:
    """CoNLL-style text, or a table (jsonl/json/parquet) with a list of words and a list of tags per row."""
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".parquet"):
        return read_conll(path)
    columns = read_file(path)
    token_col, tag_col = cfg.text_column or "tokens", cfg.label_column or "ner_tags"
    for col in (token_col, tag_col):
        if col not in columns:
            raise PipelineError(f"{path} has no column {col!r}; its columns are {', '.join(columns)}; "
                                f"set dataset.text_column (words) and dataset.label_column (tags)")
    for i, (words, tags) in enumerate(zip(columns[token_col], columns[tag_col])):
        if not isinstance(words, list) or not isinstance(tags, list) or len(words) != len(tags):
            raise PipelineError(f"{path} row {i + 1}: {token_col} and {tag_col} must be lists of equal length")
    return {"tokens": columns[token_col], "tags": [[str(t) for t in tags] for tags in columns[tag_col]]}


# --------------------------------------------------------------------------------------------
# Plain text for language modelling


def load_text_corpus(cfg: Any, seed: int) -> Any:
    """Documents for language modelling as a DatasetDict (train, validation) with one "text" column.

    Sources: a named corpus (``tiny_shakespeare``: the first 90% of the text trains, the last 10%
    validates, the usual convention), the text column of any named dataset (labels ignored), or
    files: ``.txt`` (documents separated by blank lines) or any table format with ``text_column``.
    Without a validation split, a seeded ``validation_split`` share of the documents is held out.
    """
    import datasets

    splits: dict[str, list[str]] = {}
    entry = CATALOGUE.get(cfg.name or "")
    if entry and entry.kind == "corpus":
        loaded, _ = load_named(cfg.name, "corpus")
        splits = {split: docs for split, docs in loaded.items() if split != "test"}
    elif cfg.name:
        raw, entry = load_named(cfg.name, "classification")
        column = cfg.text_column or (entry.text_column if entry else "text")
        for split, columns in raw.items():
            texts = _nonempty_texts(columns, column, f"dataset {cfg.name} ({split} split)")
            if split != "test":
                splits[split] = texts
    else:
        for split in ("train", "validation"):
            path = getattr(cfg, f"{split}_file")
            if path:
                splits[split] = _read_documents(Path(path), cfg.text_column or "text")
    if not splits.get("train"):
        raise PipelineError("the corpus has no training text; check dataset.name or dataset.train_file")
    dataset = datasets.DatasetDict({s: datasets.Dataset.from_dict({"text": docs}) for s, docs in splits.items()})
    if "validation" not in dataset or not len(dataset["validation"]):
        if len(dataset["train"]) < 2:
            raise PipelineError("the corpus is a single document; give a dataset.validation_file, or separate "
                                "documents by blank lines so some can be held out")
        parts = dataset["train"].train_test_split(test_size=cfg.validation_split, seed=seed)
        dataset["train"], dataset["validation"] = parts["train"], parts["test"]
        log.info(f"data: held out {len(dataset['validation'])} of the documents for validation (seed {seed})")
    limit_rows(dataset, cfg, seed)
    return dataset


def _read_documents(path: Path, column: str) -> list[str]:
    if suffix_of(path) == ".txt":
        check_exists(path)
        return documents_from_text("".join(text_lines(path)))
    return _nonempty_texts(read_file(path), column, str(path))


def _nonempty_texts(columns: Columns, column: str, where: str) -> list[str]:
    """The non-empty texts of ``column``, which must exist."""
    if column not in columns:
        raise PipelineError(f"{where} has no text column {column!r}; its columns are {', '.join(map(str, columns))}; "
                            f"set dataset.text_column")
    return [str(t) for t in columns[column] if t is not None and str(t).strip()]
