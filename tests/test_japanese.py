"""A language without spaces: a tiny Japanese BERT whose tokenizer splits words with MeCab (fugashi +
unidic-lite, the `ja` extra), its vocabulary built here from its own sentences. It fine-tunes and
predicts, `ner` returns exact character offsets, and augmentation edits words, not space-separated
runs."""
from __future__ import annotations

import json
import sys

import pytest
from conftest import run_cli

fugashi = pytest.importorskip("fugashi", reason="the ja extra: pip install 'finetune-pipeline[ja]'")

POSITIVE = ["この映画は本当に素晴らしかった。", "俳優の演技がとても良かった。", "物語が面白くて感動した。",
            "音楽が美しくて最高だった。", "また見たいと思う素敵な作品だ。", "最後まで楽しく見られた。",
            "映像がきれいで満足した。", "家族みんなで笑顔になれた。"]
NEGATIVE = ["この映画は本当につまらなかった。", "俳優の演技がとても下手だった。", "物語が退屈で眠くなった。",
            "音楽がうるさくて最悪だった。", "二度と見たくない残念な作品だ。", "最後まで長くて疲れた。",
            "映像が暗くて不満が残った。", "時間の無駄だと感じた。"]
PLACES = ["東京", "大阪", "京都", "札幌", "福岡", "名古屋"]
NER_TEMPLATES = ["私は{}に住んでいます。", "{}へ旅行に行った。", "明日{}で会議がある。", "{}の天気は晴れです。"]


@pytest.fixture(scope="module")
def japanese_bert(tmp_path_factory):
    """A 2-layer BERT with a MeCab + WordPiece tokenizer whose vocabulary holds the words and
    characters of the sentences above."""
    import torch
    from transformers import BertConfig, BertJapaneseTokenizer, BertModel

    folder = tmp_path_factory.mktemp("bert-ja")
    tokenizer_args = dict(do_lower_case=False, word_tokenizer_type="mecab", subword_tokenizer_type="wordpiece",
                          mecab_kwargs={"mecab_dic": "unidic_lite"})
    texts = POSITIVE + NEGATIVE + [t.format(p) for t in NER_TEMPLATES for p in PLACES] + ["私は東京に住んでいます。"]
    from transformers.models.bert_japanese.tokenization_bert_japanese import (
        MecabTokenizer,
    )

    segment = MecabTokenizer(do_lower_case=False, mecab_dic="unidic_lite")
    words = {w for t in texts for w in segment.tokenize(t)}
    chars = {c for t in texts for c in t}
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += sorted(words | chars) + sorted("##" + c for c in chars)
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    tokenizer = BertJapaneseTokenizer(str(folder / "vocab.txt"), **tokenizer_args)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(folder)
    return folder


def test_japanese_bert_fine_tunes_and_predicts(japanese_bert, tmp_path, capsys):
    rows = [{"text": t, "label": "positive"} for t in POSITIVE] + [{"text": t, "label": "negative"} for t in NEGATIVE]
    data = tmp_path / "reviews.jsonl"
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    run = tmp_path / "ja"
    assert run_cli("train", "sst2_full", f"model={japanese_bert}", "dataset.name=null", f"dataset.train_file={data}",
                   f"dataset.validation_file={data}", "dataset.text_column=text", "dataset.max_length=32",
                   "training.max_steps=80",
                   "training.learning_rate=3e-3", "training.per_device_train_batch_size=8",
                   "training.eval_strategy=no", "training.save_strategy=no", f"output_dir={run}") == 0
    # 16 sentences learned by heart: all or all but one (measured: 16/16)
    assert json.loads((run / "metrics.json").read_text())["validation"]["accuracy"] >= 15 / 16
    capsys.readouterr()
    assert run_cli("predict", run, "--json", "--text", POSITIVE[0], "--text", NEGATIVE[0]) == 0
    labels = [json.loads(line)["label"] for line in capsys.readouterr().out.splitlines()]
    assert labels == ["positive", "negative"]


def test_ner_on_japanese_gives_exact_character_offsets(japanese_bert, tmp_path, capsys):
    from transformers.models.bert_japanese.tokenization_bert_japanese import (
        MecabTokenizer,
    )

    segment = MecabTokenizer(do_lower_case=False, mecab_dic="unidic_lite")
    lines = []
    for template in NER_TEMPLATES:
        for place in PLACES:
            for word in segment.tokenize(template.format(place)):
                lines.append(f"{word}\t{'B-LOC' if word == place else 'O'}")
            lines.append("")
    data = tmp_path / "places.conll"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run = tmp_path / "ja_ner"
    assert run_cli("train", "wnut17_full", f"model={japanese_bert}", "dataset.name=null", f"dataset.train_file={data}",
                   f"dataset.validation_file={data}", "dataset.max_length=32", "training.max_steps=60",
                   "training.learning_rate=3e-3", "training.per_device_train_batch_size=8",
                   "training.eval_strategy=no", "training.save_strategy=no", f"output_dir={run}") == 0
    capsys.readouterr()
    text = "私は東京に住んでいます。"
    assert run_cli("ner", run, "--json", "--text", text) == 0
    entities = json.loads(capsys.readouterr().out)["entities"]
    assert [(e["entity"], e["text"], e["start"], e["end"]) for e in entities] == [("LOC", "東京", 2, 4)]
    assert text[entities[0]["start"]:entities[0]["end"]] == "東京"


def test_augmentation_edits_japanese_words(japanese_bert):
    from pipeline.data.augment import Augmenter
    from pipeline.data.words import split_words
    from pipeline.models.pretrained import load_tokenizer

    tokenizer = load_tokenizer(str(japanese_bert))
    words = lambda text: [w for w, _, _ in split_words(tokenizer, text)]  # noqa: E731
    augment = Augmenter(deletion=0.2, swap=0.2, seed=1, split=words)
    copies = [augment(t) for t in POSITIVE]
    changed = [c for c, t in zip(copies, POSITIVE) if c != t]
    assert len(changed) >= 6  # measured: 8 of 8 texts change
    for copy, text in zip(copies, POSITIVE):
        assert " " not in copy  # no spaces invented between Japanese words
        assert set(copy) <= set(text) and copy  # words of the text, dropped or moved, never cut up
    assert Augmenter(deletion=0.2, swap=0.2, seed=1)(POSITIVE[0]) == POSITIVE[0]  # split on spaces: one "word"


def test_a_japanese_model_without_the_segmenter_says_what_to_install(japanese_bert, tmp_path, capsys, monkeypatch):
    for name in ("fugashi", "unidic_lite"):
        monkeypatch.setitem(sys.modules, name, None)  # as if the ja extra were not installed
    assert run_cli("train", "sst2_full", f"model={japanese_bert}", "training.max_steps=1",
                   f"output_dir={tmp_path / 'x'}") == 2
    err = capsys.readouterr().err
    assert "pip install 'finetune-pipeline[ja]'" in err and len(err.strip().splitlines()) == 1
