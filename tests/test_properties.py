"""Property-based tests: whatever a user types, writes in a file or sends over HTTP, each entry point
either works or stops with the project's one-line error (the CLI's and the API's ``PipelineError``;
a 4xx ``{"error": ...}`` from the server), never a traceback or a 5xx.

Each entry point runs ``CI_CASES`` generated cases in the suite (the count is in the test's name);
the slow-marked twins run ``THOROUGH_CASES`` (``pytest -m slow tests/test_properties.py``)."""
from __future__ import annotations

import http.client
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import serving
from pipeline.config.loader import apply_overrides, load_config, load_yaml, validate
from pipeline.data.readers import iter_question_pairs, iter_texts, read_conll, read_file
from pipeline.errors import PipelineError
from recipes import CONFIG_DIR

CI_CASES = 150
THOROUGH_CASES = 2000


def cases(count: int) -> settings:
    return settings(max_examples=count, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def one_line(exc: PipelineError) -> None:
    assert str(exc) and "\n" not in str(exc)


# --------------------------------------------------------------------------------------------
# Configs: dotted overrides and whole YAML files

BASE = load_yaml(CONFIG_DIR / "sst2_lora.yaml")
KEYS = ["training.learning_rate", "dataset.max_length", "lora.r", "lora.target_modules", "method", "dataset.name",
        "training.num_train_epochs", "dataset", "training", "seed", "lora.dropout", "training.bf16", "x.y.z",
        "recipe", "model", "qa.doc_stride", "training.warmup_steps", "dataset.train_file", "output_dir"]
YAML_VALUES = st.one_of(
    st.text(max_size=20), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(),
    st.sampled_from(["1e999", "-1e999", ".nan", "0x1F", "9" * 400, "[query, value]", "{a: 1}", "[[[[]]]]", "~",
                     "\t3", "'unclosed", "!!python/object:os.system ls", "&a [*a]", "2026-12-05", "null"]),
)
OVERRIDE = st.one_of(
    st.text(max_size=40),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), st.one_of(YAML_VALUES.map(str), st.text(max_size=20))),
)


def check_overrides(overrides: list[str]) -> None:
    try:
        validate(apply_overrides(BASE, overrides))
    except PipelineError as exc:
        one_line(exc)


def yaml_line(key: str, value: object, indent: str) -> str:
    return f"{indent}{key.rpartition('.')[2]}: {value}"


# Whole files: the shipped config's lines, shuffled, duplicated, indented with tabs, cut short, or
# with generated keys and values put in, plus raw bytes (BOMs, NULs, other encodings).
CONFIG_TEXT = st.one_of(
    st.binary(max_size=400),
    st.lists(st.one_of(
        st.sampled_from((CONFIG_DIR / "sst2_lora.yaml").read_text().splitlines()),
        st.builds(yaml_line, st.sampled_from(KEYS), YAML_VALUES, st.sampled_from(["", "  ", "\t", "    "])),
    ), max_size=25).map(lambda lines: "\n".join(lines).encode("utf-8")),
    st.builds(lambda prefix, text: prefix + text.encode("utf-8"),
              st.sampled_from([b"", b"\xef\xbb\xbf", b"\x00", b"\xff\xfe"]),
              st.sampled_from([(CONFIG_DIR / name).read_text() for name in ("sst2_lora.yaml", "squad_full.yaml")])),
)


def check_config_file(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_bytes(content)
        try:
            load_config(path)
        except PipelineError as exc:
            one_line(exc)


# --------------------------------------------------------------------------------------------
# Data files: every format the readers take

def sst2_lines() -> list[str]:
    from pipeline.data.catalogue import data_root

    return (data_root() / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[:40]


SST2_LINES = sst2_lines()
# Real rows, edited the ways files go wrong: ragged rows, stray quotes, NULs, BOMs, other encodings, huge fields.
EDITS = st.sampled_from(["", "\t", '"', "\x00", "\ufeff", ",", "\\", "é", "\r", "\t\t\t", "{", "]", "x" * 5000])
ROWS = st.lists(st.builds(lambda line, edit, at: line[:at] + edit + line[at:], st.sampled_from(SST2_LINES), EDITS,
                          st.integers(0, 60)), max_size=12)
FILE_BYTES = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda rows, encoding: "\n".join(rows).encode(encoding, errors="replace"),
              ROWS, st.sampled_from(["utf-8", "utf-16", "latin-1", "utf-8-sig"])),
    st.sampled_from([b"\x1f\x8b not gzip", b"\x1f\x8b\x08\x00\x00\x00\x00\x00", b'{"sentence": "a", "label": 1}',
                     b'[{"sentence": "a"}]', b'"just a string"', b"[1, 2, 3]", b'{"data": 3}', b"\x00" * 64]),
)
TABLE_SUFFIXES = [".csv", ".tsv", ".jsonl", ".json", ".jsonl.gz", ".csv.gz", ".parquet"]


def in_file(content: bytes, name: str):
    tmp = tempfile.TemporaryDirectory()
    path = Path(tmp.name) / name
    path.write_bytes(content)
    return tmp, path


def check_table(content: bytes, suffix: str) -> None:
    tmp, path = in_file(content, f"data{suffix}")
    with tmp:
        try:
            assert isinstance(read_file(path), dict)
        except PipelineError as exc:
            one_line(exc)


CONLL_TEXT = st.lists(st.sampled_from(list("ab \t\n-BIO") + ["-DOCSTART-", "é", "B-PER", "\x00", "\r\n"]),
                      max_size=120).map("".join)


def check_conll(content: str) -> None:
    tmp, path = in_file(content.encode("utf-8"), "data.conll")
    with tmp:
        try:
            data = read_conll(path)
            assert len(data["tokens"]) == len(data["tags"])
        except PipelineError as exc:
            one_line(exc)


def check_prediction_input(content: bytes, suffix: str) -> None:
    """``predict``/``ner --file``: texts streamed from the file."""
    tmp, path = in_file(content, f"in{suffix}")
    with tmp:
        try:
            assert all(isinstance(t, str) and t.strip() for t in iter_texts(path))
        except PipelineError as exc:
            one_line(exc)


def check_question_file(content: bytes, suffix: str) -> None:
    """``qa --file``: questions with their contexts streamed from the file."""
    tmp, path = in_file(content, f"questions{suffix}")
    with tmp:
        try:
            for pair in iter_question_pairs(path, "question", "context"):
                assert isinstance(pair["question"], str) and isinstance(pair["context"], str)
        except PipelineError as exc:
            one_line(exc)


ROLE_NAMES = st.sampled_from(["user", "assistant", "system", "human", "gpt", "robot", "", "USER"])
TURN = st.one_of(st.fixed_dictionaries({"role": ROLE_NAMES, "content": st.one_of(st.text(max_size=30), st.none())}),
                 st.fixed_dictionaries({"from": ROLE_NAMES, "value": st.one_of(st.text(max_size=30), st.integers())}),
                 st.just({}), st.text(max_size=5))
CONVERSATION_ROW = st.one_of(
    st.fixed_dictionaries({"messages": st.lists(TURN, max_size=4)}),
    st.fixed_dictionaries({"conversations": st.one_of(st.lists(TURN, max_size=4), st.text(max_size=5))}),
    st.fixed_dictionaries({"instruction": st.text(max_size=20), "output": st.one_of(st.text(max_size=20), st.none())},
                          optional={"input": st.one_of(st.text(max_size=10), st.integers())}),
    st.fixed_dictionaries({"prompt": st.text(max_size=20), "completion": st.text(max_size=20)}),
    st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
)
CONVERSATION_BYTES = st.one_of(
    st.builds(lambda rows, suffix: (suffix, "".join(json.dumps(r) + "\n" for r in rows).encode()),
              st.lists(CONVERSATION_ROW, min_size=1, max_size=5), st.just(".jsonl")),
    st.builds(lambda rows: (".json", json.dumps(rows).encode()), st.lists(CONVERSATION_ROW, min_size=1, max_size=5)),
    st.builds(lambda content, suffix: (suffix, content), FILE_BYTES, st.sampled_from([".jsonl", ".json", ".csv"])),
)


def check_conversation_file(case: tuple[str, bytes]) -> None:
    """The instruction recipe's data: every row a conversation with an assistant reply, or one line
    naming the file and row."""
    from pipeline.config.schema import ChatConfig, DatasetConfig
    from pipeline.data.conversations import load_conversations

    suffix, content = case
    tmp, path = in_file(content, f"chat{suffix}")
    with tmp:
        try:
            splits = load_conversations(DatasetConfig(train_file=str(path)), ChatConfig(), seed=0)
            for conversation in splits["train"] + splits["validation"]:
                assert any(m["role"] == "assistant" and m["content"].strip() for m in conversation)
        except PipelineError as exc:
            one_line(exc)


# --------------------------------------------------------------------------------------------
# HTTP: every body and header the server takes

JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30),
              st.sampled_from(["", " ", "\x00", "A true cinematic achievement!", "é" * 50])),
    lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(st.text(max_size=10), children, max_size=5)),
    max_leaves=20,
)
TEXT = st.one_of(st.text(max_size=60), st.sampled_from(["", " ", "x" * 30_000, "A fine film."]), JSON_VALUES)
PREDICT_BODIES = st.one_of(
    JSON_VALUES.map(json.dumps),
    st.builds(lambda texts, extra: json.dumps({"texts": texts, **extra}), st.lists(TEXT, max_size=6),
              st.dictionaries(st.sampled_from(["top_k", "adapter", "texts"]), JSON_VALUES, max_size=2)),
).map(str.encode)
QUESTION = st.one_of(st.builds(lambda q, c: {"question": q, "context": c}, TEXT, TEXT), JSON_VALUES)
QA_BODIES = st.one_of(
    JSON_VALUES.map(json.dumps),
    st.builds(lambda items, extra: json.dumps({"questions": items, **extra}), st.lists(QUESTION, max_size=4),
              st.dictionaries(st.sampled_from(["top_k", "questions"]), JSON_VALUES, max_size=2)),
).map(str.encode)
RAW_BODIES = st.one_of(st.binary(max_size=200), st.integers(1, 40_000).map(lambda depth: b"[" * depth + b"]" * depth),
                       st.sampled_from([b"", b"{", b"\xff\xfe{}", b'{"texts": ["\xe9"]}', b"1" * 5000, b"1e999999"]))
HEADERS = st.dictionaries(st.sampled_from(["Content-Type", "Content-Length", "Authorization", "Transfer-Encoding",
                                           "Expect"]),
                          # (a chunked body is not generated: a message left unfinished waits, like a slow client)
                          st.sampled_from(["application/json", "text/plain", "", "0", "-1", "99999999999999", "abc",
                                           "Bearer x", "chunked, gzip", "100-continue", "gzip"]), max_size=3)


def check_request(url: str, path: str, body: bytes, headers: dict[str, str] | None = None) -> None:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest("POST", path, skip_accept_encoding=True)
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        connection.send(body)
        response = connection.getresponse()
        status, payload = response.status, response.read()
    except (ConnectionError, http.client.HTTPException):  # a request line or framing the server rightly refused
        return
    finally:
        connection.close()
    assert status < 500, (status, payload[:200])
    if payload == b"Invalid HTTP request received.":  # framing the HTTP layer refuses before the app runs
        assert status == 400
    elif status >= 400:
        error = json.loads(payload)["error"]
        assert isinstance(error, str) and "\n" not in error


@pytest.fixture(scope="module")
def predict_url(lora_run):
    from pipeline.inference.engines import TextClassifier
    from pipeline.inference.serve import create_app

    with serving(create_app(TextClassifier.from_run(lora_run))) as url:
        yield url


@pytest.fixture(scope="module")
def qa_url(qa_run):
    from pipeline.inference.question_answering import QuestionAnswerer
    from pipeline.inference.serve import create_app

    with serving(create_app(QuestionAnswerer.from_run(qa_run))) as url:
        yield url


# --------------------------------------------------------------------------------------------
# The tests: each entry point at CI_CASES, and a slow twin at THOROUGH_CASES

@cases(CI_CASES)
@given(overrides=st.lists(OVERRIDE, max_size=4))
def test_config_overrides_150_cases(overrides):
    check_overrides(overrides)


@cases(CI_CASES)
@given(content=CONFIG_TEXT)
def test_config_files_150_cases(content):
    check_config_file(content)


@cases(CI_CASES)
@given(content=FILE_BYTES, suffix=st.sampled_from(TABLE_SUFFIXES))
def test_training_data_files_150_cases(content, suffix):
    check_table(content, suffix)


@cases(CI_CASES)
@given(content=CONLL_TEXT)
def test_conll_files_150_cases(content):
    check_conll(content)


@cases(CI_CASES)
@given(content=FILE_BYTES, suffix=st.sampled_from([".txt", ".jsonl", ".csv", ".tsv"]))
def test_prediction_input_files_150_cases(content, suffix):
    check_prediction_input(content, suffix)


@cases(CI_CASES)
@given(content=FILE_BYTES, suffix=st.sampled_from([".jsonl", ".csv", ".tsv"]))
def test_question_files_150_cases(content, suffix):
    check_question_file(content, suffix)


@cases(CI_CASES)
@given(case=CONVERSATION_BYTES)
def test_conversation_files_150_cases(case):
    check_conversation_file(case)


@pytest.mark.slow
@cases(THOROUGH_CASES)
@given(case=CONVERSATION_BYTES)
def test_conversation_files_2000_cases(case):
    check_conversation_file(case)


@cases(CI_CASES)
@given(body=st.one_of(PREDICT_BODIES, RAW_BODIES), headers=HEADERS)
def test_http_predict_requests_150_cases(predict_url, body, headers):
    check_request(predict_url, "/predict", body, headers)


@cases(CI_CASES)
@given(body=st.one_of(QA_BODIES, RAW_BODIES), headers=HEADERS)
def test_http_qa_requests_150_cases(qa_url, body, headers):
    check_request(qa_url, "/qa", body, headers)


@pytest.mark.slow
@cases(THOROUGH_CASES)
@given(overrides=st.lists(OVERRIDE, max_size=4))
def test_config_overrides_2000_cases(overrides):
    check_overrides(overrides)


@pytest.mark.slow
@cases(THOROUGH_CASES)
@given(content=CONFIG_TEXT)
def test_config_files_2000_cases(content):
    check_config_file(content)


@pytest.mark.slow
@cases(THOROUGH_CASES)
@given(content=FILE_BYTES, suffix=st.sampled_from(TABLE_SUFFIXES))
def test_training_data_files_2000_cases(content, suffix):
    check_table(content, suffix)


@pytest.mark.slow
@cases(THOROUGH_CASES)
@given(content=CONLL_TEXT)
def test_conll_files_2000_cases(content):
    check_conll(content)


@pytest.mark.slow
@cases(THOROUGH_CASES)
@given(content=FILE_BYTES, suffix=st.sampled_from([".txt", ".jsonl", ".csv", ".tsv"]))
def test_prediction_input_files_2000_cases(content, suffix):
    check_prediction_input(content, suffix)


@pytest.mark.slow
@cases(THOROUGH_CASES)
@given(content=FILE_BYTES, suffix=st.sampled_from([".jsonl", ".csv", ".tsv"]))
def test_question_files_2000_cases(content, suffix):
    check_question_file(content, suffix)


@pytest.mark.slow
@cases(THOROUGH_CASES)
@given(body=st.one_of(PREDICT_BODIES, RAW_BODIES), headers=HEADERS)
def test_http_predict_requests_2000_cases(predict_url, body, headers):
    check_request(predict_url, "/predict", body, headers)


@pytest.mark.slow
@cases(THOROUGH_CASES)
@given(body=st.one_of(QA_BODIES, RAW_BODIES), headers=HEADERS)
def test_http_qa_requests_2000_cases(qa_url, body, headers):
    check_request(qa_url, "/qa", body, headers)
