"""The pipeline's metrics as `evaluate` modules: loaded offline from the package, the same numbers the
run folder records, and accepted by evaluate.combine."""
from __future__ import annotations

import evaluate
import pytest

from pipeline.data.catalogue import data_root
from pipeline.data.readers import read_conll
from pipeline.metrics.modules import path
from pipeline.metrics.scores import classification_metrics, entity_metrics


def test_entity_f1_module_equals_the_recorded_entity_scores():
    gold = read_conll(data_root() / "wnut17" / "emerging.dev.conll")["tags"][:300]
    # a tagger that misses every other sentence's entities: recall drops, precision stays
    predicted = [tags if i % 2 else ["O"] * len(tags) for i, tags in enumerate(gold)]
    expected = entity_metrics(gold, predicted)
    got = evaluate.load(path("entity_f1")).compute(predictions=predicted, references=gold)
    assert got == {k: expected[k] for k in ("precision", "recall", "f1", "token_accuracy")}


def test_classification_module_equals_the_recorded_scores_and_combines(sst2_rows):
    references = [int(label) for _, label in sst2_rows[:200]]
    predictions = [1 if len(sentence) % 3 else label for (sentence, _), label in zip(sst2_rows[:200], references)]
    expected = classification_metrics(references, predictions, ["negative", "positive"])
    module = evaluate.load(path("classification"))
    assert module.compute(predictions=predictions, references=references) == expected
    combined = evaluate.combine([module])
    assert combined.compute(predictions=predictions, references=references) == expected


def test_an_unknown_module_names_the_ones_there_are():
    with pytest.raises(ValueError, match="classification, entity_f1"):
        path("bleu")
