"""Extractive question answering data: questions with their contexts and answer spans, checked, and
cut into the overlapping token windows a model reads.

Files: SQuAD JSON as published (``data`` > ``paragraphs`` > ``qas``), or flat rows (JSON lines, CSV,
TSV, JSON, parquet) with a question, a context and answers as ``{"text": [...], "answer_start":
[...]}`` (a JSON string of that in a CSV cell). An answer's ``answer_start`` is a character offset
into its context, checked against its text; a question with no answer (SQuAD v2) has empty lists.

Windows follow the Hugging Face ``run_qa.py`` example: question + context, the context truncated
(``only_second``) into windows of ``max_length`` tokens that overlap by ``doc_stride``; a training
window that holds the first reference answer points at its tokens, the others at the first token
([CLS]), as a no-answer. Evaluation windows keep the context's character offsets and their
question's index, so answers map back to exact spans of the context.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.data.catalogue import load_named
from pipeline.data.readers import QA_COLUMNS as COLUMNS
from pipeline.data.readers import check_exists, read_file, read_squad_json, suffix_of
from pipeline.data.tasks import limit_rows
from pipeline.errors import PipelineError
from pipeline.log import log

@dataclass
class QAData:
    splits: Any  # datasets.DatasetDict: id, question, context, answers {text, answer_start}
    f1_unit: str  # "word" (SQuAD) or "char" (Japanese: JGLUE's convention)
    unanswerable: dict[str, int]  # per split, questions with no answer


def is_squad_json(path: Path) -> bool:
    if suffix_of(path) != ".json":
        return False
    with open(path, encoding="utf-8", errors="replace") as f:
        head = f.read(4096)
    return '"paragraphs"' in head or ('"data"' in head and '"version"' in head)


def read_qa_file(path: str | Path, cfg: Any) -> dict[str, list[Any]]:
    """Rows of one file in the shape ``COLUMNS``, whichever layout it has."""
    path = Path(path)
    check_exists(path)
    if is_squad_json(path):
        return read_squad_json(path)
    raw = read_file(path)
    wanted = {"question": cfg.question_column, "context": cfg.context_column, "answers": cfg.answers_column}
    for role, column in wanted.items():
        if column not in raw:
            raise PipelineError(f"{path} has no {role} column {column!r}; its columns are "
                                f"{', '.join(map(str, raw))}; set dataset.{role}_column")
    rows = len(raw[cfg.question_column])
    answers = [_parse_answers(value, path, i) for i, value in enumerate(raw[cfg.answers_column])]
    ids = raw.get("id") or [str(i) for i in range(rows)]
    return {"id": [str(i) for i in ids], "question": raw[cfg.question_column], "context": raw[cfg.context_column],
            "answers": answers}


def _parse_answers(value: Any, path: Path, row: int) -> dict[str, list[Any]]:
    if isinstance(value, str):  # a CSV cell holds the answers as JSON
        try:
            value = json.loads(value) if value.strip() else {"text": [], "answer_start": []}
        except json.JSONDecodeError:
            raise PipelineError(f"{path} row {row + 1}: answers {value[:60]!r} is not JSON of "
                                f"{{\"text\": [...], \"answer_start\": [...]}}") from None
    if not isinstance(value, dict) or not isinstance(value.get("text"), list) \
            or not isinstance(value.get("answer_start"), list):
        raise PipelineError(f"{path} row {row + 1}: answers must be {{\"text\": [...], \"answer_start\": [...]}}, "
                            f"got {str(value)[:60]}")
    return {"text": list(value["text"]), "answer_start": list(value["answer_start"])}


def check_rows(columns: dict[str, list[Any]], where: str) -> int:
    """Stop at the first row a QA model cannot learn from or be scored on, naming it; return how many
    questions have no answer."""
    unanswerable = 0
    for i, (qid, question, context, answers) in enumerate(zip(*(columns[c] for c in COLUMNS))):
        row = f"{where} row {i + 1} (id {qid})"
        if not isinstance(question, str) or not question.strip():
            raise PipelineError(f"{row} has an empty question; fill it in or remove the row")
        if not isinstance(context, str) or not context.strip():
            raise PipelineError(f"{row} has an empty context; fill it in or remove the row")
        texts, starts = answers["text"], answers["answer_start"]
        if len(texts) != len(starts):
            raise PipelineError(f"{row} has {len(texts)} answer texts but {len(starts)} answer_start values; "
                                f"give one start per answer")
        if not texts:
            unanswerable += 1
        for text, start in zip(texts, starts):
            if not isinstance(text, str) or not text:
                raise PipelineError(f"{row} has an empty answer text; remove it or leave the answers empty "
                                    f"for a question with no answer")
            if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start <= len(context):
                raise PipelineError(f"{row}: answer_start {start!r} is not a character offset in its context "
                                    f"({len(context)} characters); fix answer_start")
            if context[start:start + len(text)] != text:
                found = context[start:start + len(text)]
                raise PipelineError(f"{row}: answer_start {start} does not point at the answer {text!r} (the "
                                    f"context there reads {found!r}); fix answer_start")
    return unanswerable


def load_question_answering(cfg: Any, seed: int, f1_unit: str | None = None) -> QAData:
    """Load ``cfg`` (a DatasetConfig) into checked train/validation[/test] splits of questions."""
    import datasets

    entry = None
    if cfg.name:
        raw, entry = load_named(cfg.name, "qa")
        source = f"dataset {cfg.name}"
        raw = {split: {c: list(columns[c]) for c in COLUMNS} if "id" in columns else
               {"id": [str(i) for i in range(len(columns["question"]))],
                **{c: list(columns[c]) for c in COLUMNS[1:]}} for split, columns in raw.items()}
    else:
        files = {"train": cfg.train_file, "validation": cfg.validation_file, "test": cfg.test_file}
        raw = {split: read_qa_file(path, cfg) for split, path in files.items() if path}
        source = "dataset files"
    if "train" not in raw:
        raise PipelineError(f"{source} has no train split (splits: {', '.join(raw)})")
    unanswerable = {}
    for split, columns in raw.items():
        where = f"{source} {split}" if cfg.name else str(getattr(cfg, f"{split}_file"))
        unanswerable[split] = check_rows(columns, where)
        if not columns["question"]:
            raise PipelineError(f"{where} holds no questions")
    features = datasets.Features({"id": datasets.Value("string"), "question": datasets.Value("string"),
                                  "context": datasets.Value("string"),
                                  "answers": {"text": datasets.Sequence(datasets.Value("string")),
                                              "answer_start": datasets.Sequence(datasets.Value("int64"))}})
    dataset = datasets.DatasetDict({split: datasets.Dataset.from_dict(columns, features=features)
                                    for split, columns in raw.items()})
    if "validation" not in dataset:
        parts = dataset["train"].train_test_split(test_size=cfg.validation_split, seed=seed)
        dataset["train"], dataset["validation"] = parts["train"], parts["test"]
        log.info(f"data: no validation split; held out {cfg.validation_split:.0%} of train "
                 f"({len(dataset['validation'])} questions, seed {seed})")
    limit_rows(dataset, cfg, seed)
    unit = f1_unit or (entry.f1_unit if entry else "word")
    return QAData(dataset, unit, unanswerable)


# --------------------------------------------------------------------------------------------
# Windows


def windows(tokenizer: Any, questions: list[str], contexts: list[str], max_length: int, doc_stride: int) -> Any:
    """Tokenize question + context pairs into overlapping windows of the context (a BatchEncoding with
    ``overflow_to_sample_mapping`` and ``offset_mapping``); nothing is padded."""
    questions = [q.lstrip() for q in questions]  # SQuAD has questions with leading spaces
    question_tokens = tokenizer(questions, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    longest = max(range(len(questions)), key=lambda i: len(question_tokens[i]))
    room = max_length - len(question_tokens[longest]) - tokenizer.num_special_tokens_to_add(pair=True)
    if room <= doc_stride:  # the tokenizer would fail deep inside (windows could not move along the context)
        raise PipelineError(f"question {longest + 1} is {len(question_tokens[longest])} tokens: with "
                            f"dataset.max_length={max_length} that leaves {max(room, 0)} tokens of context per "
                            f"window, not more than qa.doc_stride={doc_stride}; raise dataset.max_length or lower "
                            f"qa.doc_stride")
    return tokenizer(questions, contexts, truncation="only_second", max_length=max_length, stride=doc_stride,
                     return_overflowing_tokens=True, return_offsets_mapping=True)


def context_offsets(encoded: Any, i: int) -> list[tuple[int, int] | None]:
    """Window ``i``'s character offsets, None where a token is not part of the context."""
    sequence_ids = encoded.sequence_ids(i)
    return [tuple(o) if sequence_ids[k] == 1 else None for k, o in enumerate(encoded["offset_mapping"][i])]


def _answer_positions(encoded: Any, batch: dict[str, list]) -> tuple[list[int], list[int]]:
    """Each window's first-answer token start and end; 0 (the [CLS] token) for both where the window
    does not hold the whole answer or the question has none."""
    starts, ends = [], []
    for i, sample in enumerate(encoded["overflow_to_sample_mapping"]):
        answers = batch["answers"][sample]
        offsets = context_offsets(encoded, i)
        start = end = 0
        if answers["text"]:
            first_char = answers["answer_start"][0]
            last_char = first_char + len(answers["text"][0])
            inside = [k for k, o in enumerate(offsets) if o is not None]
            if inside and offsets[inside[0]][0] <= first_char and offsets[inside[-1]][1] >= last_char:
                start = next(k for k in inside if offsets[k][1] > first_char)
                end = next(k for k in reversed(inside) if offsets[k][0] < last_char)
        starts.append(start)
        ends.append(end)
    return starts, ends


def train_windows(batch: dict[str, list], tokenizer: Any, max_length: int, doc_stride: int) -> dict[str, list]:
    """``datasets.map`` function: training windows with their answer's token start and end."""
    encoded = windows(tokenizer, batch["question"], batch["context"], max_length, doc_stride)
    starts, ends = _answer_positions(encoded, batch)
    out = {key: encoded[key] for key in encoded if key not in ("offset_mapping", "overflow_to_sample_mapping")}
    out.update(start_positions=starts, end_positions=ends, length=[len(ids) for ids in encoded["input_ids"]])
    return out


def eval_windows(batch: dict[str, list], indices: list[int], tokenizer: Any, max_length: int,
                 doc_stride: int) -> dict[str, list]:
    """``datasets.map`` function (``with_indices``): evaluation windows with their answer's positions
    (for the validation loss), their question's index and the context's character offsets."""
    encoded = windows(tokenizer, batch["question"], batch["context"], max_length, doc_stride)
    starts, ends = _answer_positions(encoded, batch)
    out = {key: encoded[key] for key in encoded if key not in ("offset_mapping", "overflow_to_sample_mapping")}
    out.update(start_positions=starts, end_positions=ends)
    out["example"] = [indices[s] for s in encoded["overflow_to_sample_mapping"]]
    out["offsets"] = [context_offsets(encoded, i) for i in range(len(encoded["input_ids"]))]
    return out
