"""Extractive question answering on real SQuAD and JSQuAD: windows and answer spans, the null answer,
metrics, a short run answered through the CLI, the API, transformers' own QA pipeline and the runtime
backends, and bad files stopped in one line naming the file and row."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import pipeline
from conftest import QA_SHORT, http, run_cli, serving
from pipeline.config.schema import DatasetConfig
from pipeline.data.question_answering import load_question_answering, train_windows, windows
from pipeline.inference.question_answering import Decoding, decode
from pipeline.metrics.squad import f1, squad_metrics
from pipeline.models.pretrained import load_tokenizer

ROOT = Path(__file__).resolve().parents[1]



@pytest.fixture(scope="module")
def squad():
    return load_question_answering(DatasetConfig(name="squad"), seed=0)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("minilm")


def test_squad_and_jsquad_have_their_published_sizes(squad):
    assert len(squad.splits["train"]) == 5609 and len(squad.splits["validation"]) == 4961  # part2 / part1
    assert sum(len(a["text"]) for a in squad.splits["validation"]["answers"]) == 17778
    jsquad = load_question_answering(DatasetConfig(name="jsquad"), seed=0)
    assert (len(jsquad.splits["train"]), len(jsquad.splits["validation"])) == (4442, 4420)
    assert jsquad.f1_unit == "char" and squad.f1_unit == "word"


def long_question(squad, tokenizer, max_length=128, stride=48):
    """The first real SQuAD question whose answer lies past its context's first window."""
    rows = squad.splits["validation"]
    for i in range(len(rows)):
        row = rows[i]
        batch = {"question": [row["question"]], "context": [row["context"]], "answers": [row["answers"]]}
        features = train_windows(batch, tokenizer, max_length, stride)
        if len(features["input_ids"]) >= 3 and features["start_positions"][0] == 0 and \
                next(k for k, s in enumerate(features["start_positions"]) if s) >= 1:
            return row, features
    raise AssertionError("no long context in SQuAD part1")


def test_an_answer_in_a_later_window_comes_back_as_its_exact_span(squad, tokenizer):
    row, features = long_question(squad, tokenizer)
    encoded = windows(tokenizer, [row["question"]], [row["context"]], 128, 48)
    from pipeline.data.question_answering import context_offsets

    offsets = [context_offsets(encoded, i) for i in range(len(encoded["input_ids"]))]
    # Logits that put start and end on the tokens the training windows label: in the first window
    # holding the answer, a high score; elsewhere the null position.
    logits = []
    for i, ids in enumerate(encoded["input_ids"]):
        window = np.zeros((len(ids), 2), dtype=np.float32)
        start, end = features["start_positions"][i], features["end_positions"][i]
        window[start, 0] = window[end, 1] = 10.0 if start else 1.0
        logits.append(window)
    best = decode(row["context"], logits, offsets, Decoding())[0]
    answer, first = row["answers"]["text"][0], row["answers"]["answer_start"][0]
    assert (best["answer"], best["start"], best["end"]) == (answer, first, first + len(answer))
    assert row["context"][best["start"]:best["end"]] == best["answer"]


def test_an_unanswerable_question_gets_the_empty_answer_above_the_threshold(squad, tokenizer):
    row = squad.splits["validation"][0]
    encoded = windows(tokenizer, [row["question"]], [row["context"]], 384, 128)
    from pipeline.data.question_answering import context_offsets

    offsets = [context_offsets(encoded, 0)]
    logits = np.zeros((len(encoded["input_ids"][0]), 2), dtype=np.float32)
    span = next(k for k, o in enumerate(offsets[0]) if o)
    logits[0] = 3.0  # null: 6.0
    logits[span] = 2.0  # best span: 4.0
    assert decode(row["context"], [logits], offsets, Decoding(version_2=True))[0]["answer"] == ""
    kept = decode(row["context"], [logits], offsets, Decoding(version_2=True, null_threshold=2.5))[0]
    assert kept["answer"] and kept["answer"] == row["context"][kept["start"]:kept["end"]]
    assert decode(row["context"], [logits], offsets, Decoding())[0]["answer"]  # v1: always a span


def test_squad_metric_and_japanese_character_f1():
    assert squad_metrics(["the Denver Broncos"], [["Denver Broncos", "Broncos"]]) == {"exact_match": 100.0, "f1": 100.0}
    # JGLUE counts characters: 5 shared of 10 predicted and 5 expected -> F1 2/3
    assert f1("小笠原諸島を除く日本", "小笠原諸島", "char") == pytest.approx(2 / 3)
    assert f1("小笠原諸島。", "小笠原諸島", "char") == 1.0
    assert f1("小笠原諸島を除く日本", "小笠原諸島", "word") == 0.0  # no spaces: one word each
    v2 = squad_metrics(["", "Broncos"], [[], ["Denver Broncos"]], version_2=True)
    assert v2["NoAns_exact"] == 100.0 and v2["HasAns_exact"] == 0.0 and v2["HasAns_f1"] == pytest.approx(200 / 3)


def test_a_short_run_learns_and_answers_with_exact_spans(qa_run, squad, capsys):
    metrics = json.loads((qa_run / "metrics.json").read_text())
    # Measured: F1 6.9 with the fresh head, 27.0 after 90 steps (two epochs of 300 questions, 713
    # windows, dropout off) on these 100 questions; margin 5 points.
    assert metrics["validation"]["f1"] >= 22 and metrics["validation"]["f1"] > metrics["before"]["f1"] + 10
    answers = [json.loads(line) for line in (qa_run / "qa_predictions.jsonl").read_text().splitlines()]
    assert len(answers) == 100 and all(len(a["n_best"]) <= 20 for a in answers)
    rows = {r["id"]: r for r in squad.splits["validation"]}
    for a in answers:
        assert rows[a["id"]]["context"][a["start"]:a["end"]] == a["answer"]
    row = squad.splits["validation"][0]
    capsys.readouterr()
    assert run_cli("qa", qa_run, "--question", row["question"], "--context", row["context"], "--json",
                   "--top-k", "3") == 0
    printed = json.loads(capsys.readouterr().out)
    assert row["context"][printed["start"]:printed["end"]] == printed["answer"] and len(printed["top_k"]) == 3
    model = pipeline.load(qa_run, device="cpu")
    assert model({"question": row["question"], "context": row["context"]})["answer"] == printed["answer"]
    assert run_cli("evaluate", qa_run) == 0
    assert json.loads((qa_run / "metrics.json").read_text())["validation"] == metrics["validation"]


def test_the_adapter_loaded_by_peft_scores_spans_as_the_merged_run_does(qa_run, squad):
    """What the model card tells a peft user to write, on a question-context pair (token types 0
    and 1), against the merged model that `qa`, `export` and transformers' pipeline run."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForQuestionAnswering

    from pipeline.models.pretrained import resolve_model
    from pipeline.runs.loading import LoadOptions, load_run_model

    peft_model = PeftModel.from_pretrained(AutoModelForQuestionAnswering.from_pretrained(resolve_model("minilm")),
                                           qa_run).eval()
    merged = load_run_model(qa_run, AutoModelForQuestionAnswering,
                            options=LoadOptions(device="cpu", precision="fp32")).model
    rows = squad.splits["validation"].select(range(4))
    batch = load_tokenizer(str(qa_run))(list(rows["question"]), list(rows["context"]), truncation="only_second",
                                        max_length=128, padding=True, return_tensors="pt")
    with torch.no_grad():
        found, expected = peft_model(**batch), merged(**batch)
    torch.testing.assert_close(found.start_logits, expected.start_logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(found.end_logits, expected.end_logits, atol=1e-4, rtol=1e-4)


def test_serve_answers_questions_in_batches_with_the_routes_limits(qa_run, squad):
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.inference.serve import Limits, create_app

    model = pipeline.load(qa_run, device="cpu", backend="torch")
    rows = squad.splits["validation"].select(range(12))
    items = [{"question": r["question"], "context": r["context"]} for r in rows]
    with serving(create_app(model.engine, Limits(max_texts=4))) as url:
        assert http(url, "/health")[1]["task"] == "question_answering"
        with ThreadPoolExecutor(max_workers=len(items)) as pool:  # one question a request, all at once
            results = list(pool.map(lambda item: http(url, "/qa", json.dumps({"questions": [item]}).encode()),
                                    items))
        assert all(status == 200 for status, _ in results)
        expected = model(items)
        for (_, body), ours, item in zip(results, expected, items):
            got = body["answers"][0]
            assert (got["answer"], got["start"], got["end"]) == (ours["answer"], ours["start"], ours["end"])
            assert item["context"][got["start"]:got["end"]] == got["answer"]
        assert http(url, "/health")[1]["batches"] < len(items)
        status, body = http(url, "/qa", json.dumps({"questions": items[:2], "top_k": 3}).encode())
        assert status == 200 and [len(a) for a in body["answers"]] == [3, 3]
        for body, status, words in [
            ({"questions": items[:5]}, 413, "5 questions in one request; the limit is 4"),
            ({"questions": [{"question": "Who?"}]}, 422, 'questions[0] has no "context"'),
            ({"questions": [{"question": "Who?", "context": " "}]}, 422, "questions[0].context is empty"),
            ({"questions": ["Who?"]}, 422, "questions[0] is a str"),
            ({"texts": ["Who?"]}, 422, 'missing field "questions"'),
        ]:
            got_status, got = http(url, "/qa", json.dumps(body).encode())
            assert got_status == status and words in got["error"], got
        assert http(url, "/predict", json.dumps({"texts": ["Who?"]}).encode())[0] == 404  # a QA run has no /predict


def best_span_with_transformers_alone(model, tokenizer, question: str, context: str, longest: int = 30) -> str:
    """The highest start + end logit span inside the context, by brute force over one window, with
    transformers and the tokenizer's offsets alone (transformers 5 removed its question-answering
    pipeline): what any reader of the exported model gets."""
    import torch

    encoded = tokenizer(question, context, truncation="only_second", max_length=384, return_offsets_mapping=True,
                        return_tensors="pt")
    offsets, sequence = encoded.pop("offset_mapping")[0], encoded.sequence_ids(0)
    with torch.inference_mode():
        out = model(**encoded)
    start, end = out.start_logits[0], out.end_logits[0]
    inside = [k for k, s in enumerate(sequence) if s == 1]
    best = max(((float(start[i] + end[j]), i, j) for i in inside for j in inside if i <= j < i + longest))
    return context[int(offsets[best[1]][0]):int(offsets[best[2]][1])]


def test_the_merged_export_read_with_transformers_alone_gives_our_answers(qa_run, squad, tmp_path):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    assert run_cli("export", qa_run, tmp_path / "merged", "--merge") == 0
    model = AutoModelForQuestionAnswering.from_pretrained(tmp_path / "merged").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "merged")
    rows = [r for r in squad.splits["validation"].select(range(80))
            if len(tokenizer(r["question"], r["context"])["input_ids"]) <= 128][:30]  # one window each
    ours = pipeline.load(qa_run, device="cpu", backend="torch")
    answers = [a["answer"] for a in ours([{"question": r["question"], "context": r["context"]} for r in rows])]
    theirs = [best_span_with_transformers_alone(model, tokenizer, r["question"], r["context"]) for r in rows]
    assert len(rows) >= 20 and answers == theirs


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_runtime_backends_answer_like_torch(backend, qa_run, squad):
    rows = squad.splits["validation"].select(range(30))
    pairs = [(r["question"], r["context"]) for r in rows]
    torch_answers = pipeline.load(qa_run, device="cpu", backend="torch")(pairs)
    runtime = pipeline.load(qa_run, device="cpu", backend=backend)
    assert runtime.backend == backend
    for ours, theirs in zip(runtime(pairs), torch_answers):
        assert (ours["answer"], ours["start"]) == (theirs["answer"], theirs["start"])
        assert abs(ours["score"] - theirs["score"]) < 1e-3


def write_squad(path, context, question, text, start):
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": [
        {"context": context, "qas": [{"id": "q1", "question": question,
                                      "answers": [{"text": text, "answer_start": start}]}]}]}]}))
    return path


@pytest.mark.parametrize("case", ["answer_start", "empty question", "empty context", "missing column"])
def test_bad_qa_files_stop_in_one_line_naming_the_file_and_row(case, squad, tmp_path, capsys):
    row = squad.splits["train"][0]
    text, start = row["answers"]["text"][0], row["answers"]["answer_start"][0]
    if case == "missing column":
        path = tmp_path / "qa.jsonl"
        path.write_text(json.dumps({"question": row["question"], "passage": row["context"],
                                    "answers": row["answers"]}) + "\n")
        words = [str(path), "no context column 'context'", "dataset.context_column"]
    else:
        question = " " if case == "empty question" else row["question"]
        context = "" if case == "empty context" else row["context"]
        path = write_squad(tmp_path / "qa.json", context, question, text, start + 1 if case == "answer_start" else start)
        words = {"answer_start": [str(path), "row 1 (id q1)", f"answer_start {start + 1} does not point at the answer"],
                 "empty question": [str(path), "row 1 (id q1) has an empty question"],
                 "empty context": [str(path), "context"]}[case]
    assert run_cli("train", "squad_lora", "dataset.name=null", f"dataset.train_file={path}",
                   f"output_dir={tmp_path / 'run'}") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    for word in words:
        assert word in err, err


def test_lora_params_and_advise_plan_the_span_head_a_run_trains(qa_run, capsys):
    from pipeline.planning.advise import GiB, advise, lora_count

    lora = pipeline.Run(qa_run).config.lora  # squad_lora: r 16 on every linear layer of the blocks
    count = lora_count("minilm", lora.r, lora.target_modules, "question_answering")
    trained = json.loads((qa_run / "metrics.json").read_text())["parameters"]
    # the plan from the config alone is what the real run trained: the LoRA matrices plus the span head
    assert count.total + count.head == trained["trainable"] and count.head == 384 * 2 + 2
    # peft keeps the head's original weights beside the copy that trains, so the run's total counts it twice
    assert count.model_parameters + count.total + count.head == trained["total"]
    assert run_cli("lora-params", "--model", "minilm", "--recipe", "question_answering") == 0
    assert "the question_answering head trains in full beside them: 770 parameters" in capsys.readouterr().out
    advice = advise("bert-base-uncased", train_size=5000, gpu_memory=8 * GiB, recipe="question_answering")
    # 384-token windows: full fine-tuning of BERT-base at batch 32 needs more than 8 GiB, LoRA less
    assert advice.seq_len == 384 and advice.method == "lora"
    assert advise("bert-base-uncased", train_size=5000, gpu_memory=8 * GiB).method == "full"  # 128-token sentences
    assert run_cli("advise", "--train-size", "500", "--recipe", "causal_lm") == 2
    assert "plans cover the recipes that put a head on an encoder" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["tune", "compare"])
def test_tune_and_compare_rank_question_answering_runs_by_f1(command, tmp_path, capsys):
    """Both planning commands score QA runs on F1 (the span decoder's, not a token accuracy)."""
    tiny = ["dataset.max_train_samples=32", "dataset.max_eval_samples=16", "training.num_train_epochs=1",
            "training.per_device_train_batch_size=16", *QA_SHORT]
    out = tmp_path / command
    if command == "tune":
        import yaml

        config = yaml.safe_load(open(ROOT / "recipes" / "configs" / "squad_lora.yaml"))
        config["tune"] = {"space": {"training.learning_rate": {"low": 1e-4, "high": 1e-3, "log": True}}}
        path = tmp_path / "squad_lora_tune.yaml"
        path.write_text(yaml.safe_dump(config))
        assert run_cli("tune", path, *tiny, "--trials", "2", "--output", out) == 0
        assert "| trial | state | f1 |" in capsys.readouterr().out
        scores = [float(r["score"]) for r in csv.DictReader((out / "trials.csv").open()) if r["state"] == "complete"]
        best = yaml.safe_load((out / "best_config.yaml").read_text())
        assert scores and best["recipe"] == "question_answering"
    else:
        assert run_cli("compare", "squad_lora", *tiny, "--methods", "lora,ia3", "--output-dir", out) == 0
        result = json.loads((out / "comparison.json").read_text())
        assert result["metric"] == "f1"
        scores = [row["metric"] for row in result["rows"]]
        assert [row["method"] for row in result["rows"]] == ["lora", "ia3"]
    assert all(0 <= score <= 100 for score in scores)
