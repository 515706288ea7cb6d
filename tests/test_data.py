"""Data loading on real rows: catalogue, file formats, label maps and every bad-input message."""
from __future__ import annotations

import json
from collections import Counter

import pytest
from conftest import write_tsv

from pipeline.config.schema import DatasetConfig
from pipeline.data.readers import read_file
from pipeline.data.tasks import load_text_classification
from pipeline.errors import PipelineError


def files(train, validation=None, **kw) -> DatasetConfig:
    return DatasetConfig(train_file=str(train), validation_file=str(validation) if validation else None,
                         text_column=kw.pop("text_column", "sentence"), **kw)


def fails(cfg: DatasetConfig) -> str:
    with pytest.raises(PipelineError) as info:
        load_text_classification(cfg, seed=0)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_sst2_from_the_data_root_has_its_published_sizes():
    data = load_text_classification(DatasetConfig(name="sst2"), seed=0)
    assert len(data.splits["train"]) == 67349 and len(data.splits["validation"]) == 872
    assert data.label_names == ["negative", "positive"]
    assert Counter(data.splits["validation"]["label"]) == {1: 444, 0: 428}


def test_rotten_tomatoes_gets_a_seeded_split_of_its_latin1_files():
    data = load_text_classification(DatasetConfig(name="rotten_tomatoes"), seed=0)
    sizes = {k: len(v) for k, v in data.splits.items()}
    assert sizes == {"validation": 1066, "test": 1066, "train": 8530}
    assert any("é" in t for t in data.splits["train"]["text"])  # decoded from Latin-1


@pytest.mark.parametrize("suffix", ["csv", "tsv", "jsonl", "json", "parquet"])
def test_every_file_format_reads_the_same_rows(tmp_path, sst2_rows, suffix):
    rows = sst2_rows[:50]
    path = tmp_path / f"train.{suffix}"
    records = [{"sentence": s, "label": int(l)} for s, l in rows]
    if suffix == "tsv":
        write_tsv(path, rows)
    elif suffix == "csv":
        import csv
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["sentence", "label"])
            writer.writerows(rows)
    elif suffix == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    elif suffix == "json":
        path.write_text(json.dumps(records), encoding="utf-8")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.Table.from_pylist(records), path)
    columns = read_file(path)
    assert columns["sentence"] == [s for s, _ in rows]
    assert [int(l) for l in columns["label"]] == [int(l) for _, l in rows]


def test_string_labels_are_mapped_and_a_stratified_validation_split_is_made(tmp_path, sst2_rows):
    rows = [(s, "pos" if l == "1" else "neg") for s, l in sst2_rows[:400]]
    data = load_text_classification(files(write_tsv(tmp_path / "t.tsv", rows), validation_split=0.25), seed=3)
    assert data.label_names == ["neg", "pos"]
    assert len(data.splits["validation"]) == 100
    share = lambda split: sum(split["label"]) / len(split)  # noqa: E731
    assert abs(share(data.splits["validation"]) - share(data.splits["train"])) < 0.02
    again = load_text_classification(files(tmp_path / "t.tsv", validation_split=0.25), seed=3)
    assert again.splits["validation"]["text"] == data.splits["validation"]["text"]


def test_empty_texts_are_dropped_and_counted(tmp_path, sst2_rows, capsys):
    rows = sst2_rows[:100] + [(" ", "1"), ("", "0")]
    data = load_text_classification(files(write_tsv(tmp_path / "t.tsv", rows)), seed=0)
    assert len(data.splits["train"]) + len(data.splits["validation"]) == 100
    assert "dropped 2 empty text(s) from train" in capsys.readouterr().out


def test_missing_file(tmp_path):
    assert "does not exist" in fails(files(tmp_path / "missing.csv"))


def test_missing_column_names_the_columns_that_exist(tmp_path, sst2_rows):
    path = write_tsv(tmp_path / "t.tsv", sst2_rows[:50])
    message = fails(files(path, text_column="review"))
    assert "no text column 'review'" in message and "sentence, label" in message
    assert "no label column 'sentiment'" in fails(files(path, label_column="sentiment"))


def test_validation_label_never_seen_in_training(tmp_path, sst2_rows):
    train = write_tsv(tmp_path / "train.tsv", [(s, "pos" if l == "1" else "neg") for s, l in sst2_rows[:100]])
    dev = write_tsv(tmp_path / "dev.tsv", [(s, "neutral") for s, _ in sst2_rows[100:110]])
    message = fails(files(train, dev))
    assert "'neutral'" in message and "never has" in message and "neg, pos" in message


def test_a_single_class_is_refused(tmp_path, sst2_rows):
    rows = [(s, l) for s, l in sst2_rows if l == "1"][:80]
    assert "single class" in fails(files(write_tsv(tmp_path / "t.tsv", rows)))


def test_non_utf8_file_names_the_line(tmp_path, sst2_rows):
    path = tmp_path / "t.tsv"
    body = "sentence\tlabel\n" + "".join(f"{s}\t{l}\n" for s, l in sst2_rows[:20])
    path.write_bytes(body.encode() + "un film très ennuyeux\t0\n".encode("latin-1"))
    message = fails(files(path))
    assert "line 22 is not UTF-8" in message and "iconv" in message


def test_ragged_csv_row_names_the_line(tmp_path, sst2_rows):
    path = tmp_path / "t.tsv"
    lines = ["sentence\tlabel"] + [f"{s}\t{l}" for s, l in sst2_rows[:10]] + [f"{sst2_rows[10][0]}\t1\textra"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert "line 12: 3 fields where the header has 2" in fails(files(path))


def test_malformed_jsonl_line_names_the_line(tmp_path, sst2_rows):
    path = tmp_path / "t.jsonl"
    lines = [json.dumps({"sentence": s, "label": int(l)}) for s, l in sst2_rows[:10]]
    lines.insert(6, '{"sentence": "unterminated')
    path.write_text("\n".join(lines), encoding="utf-8")
    assert "line 7 is not valid JSON" in fails(files(path))


def test_missing_label_and_mixed_label_types(tmp_path, sst2_rows):
    rows = sst2_rows[:30] + [(sst2_rows[30][0], "")]
    assert "row 31 has no label" in fails(files(write_tsv(tmp_path / "a.tsv", rows)))
    rows = sst2_rows[:30] + [(s, "positive") for s, _ in sst2_rows[30:40]]
    assert "mixes label types" in fails(files(write_tsv(tmp_path / "b.tsv", rows)))


def test_directory_and_empty_file(tmp_path):
    assert "is a directory" in fails(files(tmp_path))
    (tmp_path / "e.csv").write_text("")
    assert "is empty" in fails(files(tmp_path / "e.csv"))


def test_a_hub_dataset_with_its_own_split_names_reads_as_train_and_validation(monkeypatch):
    """ultrachat_200k publishes train_sft and test_sft; the catalogue maps them to train and validation.
    The Hub is out of reach here, so its loader returns real alpaca conversations under those names."""
    import datasets

    from pipeline.config.schema import ChatConfig
    from pipeline.data.conversations import load_conversations

    alpaca = load_conversations(DatasetConfig(name="alpaca_demo"), ChatConfig(), seed=42)
    published = datasets.DatasetDict({name: datasets.Dataset.from_dict({"messages": alpaca[split][:8]})
                                      for name, split in (("train_sft", "train"), ("test_sft", "validation"))})
    asked = []
    monkeypatch.setattr(datasets, "load_dataset", lambda path, config=None: asked.append(path) or published)
    loaded = load_conversations(DatasetConfig(name="ultrachat_200k"), ChatConfig(), seed=42)
    assert asked == ["HuggingFaceH4/ultrachat_200k"]
    assert loaded == {"train": alpaca["train"][:8], "validation": alpaca["validation"][:8]}
