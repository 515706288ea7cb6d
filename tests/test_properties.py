"""Property-based tests: whatever a user types or feeds in, the override parser, the config
validator and the file readers either succeed or raise PipelineError, never anything else."""
from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config.loader import apply_overrides, load_yaml, validate
from pipeline.data.readers import iter_texts, read_conll, read_file
from pipeline.errors import PipelineError
from recipes import CONFIG_DIR

BASE = load_yaml(CONFIG_DIR / "sst2_lora.yaml")
KEYS = ["training.learning_rate", "dataset.max_length", "lora.r", "lora.target_modules", "method", "dataset.name",
        "training.num_train_epochs", "dataset", "training", "seed", "lora.dropout", "training.bf16", "x.y.z"]
OVERRIDE = st.one_of(
    st.text(max_size=40),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), st.text(max_size=20)),
)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(st.lists(OVERRIDE, max_size=4))
def test_overrides_and_validation_fail_only_with_pipeline_errors(overrides):
    try:
        validate(apply_overrides(BASE, overrides))
    except PipelineError as exc:
        assert "\n" not in str(exc)


@FAST
@given(st.binary(max_size=300), st.sampled_from([".csv", ".tsv", ".jsonl", ".json", ".jsonl.gz"]))
def test_table_readers_fail_only_with_pipeline_errors(content, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"data{suffix}"
        path.write_bytes(content)
        try:
            columns = read_file(path)
            assert isinstance(columns, dict)
        except PipelineError:
            pass


@FAST
@given(st.lists(st.sampled_from(list("ab \t\n-BIO") + ["-DOCSTART-", "é"]), max_size=120).map("".join))
def test_conll_reader_fails_only_with_pipeline_errors(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.conll"
        path.write_text(content, encoding="utf-8")
        try:
            data = read_conll(path)
            assert len(data["tokens"]) == len(data["tags"])
        except PipelineError:
            pass


@FAST
@given(st.binary(max_size=300), st.sampled_from([".txt", ".jsonl", ".csv", ".tsv"]))
def test_prediction_input_readers_fail_only_with_pipeline_errors(content, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"in{suffix}"
        path.write_bytes(content)
        try:
            assert all(isinstance(t, str) and t.strip() for t in iter_texts(path))
        except PipelineError:
            pass
