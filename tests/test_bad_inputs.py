"""The bad-input matrix: each case exits non-zero with one line on stderr that names the problem and
the fix, prints no traceback, and leaves every existing file as it was."""
from __future__ import annotations

import errno
import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import pytest
from conftest import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

Case = Callable[[Path, list], list]  # (tmp_path, sst2_rows) -> CLI arguments


def files(tmp: Path, train: Path, dev: Path | None = None, *extra: str) -> list:
    args = ["train", "sst2_lora", "dataset.name=null", f"dataset.train_file={train}", f"output_dir={tmp}/run"]
    return args + ([f"dataset.validation_file={dev}"] if dev else []) + list(extra)


def text(path: Path, body: str | bytes) -> Path:
    path.write_bytes(body if isinstance(body, bytes) else body.encode("utf-8"))
    return path


def tsv(rows) -> str:
    return "sentence\tlabel\n" + "".join(f"{s}\t{l}\n" for s, l in rows)


CASES: dict[str, tuple[Case, str]] = {
    # config
    "unknown key": (lambda t, r: ["train", "sst2_lora", "trainig.learning_rate=1"], "did you mean training.learning_rate"),
    "wrong type": (lambda t, r: ["train", "sst2_lora", "training.num_train_epochs=three"], "expects a number"),
    "zero batch size": (lambda t, r: ["train", "sst2_lora", "training.per_device_train_batch_size=0"], "must be positive"),
    "negative batch size": (lambda t, r: ["train", "sst2_lora", "training.per_device_train_batch_size=-8"], "must be positive"),
    "learning rate out of range": (lambda t, r: ["train", "sst2_lora", "training.learning_rate=20"], "learning_rate must be in"),
    "dropout out of range": (lambda t, r: ["train", "sst2_lora", "training.dropout=1"], "training.dropout"),
    "all-linear among module names": (lambda t, r: ["train", "sst2_lora", "lora.target_modules=[all-linear,query]"],
                                      "write [all-linear] alone"),
    "augment where the recipe cannot use it": (lambda t, r: ["train", "tiny_shakespeare_mlm", "augment.factor=2",
                                                            f"output_dir={t}/run"], "masked_lm runs do not use it"),
    "mutually exclusive options": (lambda t, r: ["train", "sst2_lora", "dataset.train_file=a.csv"], "both set"),
    "resume and overwrite": (lambda t, r: ["train", "sst2_lora", "--resume", "--overwrite"], "contradict"),
    "yaml syntax error": (lambda t, r: ["train", text(t / "bad.yaml", "recipe: x\ndataset:\n  name: [sst2\n")],
                          "line 4"),
    "empty config": (lambda t, r: ["train", text(t / "empty.yaml", "")], "is empty"),
    # data
    "missing file": (lambda t, r: files(t, t / "nope.tsv"), "does not exist"),
    "directory instead of file": (lambda t, r: files(t, t), "is a directory"),
    "empty data file": (lambda t, r: files(t, text(t / "e.tsv", "")), "is empty"),
    "missing column": (lambda t, r: files(t, text(t / "a.tsv", tsv(r[:50]).replace("sentence", "review", 1))),
                       "no text column 'sentence'; its columns are review, label"),
    "all texts empty": (lambda t, r: files(t, text(t / "a.tsv", tsv([("  ", l) for _, l in r[:50]]))), "every text"),
    "missing label": (lambda t, r: files(t, text(t / "a.tsv", tsv(r[:50] + [(r[50][0], "")]))), "row 51 has no label"),
    "label outside the label map": (lambda t, r: files(t, text(t / "a.tsv", tsv(r[:60])),
                                                       text(t / "d.tsv", tsv([(s, "7") for s, _ in r[60:70]]))),
                                    "never has"),
    "mixed label types": (lambda t, r: files(t, text(t / "a.tsv", tsv(r[:40] + [(s, "good") for s, _ in r[40:50]]))),
                          "mixes label types"),
    "max_length beyond the model": (lambda t, r: ["train", "sst2_lora", "dataset.max_length=100000",
                                                  "dataset.max_train_samples=50", f"output_dir={t}/run"], "exceeds the model's limit"),
    "non-UTF-8 bytes": (lambda t, r: files(t, text(t / "a.tsv", tsv(r[:30]).encode() + "très mauvais\t0\n".encode("latin-1"))),
                        "line 32 is not UTF-8"),
    "csv with a ragged row": (lambda t, r: files(t, text(t / "a.csv", "sentence,label\n" + "".join(
        f"\"{s}\",{l}\n" for s, l in r[:20]) + "too,many,fields\n")), "line 22: 3 fields"),
    "jsonl with a malformed line": (lambda t, r: files(t, text(t / "a.jsonl", "\n".join(
        [json.dumps({"sentence": s, "label": int(l)}) for s, l in r[:5]] + ['{"sentence": ']))), "line 6 is not valid JSON"),
    # model
    "missing model path": (lambda t, r: ["train", "sst2_lora", "model=./no/such/model", "dataset.max_train_samples=50",
                                         f"output_dir={t}/run"], "does not exist"),
    "folder without a tokenizer": (lambda t, r: ["train", "sst2_lora", f"model={vision_model(t, tokenizer=False)}",
                                                 "dataset.max_train_samples=50", f"output_dir={t}/run"], "no tokenizer files"),
    "folder without config.json": (lambda t, r: ["train", "sst2_lora", f"model={(t / 'm').mkdir() or t / 'm'}",
                                                 "dataset.max_train_samples=50", f"output_dir={t}/run"], "no config.json"),
    "model that cannot classify": (lambda t, r: ["train", "sst2_lora", f"model={vision_model(t)}",
                                                 "dataset.max_train_samples=50", f"output_dir={t}/run"], "no such head"),
    "pickle weights": (lambda t, r: ["train", "sst2_lora", f"model={pickle_model(t)}", "dataset.max_train_samples=50",
                                     f"output_dir={t}/run"], "--allow-pickle"),
    # runtime
    "output_dir not writable": (lambda t, r: ["train", "sst2_lora", "dataset.max_train_samples=50",
                                              f"output_dir={text(t / 'file', 'x')}/run"], "cannot write to output_dir"),
    "output_dir holds another run": (lambda t, r: ["train", "sst2_lora", f"output_dir={fake_run(t)}"], "--overwrite"),
    # inference
    "predict with no texts": (lambda t, r: ["predict", fake_run(t)], "no texts"),
    "non-string item": (lambda t, r: ["predict", fake_run(t), "--file", text(t / "in.jsonl", '{"text": 5}\n')],
                        "is a int, not a string"),
    "run folder missing its adapter": (lambda t, r: ["predict", fake_run(t), "--text", "fine"], "adapter_model.safetensors is missing"),
    "unknown recipe": (lambda t, r: ["train", "sst2_lora", "recipe=sequence_clasification"], "did you mean"),
}


def vision_model(tmp: Path, tokenizer: bool = True) -> Path:
    from transformers import CLIPVisionConfig

    from pipeline.models.pretrained import load_tokenizer

    CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp / "clip")
    if tokenizer:
        load_tokenizer("minilm").save_pretrained(tmp / "clip")  # so that the missing head is what fails
    return tmp / "clip"


def pickle_model(tmp: Path) -> Path:
    from pipeline.models.pretrained import resolve_model

    folder = tmp / "pickled"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        shutil.copy(Path(resolve_model("minilm")) / name, folder / name)
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")
    return folder


def fake_run(tmp: Path) -> Path:
    """A LoRA run folder whose adapter weights are gone."""
    from pipeline.config.loader import load_config, save_config
    from recipes import CONFIG_DIR

    run = tmp / "old_run"
    if not run.exists():
        run.mkdir()
        save_config(load_config(CONFIG_DIR / "sst2_lora.yaml"), run / "run_config.yaml")
        (run / "labels.json").write_text('["negative", "positive"]')
        (run / "adapter_config.json").write_text("{}")
        from pipeline.models.pretrained import load_tokenizer
        load_tokenizer("minilm").save_pretrained(run)
    return run


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, tmp_path, sst2_rows, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make, words = CASES[name]
    args = make(tmp_path, sst2_rows)
    before = snapshot(tmp_path)
    code = run_cli(*args)
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.strip() and not l.startswith(("predicting", "\r"))]
    assert code not in (0, None), err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert words in lines[0], lines[0]
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing that existed was changed


def test_the_readme_counts_the_cases_this_file_checks():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert f"`tests/test_bad_inputs.py` checks {len(CASES)} cases" in readme


def test_debug_shows_the_traceback(capsys):
    assert run_cli("train", "sst2_lora", "trainig.learning_rate=1", "--debug") == 2
    assert "Traceback" in capsys.readouterr().err


def test_disk_full_during_a_save_keeps_the_checkpoints(tmp_path, capsys, monkeypatch):
    """The disk fills at the second checkpoint: the first stays complete, and --resume finishes the run."""
    from pipeline.runs import run_folder
    from pipeline.training import trainer as training

    original = training.PipelineTrainer._save_checkpoint

    def full_disk_at_step_4(self, *args, **kwargs):
        if self.state.global_step >= 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(training.PipelineTrainer, "_save_checkpoint", full_disk_at_step_4)
    args = ["train", "sst2_lora", "dataset.max_train_samples=64", "dataset.max_eval_samples=32", "training.max_steps=6",
            "training.eval_strategy=no", "training.save_strategy=steps", "training.save_steps=2",
            f"output_dir={tmp_path}/run"]
    assert run_cli(*args) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "--resume" in err and "Traceback" not in err
    assert "complete checkpoints: 1" in err
    assert [p.name for p in run_folder.complete_checkpoints(tmp_path / "run")] == ["checkpoint-2"]
    monkeypatch.setattr(training.PipelineTrainer, "_save_checkpoint", original)  # room again
    assert run_cli(*args, "--resume") == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["train"]["steps"] == 6


def test_nan_loss_stops_the_run_with_a_message(tmp_path, capsys, monkeypatch):
    import torch

    from pipeline.training import trainer as training

    original = training.PipelineTrainer.compute_loss

    def diverging(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = original(self, model, inputs, True, num_items_in_batch)
        if self.state.global_step >= 2:
            loss = loss * torch.tensor(float("nan"))
        return (loss, outputs) if return_outputs else loss

    monkeypatch.setattr(training.PipelineTrainer, "compute_loss", diverging)
    assert run_cli("train", "sst2_lora", "dataset.max_train_samples=96", "dataset.max_eval_samples=32",
                   "training.max_steps=6", "training.logging_steps=1", f"output_dir={tmp_path}/run") == 2
    err = capsys.readouterr().err
    assert "training loss became nan at step 3" in err and "learning_rate" in err


# --------------------------------------------------------------------------------------------
# Damaged run folders: each file a run reads back, cut short, emptied, replaced by another file's
# content or removed. The command works (a file it does not need) or stops in one line naming the
# file and saying to retrain, and the folder is left as it was.

DAMAGES: dict[str, Callable[[Path, Path], None]] = {
    "truncated": lambda path, other: path.write_bytes(path.read_bytes()[:max(1, path.stat().st_size // 2)]),
    "emptied": lambda path, other: path.write_bytes(b""),
    "replaced": lambda path, other: path.write_bytes(other.read_bytes()),
    "missing": lambda path, other: path.unlink(),
}
# (run fixture, file, another file of the run whose content replaces it)
RUN_FILES = [("lora_run", "adapter_model.safetensors", "tokenizer.json"),
             ("lora_run", "adapter_config.json", "labels.json"),
             ("lora_run", "labels.json", "adapter_config.json"),
             ("lora_run", "run_config.yaml", "labels.json"),
             ("lora_run", "tokenizer.json", "labels.json"),
             ("full_run", "model.safetensors", "config.json"),
             ("full_run", "config.json", "labels.json")]


def folder_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


DAMAGE_CASES = [(run, name, other, damage) for run, name, other in RUN_FILES for damage in DAMAGES]


def predict_on_damaged_copy(run: str, name: str, other: str, damage: str, request, capsys) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "run"
        shutil.copytree(request.getfixturevalue(run), copy, ignore=shutil.ignore_patterns("checkpoints", "exports"))
        DAMAGES[damage](copy / name, copy / other)
        before = folder_digest(copy)
        capsys.readouterr()
        code = run_cli("predict", copy, "--backend", "torch", "--text", "A true cinematic achievement!")
        err = capsys.readouterr().err.strip()
        assert folder_digest(copy) == before
    if code == 0:  # a file the command can do without: the tokenizer rebuilds from its vocabulary
        assert (name, damage) == ("tokenizer.json", "missing")
        return
    assert code == 2 and err.startswith("error: ") and "\n" not in err, err
    assert name in err and ("retrain" in err or "re-export" in err), err


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.sampled_from(DAMAGE_CASES))
def test_a_damaged_run_file_is_named_with_the_fix_6_cases(case, request, capsys):
    predict_on_damaged_copy(*case, request, capsys)


@pytest.mark.slow
@pytest.mark.parametrize("case", DAMAGE_CASES, ids=["-".join(c[1::2]) + f"-{c[0]}" for c in DAMAGE_CASES])
def test_every_damaged_run_file_is_named_with_the_fix(case, request, capsys):
    predict_on_damaged_copy(*case, request, capsys)


def test_a_truncated_model_is_named_where_safetensors_said_only_invalid_header_length(full_run, tmp_path):
    import pipeline

    copy = tmp_path / "run"
    shutil.copytree(full_run, copy, ignore=shutil.ignore_patterns("checkpoints", "exports"))
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:weights.stat().st_size - 1000])  # a copy cut short
    with pytest.raises(pipeline.PipelineError, match=r"model\.safetensors is damaged \(its tensors need .* cut short\); "
                                                     r"retrain the run"):
        pipeline.load(copy)
