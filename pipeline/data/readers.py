"""File readers: the only code that reads CSV, TSV, JSON lines, JSON, parquet, CoNLL and plain text,
for training data and for texts to predict alike.

Rows stream from the file (``iter_rows``), so prediction on a large file holds one chunk at a time;
training reads whole columns (``read_file``). Every failure names the file and line and says what
to fix, never a library traceback: bytes that are not UTF-8, a ragged row, a malformed JSON line.
"""
from __future__ import annotations

import csv
import gzip
import json
import re
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator

from pipeline.errors import PipelineError

Columns = dict[str, list[Any]]  # a split as columns: {"sentence": [...], "label": [...]}
TABLE_FORMATS = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
STREAMED = (".csv", ".tsv", ".jsonl")


def check_exists(path: Path, what: str = "data file") -> None:
    if not path.exists():
        raise PipelineError(f"{what} {path} does not exist; check the path")
    if path.is_dir():
        raise PipelineError(f"{what} {path} is a directory; give a file inside it")


def suffix_of(path: Path) -> str:
    """The format suffix, looking through ``.gz``."""
    suffix = "".join(path.suffixes[-2:-1]) if path.suffix == ".gz" else path.suffix
    return suffix.lower()


def text_lines(path: Path) -> Iterator[str]:
    """The lines of a UTF-8 text file (gzip read transparently), with their line endings, failing
    on the first line that is not UTF-8. Lines end at \\n only: U+2028 may stand inside a JSON string."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            for number, raw in enumerate(f, start=1):
                try:
                    yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    raise PipelineError(f"{path} line {number} is not UTF-8 (byte {raw[exc.start]:#04x}); "
                                        f"re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
    except (OSError, EOFError, zlib.error) as exc:
        if path.suffix == ".gz" and not isinstance(exc, FileNotFoundError):
            raise PipelineError(f"{path} is not a valid gzip file; check the file or drop the .gz suffix") from None
        raise


def read_text(path: Path) -> str:
    return "".join(text_lines(path))


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


def iter_delimited(path: Path, delimiter: str) -> Iterator[tuple[int, dict]]:
    """(line number, row as a dict) of a CSV or TSV file with a header line. TSV files (GLUE's among
    them) use no quoting: a " inside a sentence is just a character."""
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(text_lines(path), delimiter=delimiter, quoting=quoting)
    try:
        header = next(reader, None)
        if not header:
            raise PipelineError(f"{path} is empty; it needs a header line and rows")
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise PipelineError(f"{path} line {reader.line_num}: {len(row)} fields where the header has "
                                    f"{len(header)}; fix that row (a stray delimiter or quote?)")
            yield reader.line_num, dict(zip(header, row))
    except csv.Error as exc:
        raise PipelineError(f"{path} line {reader.line_num}: {exc}; fix that row") from None


def iter_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """Rows of a CSV, TSV or JSON-lines file, streamed."""
    suffix = suffix_of(path)
    if suffix == ".jsonl":
        return iter_jsonl(text_lines(path), path)
    return iter_delimited(path, "\t" if suffix == ".tsv" else ",")


def rows_to_columns(rows: Iterable[dict]) -> Columns:
    """Columns of the rows; a key first seen in a later row is None in the rows before it."""
    columns: Columns = {}
    for i, row in enumerate(rows):
        for key in row:
            if key not in columns:  # not setdefault: its default list would be built on every row
                columns[key] = [None] * i
        for key, values in columns.items():
            values.append(row.get(key))
    return columns


def _read_json(path: Path) -> Columns:
    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # JSON lines saved as .json
            return rows_to_columns(row for _, row in iter_jsonl(text.split("\n"), path))
        raise PipelineError(f"{path} line {exc.lineno} is not valid JSON ({exc.msg}); fix the file") from None
    if isinstance(data, dict) and "data" in data and isinstance(data["data"], list):
        data = data["data"]
    if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):
        return {k: list(v) for k, v in data.items()}
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        return rows_to_columns(data)
    raise PipelineError(f"{path}: expected a list of objects or an object of columns; or use JSON lines (.jsonl)")


def _read_parquet(path: Path) -> Columns:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pydict()
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise PipelineError(f"{path} is not a readable parquet file ({type(exc).__name__}); check the file") from None


def read_file(path: str | Path) -> Columns:
    """Read a data file into columns, by its extension."""
    path = Path(path)
    suffix = suffix_of(path)
    check_exists(path)
    if suffix not in TABLE_FORMATS:
        raise PipelineError(f"data file {path} has an unsupported format {suffix or '(none)'}; "
                            f"use one of {', '.join(TABLE_FORMATS)}")
    if path.stat().st_size == 0:
        raise PipelineError(f"data file {path} is empty")
    if suffix in STREAMED:
        columns = rows_to_columns(row for _, row in iter_rows(path))
    else:
        columns = _read_json(path) if suffix == ".json" else _read_parquet(path)
    if not columns or not any(columns.values()):
        raise PipelineError(f"data file {path} holds no rows")
    return columns


def iter_texts(path: Path, column: str = "text") -> Iterator[str]:
    """Texts to predict, streamed: .txt (a line each), or the ``column`` of .jsonl, .csv, .tsv.
    Blank texts are skipped."""
    if not path.is_file():
        raise PipelineError(f"input file {path} does not exist or is not a file; check the path")
    suffix = path.suffix.lower()
    if suffix not in (".txt", *STREAMED):
        raise PipelineError(f"input file {path}: use .txt (one text per line), .jsonl, .csv or .tsv")
    if suffix == ".txt":
        for line in text_lines(path):
            if line.strip():
                yield line.rstrip("\r\n")
        return
    for number, row in iter_rows(path):
        if column not in row:
            where = f"line {number} has no field" if suffix == ".jsonl" else "has no column"
            columns = "" if suffix == ".jsonl" else f"; its columns are {', '.join(row)}"
            raise PipelineError(f"{path} {where} {column!r}{columns}; pass --text-column")
        text = row[column]
        if not isinstance(text, str):
            raise PipelineError(f"{path} line {number}: {column!r} is a {type(text).__name__}, not a string; "
                                f"fix that line")
        if text.strip():
            yield text


Sentences = dict[str, list[list[str]]]  # {"tokens": [[...], ...], "tags": [[...], ...]}


def iter_question_pairs(path: Path, question_column: str = "question",
                        context_column: str = "context") -> Iterator[dict[str, str]]:
    """Questions with their contexts to answer, streamed from .jsonl, .csv or .tsv; a row with a
    missing or empty field stops with its line number."""
    if not path.is_file():
        raise PipelineError(f"input file {path} does not exist or is not a file; check the path")
    if path.suffix.lower() not in STREAMED:
        raise PipelineError(f"input file {path}: use .jsonl, .csv or .tsv with {question_column} and "
                            f"{context_column} columns")
    for number, row in iter_rows(path):
        pair = {}
        for role, column in (("question", question_column), ("context", context_column)):
            value = row.get(column)
            if column not in row:
                raise PipelineError(f"{path} line {number} has no {column!r} field; its fields are "
                                    f"{', '.join(map(str, row))}; pass --{role}-column")
            if not isinstance(value, str) or not value.strip():
                raise PipelineError(f"{path} line {number}: the {role} is empty or not text; fix or remove that line")
            pair[role] = value
        yield pair


def documents_from_text(text: str) -> list[str]:
    """Documents separated by blank lines (BERT's pretraining format; the speeches of a play)."""
    return [d.strip("\n") for d in re.split(r"\n\s*\n", text) if d.strip()]


def read_conll(path: str | Path) -> Sentences:
    """A token per line (token first, tag last; tab- or space-separated), a blank line between
    sentences, ``-DOCSTART-`` lines skipped. Every line of a file must have the same column count."""
    path = Path(path)
    check_exists(path)
    tokens: list[list[str]] = []
    tags: list[list[str]] = []
    sentence: list[tuple[str, str]] = []
    width = None
    for number, line in enumerate(text_lines(path), start=1):
        line = line.rstrip("\r\n")
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


# Question answering: one row per question
QA_COLUMNS = ("id", "question", "context", "answers")


def read_squad_json(path: str | Path) -> dict[str, list[Any]]:
    """A SQuAD-format JSON file as columns: one row per question."""
    path = Path(path)
    check_exists(path)
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{path} line {exc.lineno} is not valid JSON ({exc.msg}); fix the file") from None
    columns: dict[str, list[Any]] = {name: [] for name in QA_COLUMNS}
    articles = data.get("data") if isinstance(data, dict) else None
    if not isinstance(articles, list):
        raise PipelineError(f"{path} is not SQuAD JSON (no \"data\" list of articles); use that layout, or rows "
                            f"with question, context and answers columns")
    for a, article in enumerate(articles):
        for p, paragraph in enumerate(_items(article, "paragraphs", f"{path} article {a + 1}")):
            where = f"{path} article {a + 1} paragraph {p + 1}"
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("context"), str):
                raise PipelineError(f"{where} has no context text; each paragraph needs \"context\" and \"qas\"")
            for q, qa in enumerate(_items(paragraph, "qas", where)):
                answers = qa.get("answers", []) if isinstance(qa, dict) else None
                if not isinstance(answers, list) or not all(isinstance(x, dict) for x in answers):
                    raise PipelineError(f"{where} question {q + 1}: \"answers\" must be a list of "
                                        f"{{\"text\", \"answer_start\"}} objects")
                columns["id"].append(str(qa.get("id", f"{a}-{p}-{q}")))
                columns["question"].append(qa.get("question"))
                columns["context"].append(paragraph["context"])
                columns["answers"].append({"text": [x.get("text") for x in answers],
                                           "answer_start": [x.get("answer_start") for x in answers]})
    return columns


def _items(node: Any, key: str, where: str) -> list[Any]:
    items = node.get(key) if isinstance(node, dict) else None
    if not isinstance(items, list):
        raise PipelineError(f"{where} has no {key!r} list; check the file's SQuAD layout")
    return items
