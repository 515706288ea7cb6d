"""The batched inference engine behind ``predict``, ``evaluate`` and ``serve``.

Texts are sorted by length so each batch pads only to its own longest text, run under
``torch.inference_mode``, and returned in the caller's order. Files stream through in chunks, so
memory stays constant whatever their size. Several LoRA adapters can share one base model; a lock
makes "switch adapter, run batch" atomic for concurrent callers.
"""
from __future__ import annotations

import contextlib
import csv
import json
import re
import sys
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ContextManager, Iterable, Iterator, Sequence, TextIO

import numpy as np
import torch

from pipeline import runs
from pipeline.data import iter_jsonl
from pipeline.errors import PipelineError
from pipeline.models import load_pretrained, load_tokenizer, resolve_model
from pipeline.words import encode_words, split_words

PRECISIONS = ("fp32", "bf16", "int8")
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


@dataclass(frozen=True)
class LoadOptions:
    """How a finished run is loaded. A run folder is data: running code from it (``trust_remote_code``)
    or unpickling its weights (``allow_pickle``) takes the caller's flag, never the run's own config."""
    device: str = "auto"  # auto: a GPU when there is one
    precision: str | None = None  # None: bf16 on a bf16-capable GPU, else fp32
    trust_remote_code: bool = False
    allow_pickle: bool = False


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` takes a CUDA GPU, else Apple's MPS, else the CPU; a named device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", name):
        raise PipelineError(f"--device {name!r} is not a device; use {DEVICE_CHOICES}")
    if name.startswith("cuda"):
        count = torch.cuda.device_count()
        index = int(name.partition(":")[2] or 0)
        if index >= count:
            found = f"{count} CUDA GPU(s)" if count else "no CUDA GPU (or a CPU-only torch build)"
            raise PipelineError(f"--device {name}: this machine has {found}; use --device auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise PipelineError("--device mps: Apple's MPS backend is not available here; use --device auto or cpu")
    return torch.device(name)


def resolve_precision(precision: str | None, device: torch.device) -> str:
    if precision is None:
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision not in PRECISIONS:
        raise PipelineError(f"precision {precision!r} is unknown; choose one of {', '.join(PRECISIONS)}")
    if precision == "int8" and device.type != "cpu":
        raise PipelineError(f"--precision int8 (dynamic quantization) runs on the CPU only; use bf16 on {device}")
    return precision


@dataclass
class TextClassifier:
    model: torch.nn.Module
    tokenizer: Any
    label_names: list[str]
    max_length: int = 128
    batch_size: int = 64
    adapters: list[str] = field(default_factory=list)  # LoRA adapters loaded on the base, by name
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_run(cls, run_dir: str | Path, batch_size: int = 64, max_length: int | None = None,
                 adapters: dict[str, str | Path] | None = None,
                 options: LoadOptions = LoadOptions()) -> "TextClassifier":
        """Load a finished classification run (see ``load_run_model``)."""
        from transformers import AutoModelForSequenceClassification

        loaded = load_run_model(run_dir, AutoModelForSequenceClassification, adapters, options)
        model = loaded.model if loaded.adapters else first_token_last_layer(loaded.model)
        return cls(model, loaded.tokenizer, loaded.label_names,
                   max_length or loaded.config.dataset.max_length, batch_size, loaded.adapters)

    def probabilities(self, texts: Sequence[str], adapter: str | None = None) -> np.ndarray:
        """Class probabilities, shape (len(texts), n_labels), in input order."""
        texts = check_texts(texts)
        # Tokenize the whole chunk at once (fast), then batch by exact token length so that each
        # batch pads to within a token or two of its texts.
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        order = np.argsort([-len(ids) for ids in encoded["input_ids"]], kind="stable")
        keys = list(encoded.keys())
        device = next(self.model.parameters()).device
        out = np.zeros((len(texts), len(self.label_names)), dtype=np.float32)
        with self._lock, torch.inference_mode():
            self._use(adapter)
            for start in range(0, len(texts), self.batch_size):
                idx = order[start:start + self.batch_size]
                batch = self.tokenizer.pad({k: [encoded[k][i] for i in idx] for k in keys}, return_tensors="pt")
                logits = self.model(**batch.to(device)).logits
                out[idx] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
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
                self.model.set_adapter("default")
            return
        if adapter not in self.adapters:
            known = ", ".join(self.adapters) or "none (load them with --adapter NAME=RUN_DIR)"
            raise PipelineError(f"adapter {adapter!r} is not loaded; loaded adapters: {known}")
        self.model.set_adapter(adapter)


def export_merged(run_dir: str | Path, out_dir: str | Path, model_class: Any,
                  options: LoadOptions = LoadOptions(device="cpu", precision="fp32")) -> Path:
    """Save a run as a plain transformers model of ``model_class`` (an adapter merged into its base)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise PipelineError(f"export folder {out_dir} is not empty; choose a new folder")
    loaded = load_run_model(run_dir, model_class, options=options)  # merges a single adapter
    if loaded.adapters:
        raise PipelineError(f"run {run_dir} uses {loaded.config.method} tuning, whose virtual tokens "
                            f"are inputs, not weights: it cannot merge into a plain model; keep the adapter")
    out_dir.mkdir(parents=True, exist_ok=True)
    loaded.model.save_pretrained(out_dir)
    loaded.tokenizer.save_pretrained(out_dir)
    if loaded.label_names:
        runs.save_labels(out_dir, loaded.label_names)
    return out_dir


@dataclass
class LoadedRun:
    model: torch.nn.Module
    tokenizer: Any
    label_names: list[str]
    config: Any  # the run's RunConfig
    adapters: list[str]


def load_run_model(run_dir: str | Path, auto_class: Any, adapters: dict[str, str | Path] | None = None,
                   options: LoadOptions = LoadOptions()) -> LoadedRun:
    """Load a finished run: a full model, or the base model plus the run's adapter, on
    ``options.device`` at ``options.precision``.

    ``adapters`` adds more LoRA runs of the same base (name -> run folder); the run's own adapter
    is then called ``default``. With no extra adapters a LoRA adapter is merged into the base,
    which gives the same predictions at plain-model speed.
    """
    run_dir = Path(run_dir)
    config = runs.load_run_config(run_dir)
    label_names = runs.load_labels(run_dir)
    device = resolve_device(options.device)
    precision = resolve_precision(options.precision, device)
    tokenizer = load_tokenizer(str(run_dir), options.trust_remote_code)
    names: list[str] = []
    if runs.is_adapter_run(run_dir):
        from peft import PeftModel

        base = load_pretrained(auto_class, config.model, options.trust_remote_code, options.allow_pickle,
                               **label_kwargs(label_names))
        _check_adapter_files(run_dir)
        with warnings.catch_warnings():  # AdaLoRA's saved rank pattern names its own tensors, which peft
            warnings.filterwarnings("ignore", message="The following rank_pattern keys")  # then reports
            model = PeftModel.from_pretrained(base, run_dir, adapter_name="default")
        names = ["default"]
        for name, other in (adapters or {}).items():
            _check_compatible(run_dir, config.model, label_names, Path(other))
            model.load_adapter(str(other), adapter_name=name)
            names.append(name)
        if len(names) == 1 and not model.peft_config["default"].is_prompt_learning:
            model, names = model.merge_and_unload(), []  # virtual tokens cannot merge into weights
    else:
        if adapters:
            raise PipelineError(f"--adapter needs a LoRA run as the base run; {run_dir} holds a full model")
        if not (run_dir / "config.json").exists():
            raise PipelineError(f"run folder {run_dir} has neither a model nor an adapter; "
                                f"the run did not finish, retrain or resume it")
        model = load_pretrained(auto_class, str(run_dir), options.trust_remote_code, options.allow_pickle)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = with_precision(model.eval(), precision).to(device)
    return LoadedRun(model, tokenizer, label_names, config, names)


class FirstTokenLayer(torch.nn.Module):
    """A BERT layer computed for the first ([CLS]) position only. Its keys and values still come
    from every token, but the query, the attention output and the feed-forward block run on one
    position instead of all of them. As the last layer of a BERT classifier, whose pooler reads
    nothing but that position, it gives the same logits (tested) for about 1/L less work."""

    def __init__(self, layer: torch.nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                *args: Any, **kwargs: Any) -> torch.Tensor:
        attention = self.layer.attention.self
        batch, length, _ = hidden_states.shape
        heads, size = attention.num_attention_heads, attention.attention_head_size
        query = attention.query(hidden_states[:, :1]).view(batch, 1, heads, size).transpose(1, 2)
        key = attention.key(hidden_states).view(batch, length, heads, size).transpose(1, 2)
        value = attention.value(hidden_states).view(batch, length, heads, size).transpose(1, 2)
        if attention_mask is not None and attention_mask.dim() == 4:
            attention_mask = attention_mask[:, :, :1, :]  # the first query's row
        context = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                                                   scale=attention.scaling)
        context = context.transpose(1, 2).reshape(batch, 1, heads * size)
        attended = self.layer.attention.output(context, hidden_states[:, :1])
        return self.layer.output(self.layer.intermediate(attended), attended)


def first_token_last_layer(model: torch.nn.Module) -> torch.nn.Module:
    """For inference with a BERT-family sequence classifier (pooler on [CLS]): compute the last
    layer for [CLS] alone. Other models are returned as they are."""
    bert = getattr(model, "bert", None)
    layers = getattr(getattr(bert, "encoder", None), "layer", None)
    if bert is None or bert.pooler is None or not layers or model.training \
            or not hasattr(getattr(layers[-1], "attention", None), "self") or isinstance(layers[-1], FirstTokenLayer):
        return model
    layers[-1] = FirstTokenLayer(layers[-1])
    return model


def label_kwargs(label_names: list[str]) -> dict[str, Any]:
    if not label_names:  # language models
        return {}
    return {"num_labels": len(label_names), "id2label": dict(enumerate(label_names)),
            "label2id": {name: i for i, name in enumerate(label_names)}}


def with_precision(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """bf16 weights, or dynamic int8 quantization of the Linear layers (CPU)."""
    if precision == "bf16":
        return model.to(torch.bfloat16)
    if precision == "int8":
        import warnings

        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch flags its quantized tensor API as deprecated
            return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return model


def _check_adapter_files(run_dir: Path) -> None:
    if not (run_dir / "adapter_model.safetensors").exists():
        raise PipelineError(f"run folder {run_dir} has no adapter_model.safetensors; retrain the run")


def _check_compatible(run_dir: Path, base: str, label_names: list[str], other: Path) -> None:
    other_config = runs.load_run_config(other)
    if not runs.is_adapter_run(other):
        raise PipelineError(f"--adapter {other} is not a LoRA run folder; only adapters share a base")
    _check_adapter_files(other)
    if resolve_model(other_config.model) != resolve_model(base):
        raise PipelineError(f"adapter {other} was trained on {other_config.model}, the base run {run_dir} on "
                            f"{base}; adapters must share the base model")
    if len(runs.load_labels(other)) != len(label_names):
        raise PipelineError(f"adapter {other} has {len(runs.load_labels(other))} labels, the base run "
                            f"{len(label_names)}; adapters on one base need the same number of labels")


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


def iter_texts(path: Path, column: str = "text") -> Iterator[str]:
    """Texts from a file, one at a time: .txt (a line each), .jsonl (field ``column``), .csv/.tsv
    (column ``column``). Blank texts are skipped."""
    if not path.is_file():
        raise PipelineError(f"input file {path} does not exist or is not a file; check the path")
    suffix = path.suffix.lower()
    if suffix not in (".txt", ".jsonl", ".csv", ".tsv"):
        raise PipelineError(f"input file {path}: use .txt (one text per line), .jsonl, .csv or .tsv")
    with open(path, encoding="utf-8", newline="" if suffix in (".csv", ".tsv") else None) as f:
        try:
            yield from _iter_open(f, path, suffix, column)
        except UnicodeDecodeError:
            raise PipelineError(f"input file {path} is not UTF-8; re-save it as UTF-8") from None


def _iter_open(f: TextIO, path: Path, suffix: str, column: str) -> Iterator[str]:
    if suffix == ".txt":
        for line in f:
            if line.strip():
                yield line.rstrip("\r\n")
        return
    if suffix == ".jsonl":
        for number, row in iter_jsonl(f, path):
            if column not in row:
                raise PipelineError(f"{path} line {number} has no field {column!r}; pass --text-column")
            if not isinstance(row[column], str):
                raise PipelineError(f"{path} line {number}: {column!r} is a {type(row[column]).__name__}, "
                                    f"not a string; fix that line")
            if row[column].strip():
                yield row[column]
        return
    reader = csv.reader(f, delimiter="\t" if suffix == ".tsv" else ",",
                        quoting=csv.QUOTE_NONE if suffix == ".tsv" else csv.QUOTE_MINIMAL)
    header = next(reader, None)
    if not header or column not in header:
        raise PipelineError(f"{path} has no column {column!r}; its columns are {', '.join(header or [])}; "
                            f"pass --text-column")
    index = header.index(column)
    for row in reader:
        if len(row) != len(header):
            raise PipelineError(f"{path} line {reader.line_num}: {len(row)} fields where the header has "
                                f"{len(header)}; fix that row")
        if row[index].strip():
            yield row[index]


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
                   top_k: int | None = None, adapter: str | None = None, chunk_size: int = 4096,
                   progress: bool = True) -> int:
    """Predict an iterable of texts chunk by chunk (each chunk length-sorted), writing as it goes."""
    from tqdm import tqdm

    count = 0
    with tqdm(unit=" texts", disable=not progress, file=sys.stderr, desc="predicting") as bar:
        for chunk in chunks(texts, chunk_size):
            for text, prediction in zip(chunk, classifier.predict(chunk, top_k=top_k, adapter=adapter)):
                writer.write(text, prediction)
            count += len(chunk)
            bar.update(len(chunk))
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
    model: torch.nn.Module
    tokenizer: Any
    label_names: list[str]
    max_length: int = 256
    batch_size: int = 32
    adapters: list[str] = field(default_factory=list)

    @classmethod
    def from_run(cls, run_dir: str | Path, batch_size: int = 32, max_length: int | None = None,
                 options: LoadOptions = LoadOptions()) -> "TokenTagger":
        from transformers import AutoModelForTokenClassification

        loaded = load_run_model(run_dir, AutoModelForTokenClassification, None, options)
        return cls(loaded.model, loaded.tokenizer, loaded.label_names,
                   max_length or loaded.config.dataset.max_length, batch_size, loaded.adapters)

    def tag_words(self, sentences: Sequence[Sequence[str]]) -> tuple[list[list[str]], list[list[float]], int]:
        """Tags and their probabilities per word (from each word's first sub-token), and how many
        sentences were cut at max_length (their remaining words are tagged O with score 0)."""
        order = np.argsort([-sum(len(w) for w in s) for s in sentences], kind="stable")
        device = next(self.model.parameters()).device
        tags: list[list[str]] = [[] for _ in sentences]
        scores: list[list[float]] = [[] for _ in sentences]
        truncated = 0
        with torch.inference_mode():
            for start in range(0, len(sentences), self.batch_size):
                idx = order[start:start + self.batch_size]
                features, word_ids = encode_words(self.tokenizer, [sentences[i] for i in idx], self.max_length)
                batch = self.tokenizer.pad(features, return_tensors="pt")
                probs = torch.softmax(self.model(**batch.to(device)).logits.float(), dim=-1).cpu()
                best, ids = probs.max(-1)
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
        from pipeline.metrics import entity_spans

        out = []
        for text, ws, ts, ss in zip(texts, words, tags, scores):
            found = []
            for first, last, kind in entity_spans(ts):
                start, end = ws[first][1], ws[last - 1][2]
                found.append({"entity": kind, "text": text[start:end], "start": start, "end": end,
                              "score": float(np.mean(ss[first:last]))})
            out.append(found)
        return out
