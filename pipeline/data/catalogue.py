"""The dataset catalogue: named datasets, each read from the local data root when it is there, else
from the Hub under its Hub name, so one recipe runs offline and online.

The data root is ``$PIPELINE_DATA_DIR``, else ``shared/data`` beside the project when it exists.
Every entry has one shape (``Entry``), and there is one Hub fallback with one error message.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from pipeline.data.readers import documents_from_text, read_conll, read_file, read_squad_json, read_text
from pipeline.errors import PipelineError

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # pipeline/data/catalogue.py -> the project
Kind = Literal["classification", "tagging", "corpus", "qa", "chat"]
Splits = dict[str, Any]  # split -> Columns (classification, qa), Sentences (tagging) or documents (corpus)


def data_root() -> Path | None:
    """Where named datasets live locally, or None (then they come from the Hub)."""
    env = os.environ.get("PIPELINE_DATA_DIR")
    if env:
        return Path(env)
    for candidate in (PROJECT_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    return None


@dataclass(frozen=True)
class Entry:
    name: str
    kind: Kind
    hub_path: str
    folder: str  # under the data root
    read_local: Callable[[Path], Splits]  # the entry's folder -> splits
    hub_config: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    label_names: tuple[str, ...] = ()
    scheme: str = "IOB2"  # tagging: the local files' scheme (IOB1 is converted)
    f1_unit: str = "word"  # qa: what answer F1 counts (characters for Japanese, JGLUE's convention)
    hub_splits: tuple[tuple[str, str], ...] = ()  # the Hub's split names that differ from ours, e.g. test_sft -> validation


def _sst2(folder: Path) -> Splits:
    splits = {"train": read_file(folder / "train.tsv"), "validation": read_file(folder / "dev.tsv")}
    test = read_file(folder / "test.tsv")  # GLUE's test split has no labels
    splits["test"] = {"sentence": test["sentence"], "label": [None] * len(test["sentence"])}
    return splits


def _rotten_tomatoes(folder: Path) -> Splits:
    """The v1.0 polarity files, split 80/10/10 with a fixed seed (the Hub copy's sizes)."""
    rows = []
    for label, name in ((0, "rt-polarity.neg"), (1, "rt-polarity.pos")):
        text = (folder / name).read_bytes().decode("latin-1")  # the original release is Latin-1
        # split on \n only: Latin-1 decodes byte 0x85 to U+0085, which splitlines() would break on
        rows += [(line.strip(), label) for line in text.split("\n") if line.strip()]
    random.Random(1234).shuffle(rows)
    n_eval = len(rows) // 10
    parts = {"validation": rows[:n_eval], "test": rows[n_eval:2 * n_eval], "train": rows[2 * n_eval:]}
    return {split: {"text": [t for t, _ in part], "label": [l for _, l in part]} for split, part in parts.items()}


def _imdb(folder: Path) -> Splits:
    splits = {}
    for split in ("train", "test"):
        parts = [read_file(p) for p in sorted(folder.glob(f"{split}-*.jsonl.gz"))]
        splits[split] = {"text": sum((p["text"] for p in parts), []), "label": sum((p["label"] for p in parts), [])}
    return splits


def _conll_files(files: dict[str, str]) -> Callable[[Path], Splits]:
    return lambda folder: {split: read_conll(folder / name) for split, name in files.items()}


def _tiny_shakespeare(folder: Path) -> Splits:
    """The first 90% of the text trains and the last 10% validates, cut at a speech boundary."""
    text = read_text(folder / "input.txt")
    cut = text.find("\n\n", int(len(text) * 0.9))
    cut = cut if cut > 0 else int(len(text) * 0.9)
    return {"train": documents_from_text(text[:cut]), "validation": documents_from_text(text[cut:])}


def _squad_files(files: dict[str, str]) -> Callable[[Path], Splits]:
    return lambda folder: {split: read_squad_json(folder / name) for split, name in files.items()}


def _json_rows(name: str) -> Callable[[Path], Splits]:
    """A JSON array of rows (one training split; the recipe holds out its own validation rows)."""
    return lambda folder: {"train": read_file(folder / name)}


CATALOGUE: dict[str, Entry] = {e.name: e for e in (
    Entry("sst2", "classification", "glue", "sst2", _sst2, hub_config="sst2", text_column="sentence",
          label_names=("negative", "positive")),
    Entry("rotten_tomatoes", "classification", "cornell-movie-review-data/rotten_tomatoes", "rotten_tomatoes",
          _rotten_tomatoes, label_names=("neg", "pos")),
    Entry("imdb", "classification", "stanfordnlp/imdb", "imdb", _imdb, label_names=("neg", "pos")),
    Entry("wnut17", "tagging", "leondz/wnut_17", "wnut17", _conll_files(
        {"train": "wnut17train.conll", "validation": "emerging.dev.conll", "test": "emerging.test.annotated"})),
    Entry("conll2003", "tagging", "eriktks/conll2003", "conll2003", _conll_files(
        {"train": "eng.train", "validation": "eng.testa", "test": "eng.testb"}), scheme="IOB1"),
    Entry("tiny_shakespeare", "corpus", "karpathy/tiny_shakespeare", "tiny_shakespeare", _tiny_shakespeare),
    # No training set offline: the official dev set's second half trains, its first half evaluates.
    Entry("squad", "qa", "rajpurkar/squad", "squad", _squad_files(
        {"train": "dev-v1.1-part2.json", "validation": "dev-v1.1-part1.json"})),
    Entry("squad_v2", "qa", "rajpurkar/squad_v2", "squad_v2", _squad_files(
        {"train": "train-v2.0.json", "validation": "dev-v2.0.json"})),
    # JGLUE's valid set trains and its test set evaluates offline; online, the Hub's train and validation.
    Entry("jsquad", "qa", "shunk031/JGLUE", "jsquad", _squad_files(
        {"train": "valid-v1.3.json", "validation": "test-v1.3.json"}), hub_config="JSQuAD", f1_unit="char"),
    # 999 alpaca-format instructions offline; online, the Alpaca set they sample (52,002 rows).
    Entry("alpaca_demo", "chat", "tatsu-lab/alpaca", "alpaca_demo", _json_rows("alpaca_en_demo.json")),
    # 300 preference pairs (ShareGPT prompt, chosen and rejected replies) offline; online, UltraFeedback's
    # binarized pairs (whole conversations: the shared prompt is split off).
    Entry("dpo_demo", "chat", "trl-lib/ultrafeedback_binarized", "preference", _json_rows("dpo_en_demo.json"),
          hub_splits=(("test", "validation"),)),
    # Online only: 200k multi-turn conversations in the messages layout (UltraChat, filtered for Zephyr).
    Entry("ultrachat_200k", "chat", "HuggingFaceH4/ultrachat_200k", "ultrachat_200k", _json_rows("train.jsonl"),
          hub_splits=(("train_sft", "train"), ("test_sft", "validation"))),
)}


def load_named(name: str, kind: Kind) -> tuple[Splits, Entry | None]:
    """A named dataset's splits, in the shape ``kind`` reads (columns, sentences or documents), with
    its catalogue entry (None for a Hub id outside the catalogue): from the data root if it is
    there, else from the Hub."""
    entry = CATALOGUE.get(name)
    root = data_root()
    if entry and root and (root / entry.folder).is_dir():
        return entry.read_local(root / entry.folder), entry
    hub_path, hub_config = (entry.hub_path, entry.hub_config) if entry else (name, None)
    try:
        import datasets

        loaded = datasets.load_dataset(hub_path, hub_config)
    except Exception as exc:  # offline, unknown id, ...: one line, with what to do
        known = ", ".join(n for n, e in CATALOGUE.items() if e.kind == kind)
        raise PipelineError(
            f"dataset {name!r} is not under the data root ({root or 'none found'}) and could not be loaded "
            f"from the Hub as {hub_path}{'/' + hub_config if hub_config else ''} ({type(exc).__name__}); "
            f"use one of {known}, set PIPELINE_DATA_DIR, or give dataset.train_file") from None
    renamed = dict(entry.hub_splits) if entry else {}
    return {renamed.get(split, split): _from_hub(ds, kind) for split, ds in loaded.items()}, entry


def _from_hub(split: Any, kind: Kind) -> Any:
    if kind == "tagging":
        tag_names = split.features["ner_tags"].feature.names
        return {"tokens": split["tokens"], "tags": [[tag_names[t] for t in s] for s in split["ner_tags"]]}
    if kind == "corpus":
        return documents_from_text("\n".join(split["text"]))
    return split.to_dict()
