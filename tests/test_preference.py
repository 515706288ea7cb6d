"""Preference tuning: pairs read alike from every layout, bad pairs stopped in one line naming the file
and row, and a short DPO run of the packaged SmolLM2 on real pairs that teaches it the held-out
preferences, with no reference model in memory and the adapter alone saved."""
from __future__ import annotations

import json

import pytest

from conftest import run_cli
from pipeline.config.schema import ChatConfig, DatasetConfig
from pipeline.data.preference import load_pairs, to_pair

pytest.importorskip("trl")


@pytest.fixture(scope="module")
def pairs():
    return load_pairs(DatasetConfig(name="dpo_demo", validation_split=0.2), ChatConfig(), seed=42)


def test_the_shipped_pairs_split_240_and_60(pairs):
    assert (len(pairs["train"]), len(pairs["validation"])) == (240, 60)
    assert all(p["prompt"][-1]["role"] == "user" for p in pairs["train"])


def test_every_layout_reads_as_the_same_pair(pairs):
    pair = next(p for p in pairs["train"] if len(p["prompt"]) == 1)
    user, chosen, rejected = pair["prompt"][0]["content"], pair["chosen"], pair["rejected"]
    sharegpt = {"conversations": [{"from": "human", "value": user}], "chosen": {"from": "gpt", "value": chosen},
                "rejected": {"from": "gpt", "value": rejected}}
    explicit = {"prompt": user, "chosen": chosen, "rejected": rejected}
    messages = {"prompt": [{"role": "user", "content": user}], "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}]}
    implicit = {"chosen": [{"role": "user", "content": user}, {"role": "assistant", "content": chosen}],
                "rejected": [{"role": "user", "content": user}, {"role": "assistant", "content": rejected}]}
    for row in (sharegpt, explicit, messages, implicit):
        assert to_pair(row) == pair


@pytest.mark.parametrize("change, words", [
    (lambda r: r.update(rejected=r["chosen"]), "chosen and rejected replies are identical"),
    (lambda r: r.pop("conversations"), "it has no prompt"),
    (lambda r: r["conversations"][0].update({"from": "robot"}), "unknown role 'robot'"),
    (lambda r: r["chosen"].update(value="  "), "chosen reply is empty"),
    (lambda r: r.pop("rejected"), "no 'rejected' column"),
    (lambda r: r["conversations"].append({"from": "gpt", "value": "Sure."}), "does not end with a user turn"),
])
def test_bad_pairs_stop_in_one_line_naming_the_file_and_row(change, words, tmp_path, capsys):
    from pipeline.data.catalogue import data_root

    rows = json.loads((data_root() / "preference" / "dpo_en_demo.json").read_text())[:5]
    change(rows[3])
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps(rows))
    assert run_cli("train", "dpo_smollm2_lora", "dataset.name=null", f"dataset.train_file={path}",
                   f"output_dir={tmp_path / 'run'}") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{path} row 4" in err[0] and words in err[0]


def test_a_short_dpo_run_learns_the_held_out_preferences(tmp_path):
    out = tmp_path / "dpo"
    assert run_cli("train", "dpo_smollm2_lora", "dataset.max_train_samples=32", "dataset.max_eval_samples=24",
                   "dataset.max_length=256", "chat.generation_samples=0", "training.learning_rate=5e-4",
                   "training.num_train_epochs=2", f"output_dir={out}") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    before, after = metrics["before"], metrics["validation"]
    assert before["reward_accuracy"] == 0 and before["reward_margin"] == 0  # the model is its own reference
    assert after["reward_accuracy"] >= 0.5 and after["reward_margin"] > 0
    # the run holds the trained adapter alone: no reference adapter beside it
    assert not (out / "ref").exists()
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["task_type"] == "CAUSAL_LM"
