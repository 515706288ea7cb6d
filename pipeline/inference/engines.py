"""The batched inference engines behind ``predict``, ``ner``, ``evaluate`` and ``serve``.

Texts are sorted by length so each batch pads only to its own longest text, run by a backend
(``pipeline.backends``: torch, ONNX Runtime or OpenVINO), and returned in the caller's order. Files stream through in chunks, so
memory stays constant whatever their size. Several LoRA adapters can share one base model; a lock
makes "switch adapter, run batch" atomic for concurrent callers.
"""
from __future__ import annotations

import contextlib
import csv
import json
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ContextManager, Iterable, Iterator, Sequence, TextIO

import numpy as np

from pipeline.data.words import encode_words, split_words
from pipeline.errors import PipelineError
from pipeline.inference.backends import Runner, TorchRunner, load_engine
from pipeline.runs.loading import LoadOptions


@dataclass
class TextClassifier:
    runner: Runner  # a backend's forward pass (a torch model is wrapped in TorchRunner)
    tokenizer: Any
    label_names: list[str]
    max_length: int = 128
    batch_size: int = 64
    adapters: list[str] = field(default_factory=list)  # LoRA adapters loaded on the base, by name
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.runner = as_runner(self.runner)

    @classmethod
    def from_run(cls, run_dir: str | Path, batch_size: int | None = None, max_length: int | None = None,
                 adapters: dict[str, str | Path] | None = None,
                 options: LoadOptions = LoadOptions()) -> "TextClassifier":
        """Load a finished classification run on the backend ``options`` names (see ``backends``);
        ``batch_size`` defaults to 64 texts, four times that on a GPU."""
        engine = load_engine(run_dir, "AutoModelForSequenceClassification", adapters, options)
        return cls(engine.runner, engine.tokenizer, engine.label_names, max_length or engine.max_length,
                   batch_size or engine.batch_size(64), engine.adapters)

    def probabilities(self, texts: Sequence[str], adapter: str | None = None) -> np.ndarray:
        """Class probabilities, shape (len(texts), n_labels), in input order."""
        return self.probabilities_of(self.encode(check_texts(texts)), adapter)

    def encode(self, texts: list[str]) -> dict[str, list[list[int]]]:
        """Tokenize a chunk at once (fast); ``probabilities_of`` then batches it by exact length."""
        return dict(self.tokenizer(texts, truncation=True, max_length=self.max_length))

    def probabilities_of(self, encoded: dict[str, list[list[int]]], adapter: str | None = None) -> np.ndarray:
        """Probabilities for tokenized texts, batched by token length so that each batch pads to
        within a token or two of its texts, in input order."""
        lengths = [len(ids) for ids in encoded["input_ids"]]
        order = np.argsort([-n for n in lengths], kind="stable")
        groups = [order[start:start + self.batch_size] for start in range(0, len(lengths), self.batch_size)]
        batches = [dict(self.tokenizer.pad({k: [v[i] for i in idx] for k, v in encoded.items()}, return_tensors="np"))
                   for idx in groups]
        out = np.zeros((len(lengths), len(self.label_names)), dtype=np.float32)
        with self._lock:
            self._use(adapter)
            for idx, logits in zip(groups, self.runner.run_batches(batches)):
                out[idx] = softmax(logits)
        return out

    def predict(self, texts: Sequence[str], top_k: int | None = None, adapter: str | None = None) -> list[Any]:
        """Per text ``{"label", "score"}`` (like the transformers pipelines), or with ``top_k`` a list
        of the k best such dicts."""
        return self.format(self.probabilities(texts, adapter), top_k)

    def format(self, probs: np.ndarray, top_k: int | None = None) -> list[Any]:
        if top_k is None:
            return [{"label": self.label_names[int(p.argmax())], "score": float(p.max())} for p in probs]
        k = min(top_k, len(self.label_names))
        return [[{"label": self.label_names[i], "score": float(p[i])} for i in np.argsort(-p)[:k]] for p in probs]

    def _use(self, adapter: str | None) -> None:
        if adapter is None:
            if self.adapters:
                self.runner.set_adapter("default")
            return
        if adapter not in self.adapters:
            known = ", ".join(self.adapters) or "none (load them with --adapter NAME=RUN_DIR)"
            raise PipelineError(f"adapter {adapter!r} is not loaded; loaded adapters: {known}")
        self.runner.set_adapter(adapter)


def as_runner(model: Any) -> Runner:
    """A backend runner as it is; a torch model wrapped in one."""
    return model if hasattr(model, "backend") else TorchRunner(model)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def check_texts(texts: Iterable[Any]) -> list[str]:
    texts = list(texts)
    if not texts:
        raise PipelineError("no texts to predict; give --text or --file")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise PipelineError(f"text {i + 1} is a {type(text).__name__}, not a string")
        if not text.strip():
            raise PipelineError(f"text {i + 1} is empty; remove it or give some words")
    return texts


# --------------------------------------------------------------------------------------------
# Files: streamed in, streamed out


def chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class PredictionWriter:
    """Writes predictions as JSON lines or CSV (by the output's suffix) as they come."""

    def __init__(self, out: TextIO, fmt: str, top_k: int | None):
        self.out, self.fmt, self.top_k = out, fmt, top_k
        if fmt == "csv":
            self.csv = csv.writer(out)
            self.csv.writerow(["text", "label", "score"] + (["top_k"] if top_k else []))

    def write(self, text: str, prediction: Any) -> None:
        best = prediction[0] if self.top_k else prediction
        if self.fmt == "csv":
            extra = [json.dumps(prediction, ensure_ascii=False)] if self.top_k else []
            self.csv.writerow([text, best["label"], f"{best['score']:.6f}"] + extra)
        elif self.fmt == "jsonl":
            record = {"text": text, **best, **({"top_k": prediction} if self.top_k else {})}
            self.out.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            self.out.write(f"{best['label']}\t{best['score']:.4f}\t{text}\n")


def predict_stream(classifier: TextClassifier, texts: Iterable[str], writer: PredictionWriter,
                   top_k: int | None = None, adapter: str | None = None, chunk_size: int = 2048,
                   progress: bool = True) -> int:
    """Predict an iterable of texts chunk by chunk (each chunk length-sorted), writing as it goes.

    Three stages overlap: while the model runs on one chunk, the next is read and tokenized on a
    second thread and the previous one formatted and written on a third (the tokenizer and the
    backends release the GIL), so a long file runs at close to the model's own rate."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    batches = chunks(texts, chunk_size)

    def read() -> tuple[list[str], dict[str, Any]] | None:
        chunk = next(batches, None)
        return None if chunk is None else (chunk, classifier.encode(check_texts(chunk)))

    def write(chunk: list[str], probs: np.ndarray) -> None:
        for text, prediction in zip(chunk, classifier.format(probs, top_k)):
            writer.write(text, prediction)
        bar.update(len(chunk))

    count = 0
    with tqdm(unit=" texts", disable=not progress, file=sys.stderr, desc="predicting") as bar, \
            ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(1) as writing:
        upcoming, written = reader.submit(read), None
        while (item := upcoming.result()) is not None:
            upcoming = reader.submit(read)
            chunk, encoded = item
            probs = classifier.probabilities_of(encoded, adapter)
            if written is not None:
                written.result()  # in order, and a failed write stops the run
            written = writing.submit(write, chunk, probs)
            count += len(chunk)
        if written is not None:
            written.result()
    return count


def output_format(path: Path | None, json_lines: bool) -> str:
    if path is None:
        return "jsonl" if json_lines else "text"
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".csv"):
        raise PipelineError(f"output file {path}: use a .jsonl or .csv name")
    return suffix[1:]


def open_output(path: Path | None) -> ContextManager[TextIO]:
    if path is None:
        return contextlib.nullcontext(sys.stdout)  # not closed at the end
    try:
        return open(path, "w", encoding="utf-8", newline="")
    except OSError as exc:
        raise PipelineError(f"cannot write {path} ({exc.strerror}); choose a writable path") from None



# --------------------------------------------------------------------------------------------
# Token classification: word tags and entity spans

@dataclass
class TokenTagger:
    runner: Runner
    tokenizer: Any
    label_names: list[str]
    max_length: int = 256
    batch_size: int = 32
    adapters: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.runner = as_runner(self.runner)

    @classmethod
    def from_run(cls, run_dir: str | Path, batch_size: int | None = None, max_length: int | None = None,
                 options: LoadOptions = LoadOptions()) -> "TokenTagger":
        """Load a finished token-classification run; ``batch_size`` defaults to 32 sentences (128 on a GPU)."""
        engine = load_engine(run_dir, "AutoModelForTokenClassification", None, options)
        return cls(engine.runner, engine.tokenizer, engine.label_names, max_length or engine.max_length,
                   batch_size or engine.batch_size(32), engine.adapters)

    def tag_words(self, sentences: Sequence[Sequence[str]]) -> tuple[list[list[str]], list[list[float]], int]:
        """Tags and their probabilities per word (from each word's first sub-token), and how many
        sentences were cut at max_length (their remaining words are tagged O with score 0)."""
        order = np.argsort([-sum(len(w) for w in s) for s in sentences], kind="stable")
        tags: list[list[str]] = [[] for _ in sentences]
        scores: list[list[float]] = [[] for _ in sentences]
        truncated = 0
        groups = [order[start:start + self.batch_size] for start in range(0, len(sentences), self.batch_size)]
        encoded = [encode_words(self.tokenizer, [sentences[i] for i in idx], self.max_length) for idx in groups]
        batches = [dict(self.tokenizer.pad(features, return_tensors="np")) for features, _ in encoded]
        for idx, (_, word_ids), logits in zip(groups, encoded, self.runner.run_batches(batches)):
            probs = softmax(logits)
            best, ids = probs.max(-1), probs.argmax(-1)
            for row, i in enumerate(idx):
                words = len(sentences[i])
                first: dict[int, int] = {}
                for position, word in enumerate(word_ids[row]):
                    if word is not None and word not in first:
                        first[word] = position
                truncated += len(first) < words
                tags[i] = [self.label_names[int(ids[row, first[w]])] if w in first else "O" for w in range(words)]
                scores[i] = [float(best[row, first[w]]) if w in first else 0.0 for w in range(words)]
        return tags, scores, truncated

    def entities(self, texts: Sequence[str]) -> list[list[dict[str, Any]]]:
        """Entities per text: ``{"entity", "text", "start", "end", "score"}`` with character offsets
        into the text (``text[start:end] == entity text``), words merged into spans. Words come from
        the model's own tokenizer (its segmenter for Japanese), not from spaces."""
        texts = check_texts(texts)
        words = [split_words(self.tokenizer, t) for t in texts]
        tags, scores, _ = self.tag_words([[w for w, _, _ in ws] for ws in words])
        from pipeline.metrics.scores import entity_spans

        out = []
        for text, ws, ts, ss in zip(texts, words, tags, scores):
            found = []
            for first, last, kind in entity_spans(ts):
                start, end = ws[first][1], ws[last - 1][2]
                found.append({"entity": kind, "text": text[start:end], "start": start, "end": end,
                              "score": float(np.mean(ss[first:last]))})
            out.append(found)
        return out
