"""Words: how a text splits into words, and how words map to a model's sub-tokens, for every tokenizer.

A language without spaces (Japanese) is split by the tokenizer's own word segmenter (MeCab in the
Japanese BERTs); a fast tokenizer's pre-tokenizer splits the rest (BERT's on spaces and punctuation,
byte-level BPE and SentencePiece on spaces). Word spans keep character offsets into the text, so an
entity found on words is an exact slice of the input. ``encode_words`` gives sub-token ids with the
word each belongs to, from the fast tokenizer's word ids or, for Python tokenizers, word by word.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

from pipeline.errors import PipelineError

WORD = re.compile(r"\w+|[^\w\s]")  # the fallback: words and single punctuation marks

Span = tuple[str, int, int]  # (word, start, end) with text[start:end] == word


def segmenter(tokenizer: Any) -> Any | None:
    """The tokenizer's word segmenter where it has one (BertJapaneseTokenizer's MeCab), else None."""
    word_tokenizer = getattr(tokenizer, "word_tokenizer", None)
    return word_tokenizer if word_tokenizer is not None and hasattr(word_tokenizer, "tokenize") else None


def split_words(tokenizer: Any, text: str) -> list[Span]:
    """The words of ``text`` as the model's tokenizer sees them, with character offsets."""
    segment = segmenter(tokenizer)
    if segment is not None:
        return _locate(text, segment.tokenize(text))
    backend = getattr(tokenizer, "backend_tokenizer", None)
    pre = getattr(backend, "pre_tokenizer", None)
    if pre is not None:
        spans = []
        for _, (start, end) in pre.pre_tokenize_str(text):
            piece = text[start:end]  # byte-level and SentencePiece pieces carry their leading space
            stripped = piece.lstrip()
            start += len(piece) - len(stripped)
            stripped = stripped.rstrip()
            if stripped:
                spans.append((stripped, start, start + len(stripped)))
        return spans
    return [(m.group(), m.start(), m.end()) for m in WORD.finditer(text)]


def _locate(text: str, words: Sequence[str]) -> list[Span]:
    """Offsets of segmenter words in order; a word the segmenter normalised is skipped over."""
    spans, position = [], 0
    for word in words:
        start = text.find(word, position)
        if start < 0:
            continue
        spans.append((word, start, start + len(word)))
        position = start + len(word)
    return spans


def join_words(words: Sequence[str], like: str) -> str:
    """Words back into a text, with spaces between them only if the original text had spaces."""
    return (" " if any(c.isspace() for c in like) else "").join(words)


def encode_words(tokenizer: Any, sentences: Sequence[Sequence[str]], max_length: int) -> tuple[dict[str, list], list]:
    """Sub-token features for sentences given as words, and per sentence the word index of each
    sub-token (None for special tokens), truncated at ``max_length``."""
    sentences = [list(words) for words in sentences]
    if getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(sentences, is_split_into_words=True, truncation=True, max_length=max_length)
        return dict(encoded), [encoded.word_ids(i) for i in range(len(sentences))]
    features: dict[str, list] = {"input_ids": [], "attention_mask": []}
    uses_types = "token_type_ids" in getattr(tokenizer, "model_input_names", [])
    if uses_types:
        features["token_type_ids"] = []
    word_ids = []
    room = max_length - tokenizer.num_special_tokens_to_add()
    for words in sentences:
        ids, owners = [], []
        for index, word in enumerate(words):
            pieces = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(word)) or [tokenizer.unk_token_id]
            ids += pieces
            owners += [index] * len(pieces)
        ids, owners = ids[:room], owners[:room]
        full = tokenizer.build_inputs_with_special_tokens(ids)
        special = tokenizer.get_special_tokens_mask(ids)
        position = iter(owners)
        word_ids.append([None if is_special else next(position) for is_special in special])
        features["input_ids"].append(full)
        features["attention_mask"].append([1] * len(full))
        if uses_types:
            features["token_type_ids"].append(tokenizer.create_token_type_ids_from_sequences(ids))
    return features, word_ids


def require_word_alignment(tokenizer: Any, model: str) -> None:
    """Token classification needs to know which word each sub-token belongs to."""
    if not getattr(tokenizer, "is_fast", False) and not hasattr(tokenizer, "build_inputs_with_special_tokens"):
        raise PipelineError(f"model {model!r} has a tokenizer that cannot map sub-tokens to words; token "
                            f"classification needs a fast tokenizer or one with special-token building")
