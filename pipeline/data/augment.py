"""EDA-style text augmentation for small training sets (Wei and Zou, 2019: "EDA: Easy Data
Augmentation Techniques for Boosting Performance on Text Classification Tasks").

Four word-level operations: random deletion, random swap, synonym replacement and random insertion
of a synonym. The last two need a synonym lexicon (a TSV file ``word<TAB>syn,syn``), since no
English thesaurus ships offline with the pipeline's dependencies. Only the training split is
augmented, and the same seed gives the same copies.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Callable

from pipeline.data.words import join_words, split_words
from pipeline.errors import PipelineError


def load_lexicon(path: str | Path) -> dict[str, list[str]]:
    """Read ``word<TAB>synonym,synonym,...`` lines (case-insensitive keys; blank and # lines skipped)."""
    lexicon: dict[str, list[str]] = {}
    if not Path(path).is_file():
        raise PipelineError(f"augment.lexicon {path} does not exist; check the path")
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise PipelineError(f"augment.lexicon {path} is not UTF-8 text; save it as UTF-8") from None
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        word, sep, synonyms = line.partition("\t")
        if not sep or not synonyms.strip():
            raise PipelineError(f"{path}:{number}: expected word<TAB>synonym,synonym; got {line[:60]!r}")
        lexicon[word.strip().lower()] = [s.strip() for s in synonyms.split(",") if s.strip()]
    return lexicon


class Augmenter:
    """Makes augmented copies of a text; ``rng`` decides everything, so runs repeat exactly."""

    def __init__(self, deletion: float = 0.1, swap: float = 0.1, synonym: float = 0.0, insertion: float = 0.0,
                 lexicon: dict[str, list[str]] | None = None, seed: int = 0,
                 split: Callable[[str], list[str]] = str.split):
        self.deletion, self.swap, self.synonym, self.insertion = deletion, swap, synonym, insertion
        self.lexicon = lexicon or {}
        self.rng = random.Random(seed)
        self.split = split  # text -> words: the model tokenizer's word splitting (a segmenter for Japanese)

    def __call__(self, text: str) -> str:
        words = self.split(text)
        if not words:
            return text
        n = len(words)
        if self.synonym:
            words = self._replace_synonyms(words, max(1, round(self.synonym * n)))
        if self.insertion:
            words = self._insert_synonyms(words, max(1, round(self.insertion * n)))
        if self.swap and len(words) > 1:
            for _ in range(max(1, round(self.swap * n))):
                i, j = self.rng.randrange(len(words)), self.rng.randrange(len(words))
                words[i], words[j] = words[j], words[i]
        if self.deletion and len(words) > 1:
            kept = [w for w in words if self.rng.random() >= self.deletion]
            words = kept or [self.rng.choice(words)]  # never return an empty text
        return join_words(words, text)

    def _replace_synonyms(self, words: list[str], count: int) -> list[str]:
        positions = [i for i, w in enumerate(words) if w.lower() in self.lexicon]
        self.rng.shuffle(positions)
        words = list(words)
        for i in positions[:count]:
            words[i] = self.rng.choice(self.lexicon[words[i].lower()])
        return words

    def _insert_synonyms(self, words: list[str], count: int) -> list[str]:
        candidates = [w for w in words if w.lower() in self.lexicon]
        words = list(words)
        for _ in range(count if candidates else 0):
            synonym = self.rng.choice(self.lexicon[self.rng.choice(candidates).lower()])
            words.insert(self.rng.randrange(len(words) + 1), synonym)
        return words


def augment_split(split: Any, config: Any, seed: int, tokenizer: Any = None, text_key: str = "text") -> Any:
    """Return ``split`` (a datasets.Dataset) plus ``config.factor`` augmented copies of every row.
    Words are split as ``tokenizer`` splits them (on spaces without one)."""
    if not config.factor:
        return split
    from datasets import concatenate_datasets

    lexicon = load_lexicon(config.lexicon) if config.lexicon else None
    split_text = (lambda text: [w for w, _, _ in split_words(tokenizer, text)]) if tokenizer is not None else str.split
    augmenter = Augmenter(config.deletion, config.swap, config.synonym, config.insertion, lexicon, seed, split_text)
    copies = [split.map(lambda row: {text_key: augmenter(row[text_key])}, desc=f"augmenting ({k + 1}/{config.factor})",
                        load_from_cache_file=False)
              for k in range(config.factor)]
    return concatenate_datasets([split, *copies])
