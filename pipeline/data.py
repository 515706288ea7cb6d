"""Datasets: the catalogue of named datasets, file readers, splits and label maps.

A named dataset resolves to files under the data root (``$PIPELINE_DATA_DIR``, else ``shared/data``
beside the project when it exists) and otherwise to its Hub name, so one recipe runs offline and
online. Local files (csv, tsv, jsonl, json, parquet; ``.gz`` for jsonl/json) are read by our own
readers so that a bad row is reported with its file and line, not as a library traceback.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import os
import random
import re
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from pipeline.errors import PipelineError

Columns = dict[str, list[Any]]  # a split as columns: {"sentence": [...], "label": [...]}

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path | None:
    """Where named datasets live locally, or None (then they come from the Hub)."""
    env = os.environ.get("PIPELINE_DATA_DIR")
    if env:
        return Path(env)
    for candidate in (PROJECT_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    return None


# --------------------------------------------------------------------------------------------
# Readers: one per file format, each returning columns and failing with file:line messages


def read_text(path: Path) -> str:
    """Read a whole text file as UTF-8 (gz transparently), failing with the byte offset if it is not."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error):
            raise PipelineError(f"{path} is not a valid gzip file; check the file or drop the .gz suffix") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PipelineError(f"{path} line {line} is not UTF-8 (byte {raw[exc.start]:#04x}); "
                            f"re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None


def _read_delimited(path: Path, delimiter: str) -> Columns:
    text = read_text(path)
    # TSV files (GLUE's among them) use no quoting: a " inside a sentence is just a character.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    try:
        header = next(reader)
    except StopIteration:
        raise PipelineError(f"{path} is empty; it needs a header line and rows") from None
    columns: Columns = {name: [] for name in header}
    try:
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise PipelineError(f"{path} line {reader.line_num}: {len(row)} fields where the header has "
                                    f"{len(header)}; fix that row (a stray delimiter or quote?)")
            for name, value in zip(header, row):
                columns[name].append(value)
    except csv.Error as exc:
        raise PipelineError(f"{path} line {reader.line_num}: {exc}; fix that row") from None
    return columns


def _rows_to_columns(rows: list[dict], path: Path) -> Columns:
    columns: Columns = {}
    for i, row in enumerate(rows):
        for key in row:
            columns.setdefault(key, [None] * i)
        for key, values in columns.items():
            values.append(row.get(key))
    return columns


def iter_jsonl(lines: Iterable[str], path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line, failing on the first bad line with its number."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PipelineError(f"{path} line {number} is not valid JSON ({exc.msg}); fix or delete that line") from None
        if not isinstance(row, dict):
            raise PipelineError(f"{path} line {number} is not a JSON object; each line must be {{\"text\": ..., ...}}")
        yield number, row


def _read_jsonl(path: Path) -> Columns:
    lines = read_text(path).split("\n")  # not splitlines(): U+2028 may stand inside a JSON string
    return _rows_to_columns([row for _, row in iter_jsonl(lines, path)], path)


def _read_json(path: Path) -> Columns:
    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # JSON lines saved as .json
            return _read_jsonl(path)
        raise PipelineError(f"{path} line {exc.lineno} is not valid JSON ({exc.msg}); fix the file") from None
    if isinstance(data, dict) and "data" in data and isinstance(data["data"], list):
        data = data["data"]
    if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):
        return {k: list(v) for k, v in data.items()}
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        return _rows_to_columns(data, path)
    raise PipelineError(f"{path}: expected a list of objects or an object of columns; "
                        f"or use JSON lines (.jsonl)")


def _read_parquet(path: Path) -> Columns:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pydict()
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise PipelineError(f"{path} is not a readable parquet file ({type(exc).__name__}); check the file") from None


READERS: dict[str, Callable[[Path], Columns]] = {
    ".csv": lambda p: _read_delimited(p, ","),
    ".tsv": lambda p: _read_delimited(p, "\t"),
    ".jsonl": _read_jsonl,
    ".json": _read_json,
    ".parquet": _read_parquet,
}


def _check_file_exists(path: Path) -> None:
    if not path.exists():
        raise PipelineError(f"data file {path} does not exist; check the path")
    if path.is_dir():
        raise PipelineError(f"data file {path} is a directory; give a file inside it")


def read_file(path: str | Path) -> Columns:
    """Read a data file into columns, by its extension."""
    path = Path(path)
    suffix = "".join(path.suffixes[-2:-1]) if path.suffix == ".gz" else path.suffix
    suffix = suffix.lower()
    _check_file_exists(path)
    if suffix not in READERS:
        raise PipelineError(f"data file {path} has an unsupported format {suffix or '(none)'}; "
                            f"use one of {', '.join(READERS)}")
    if path.stat().st_size == 0:
        raise PipelineError(f"data file {path} is empty")
    columns = READERS[suffix](path)
    if not columns or not any(columns.values()):
        raise PipelineError(f"data file {path} holds no rows")
    return columns


# --------------------------------------------------------------------------------------------
# The catalogue


@dataclass(frozen=True)
class NamedDataset:
    name: str
    hub_path: str
    hub_config: str | None
    text_column: str
    label_column: str
    label_names: tuple[str, ...]
    load_local: Callable[[Path], dict[str, Columns]]  # data root -> splits
    folder: str


def _sst2_local(root: Path) -> dict[str, Columns]:
    folder = root / "sst2"
    splits = {"train": read_file(folder / "train.tsv"), "validation": read_file(folder / "dev.tsv")}
    test = read_file(folder / "test.tsv")  # GLUE's test split has no labels
    splits["test"] = {"sentence": test["sentence"], "label": [None] * len(test["sentence"])}
    return splits


def _rotten_tomatoes_local(root: Path) -> dict[str, Columns]:
    """The v1.0 polarity files, split 80/10/10 with a fixed seed (the Hub copy's sizes)."""
    folder = root / "rotten_tomatoes"
    rows = []
    for label, name in ((0, "rt-polarity.neg"), (1, "rt-polarity.pos")):
        text = (folder / name).read_bytes().decode("latin-1")  # the original release is Latin-1
        # split on \n only: Latin-1 decodes byte 0x85 to U+0085, which splitlines() would break on
        rows += [(line.strip(), label) for line in text.split("\n") if line.strip()]
    random.Random(1234).shuffle(rows)
    n_eval = len(rows) // 10
    parts = {"validation": rows[:n_eval], "test": rows[n_eval:2 * n_eval], "train": rows[2 * n_eval:]}
    return {split: {"text": [t for t, _ in part], "label": [l for _, l in part]} for split, part in parts.items()}


def _imdb_local(root: Path) -> dict[str, Columns]:
    folder = root / "imdb"
    splits = {}
    for split in ("train", "test"):
        parts = [read_file(p) for p in sorted(folder.glob(f"{split}-*.jsonl.gz"))]
        splits[split] = {"text": sum((p["text"] for p in parts), []), "label": sum((p["label"] for p in parts), [])}
    return splits


CATALOGUE: dict[str, NamedDataset] = {d.name: d for d in (
    NamedDataset("sst2", "glue", "sst2", "sentence", "label", ("negative", "positive"), _sst2_local, "sst2"),
    NamedDataset("rotten_tomatoes", "cornell-movie-review-data/rotten_tomatoes", None, "text", "label",
                 ("neg", "pos"), _rotten_tomatoes_local, "rotten_tomatoes"),
    NamedDataset("imdb", "stanfordnlp/imdb", None, "text", "label", ("neg", "pos"), _imdb_local, "imdb"),
)}


def load_named(name: str) -> dict[str, Columns]:
    """Splits of a named dataset: from the data root if it is there, else from the Hub."""
    entry = CATALOGUE.get(name)
    root = data_root()
    if entry and root and (root / entry.folder).is_dir():
        return entry.load_local(root)
    hub_path, hub_config = (entry.hub_path, entry.hub_config) if entry else (name, None)
    try:
        import datasets

        loaded = datasets.load_dataset(hub_path, hub_config)
    except Exception as exc:  # offline, unknown id, ...: one line, with what to do
        known = ", ".join(CATALOGUE)
        raise PipelineError(
            f"dataset {name!r} is not under the data root ({root or 'none found'}) and could not be loaded "
            f"from the Hub as {hub_path}{'/' + hub_config if hub_config else ''} ({type(exc).__name__}); "
            f"use one of {known}, set PIPELINE_DATA_DIR, or give dataset.train_file") from None
    return {split: ds.to_dict() for split, ds in loaded.items()}


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

    entry = CATALOGUE.get(cfg.name) if cfg.name else None
    if cfg.name:
        raw = load_named(cfg.name)
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
        print(f"data: dropped {count} empty text(s) from {split}")

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
        print(f"data: no validation split; held out a stratified {cfg.validation_split:.0%} of train "
              f"({len(dataset['validation'])} rows, seed {seed})")
    limit_rows(dataset, cfg, seed)
    classes = set(dataset["train"]["label"])
    if len(classes) < 2:
        only = label_names[next(iter(classes))] if classes else "none"
        raise PipelineError(f"the training data has a single class ({only}); a classifier needs at least two "
                            f"(check dataset.label_column, or raise dataset.max_train_samples)")
    return TextClassificationData(dataset, label_names, dropped)


def _where(cfg: Any, split: str, source: str) -> str:
    file = getattr(cfg, f"{split}_file", None) if not cfg.name else None
    return f"{file} ({split})" if file else f"{source} ({split} split)"


def _label_map(labels: dict[str, list[Any]], entry: NamedDataset | None, cfg: Any,
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


def limit_rows(dataset: Any, cfg: Any, seed: int) -> None:
    """Apply dataset.max_train_samples / max_eval_samples: seeded random subsets, in place."""
    limits = {"train": cfg.max_train_samples, "validation": cfg.max_eval_samples, "test": cfg.max_eval_samples}
    for split, n in limits.items():
        if n and split in dataset and n < len(dataset[split]):
            dataset[split] = dataset[split].shuffle(seed=seed).select(range(n))


# --------------------------------------------------------------------------------------------
# Token classification (NER): CoNLL-style files, IOB1 -> IOB2, tag maps


@dataclass(frozen=True)
class NamedTagging:
    name: str
    hub_path: str
    folder: str
    files: dict[str, str]  # split -> file under the folder
    scheme: str  # "IOB1" or "IOB2" as stored locally


NER_CATALOGUE: dict[str, NamedTagging] = {d.name: d for d in (
    NamedTagging("wnut17", "leondz/wnut_17", "wnut17",
                 {"train": "wnut17train.conll", "validation": "emerging.dev.conll", "test": "emerging.test.annotated"},
                 "IOB2"),
    NamedTagging("conll2003", "eriktks/conll2003", "conll2003",
                 {"train": "eng.train", "validation": "eng.testa", "test": "eng.testb"}, "IOB1"),
)}

Sentences = dict[str, list[list[str]]]  # {"tokens": [[...], ...], "tags": [[...], ...]}


def read_conll(path: str | Path) -> Sentences:
    """A token per line (token first, tag last; tab- or space-separated), a blank line between
    sentences, ``-DOCSTART-`` lines skipped. Every line of a file must have the same column count."""
    path = Path(path)
    _check_file_exists(path)
    tokens: list[list[str]] = []
    tags: list[list[str]] = []
    sentence: list[tuple[str, str]] = []
    width = None
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            if sentence:
                tokens.append([t for t, _ in sentence])
                tags.append([g for _, g in sentence])
                sentence = []
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        if fields[0] == "-DOCSTART-":
            continue
        width = width or len(fields)
        if len(fields) != width or len(fields) < 2:
            raise PipelineError(f"{path} line {number}: {len(fields)} columns where the file has {width or 2}+ "
                                f"(token first, tag last); fix that line")
        sentence.append((fields[0], fields[-1]))
    if sentence:
        tokens.append([t for t, _ in sentence])
        tags.append([g for _, g in sentence])
    if not tokens:
        raise PipelineError(f"data file {path} holds no sentences")
    return {"tokens": tokens, "tags": tags}


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
    entry = NER_CATALOGUE.get(cfg.name) if cfg.name else None
    root = data_root()
    if entry and root and (root / entry.folder).is_dir():
        raw = {split: read_conll(root / entry.folder / file) for split, file in entry.files.items()}
        scheme = entry.scheme
    elif cfg.name:
        raw = _hub_tagging(entry.hub_path if entry else cfg.name, cfg.name, root)
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


def _hub_tagging(hub_path: str, name: str, root: Path | None) -> dict[str, Sentences]:
    try:
        import datasets

        loaded = datasets.load_dataset(hub_path)
    except Exception as exc:
        raise PipelineError(
            f"dataset {name!r} is not under the data root ({root or 'none found'}) and could not be loaded from "
            f"the Hub as {hub_path} ({type(exc).__name__}); use one of {', '.join(NER_CATALOGUE)}, set "
            f"PIPELINE_DATA_DIR, or give dataset.train_file") from None
    out = {}
    for split, ds in loaded.items():
        tag_names = ds.features["ner_tags"].feature.names
        out[split] = {"tokens": ds["tokens"], "tags": [[tag_names[t] for t in s] for s in ds["ner_tags"]]}
    return out


# --------------------------------------------------------------------------------------------
# Plain text for language modelling


@dataclass(frozen=True)
class NamedCorpus:
    name: str
    hub_path: str
    local_file: str  # under the data root


CORPORA: dict[str, NamedCorpus] = {c.name: c for c in (
    NamedCorpus("tiny_shakespeare", "karpathy/tiny_shakespeare", "tiny_shakespeare/input.txt"),
)}


def documents_from_text(text: str) -> list[str]:
    """Documents separated by blank lines (BERT's pretraining format; the speeches of a play)."""
    return [d.strip("\n") for d in re.split(r"\n\s*\n", text) if d.strip()]


def load_text_corpus(cfg: Any, seed: int) -> Any:
    """Documents for language modelling as a DatasetDict (train, validation) with one "text" column.

    Sources: a named corpus (``tiny_shakespeare``: the first 90% of the text trains, the last 10%
    validates, the usual convention), the text column of any named dataset (labels ignored), or
    files: ``.txt`` (documents separated by blank lines) or any table format with ``text_column``.
    Without a validation split, a seeded ``validation_split`` share of the documents is held out.
    """
    import datasets

    splits: dict[str, list[str]] = {}
    root = data_root()
    if cfg.name in CORPORA:
        corpus = CORPORA[cfg.name]
        if root and (root / corpus.local_file).exists():
            text = read_text(root / corpus.local_file)
            cut = text.find("\n\n", int(len(text) * 0.9))  # at a speech boundary near 90%
            cut = cut if cut > 0 else int(len(text) * 0.9)
            splits = {"train": documents_from_text(text[:cut]), "validation": documents_from_text(text[cut:])}
        else:
            try:
                loaded = datasets.load_dataset(corpus.hub_path)
            except Exception as exc:
                raise PipelineError(f"corpus {cfg.name!r} is not under the data root ({root or 'none found'}) and "
                                    f"could not be loaded from the Hub ({type(exc).__name__}); set PIPELINE_DATA_DIR "
                                    f"or give dataset.train_file") from None
            splits = {s: documents_from_text("\n".join(ds["text"])) for s, ds in loaded.items() if s != "test"}
    elif cfg.name:
        entry = CATALOGUE.get(cfg.name)
        column = cfg.text_column or (entry.text_column if entry else "text")
        for split, columns in load_named(cfg.name).items():
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
        print(f"data: held out {len(dataset['validation'])} of the documents for validation (seed {seed})")
    limit_rows(dataset, cfg, seed)
    return dataset


def _read_documents(path: Path, column: str) -> list[str]:
    if path.suffix == ".txt" or path.suffixes[-2:] == [".txt", ".gz"]:
        _check_file_exists(path)
        return documents_from_text(read_text(path))
    return _nonempty_texts(read_file(path), column, str(path))


def _nonempty_texts(columns: Columns, column: str, where: str) -> list[str]:
    """The non-empty texts of ``column``, which must exist."""
    if column not in columns:
        raise PipelineError(f"{where} has no text column {column!r}; its columns are {', '.join(map(str, columns))}; "
                            f"set dataset.text_column")
    return [str(t) for t in columns[column] if t is not None and str(t).strip()]
