"""Instruction tuning on the real SmolLM2 chat template and on the ChatML default: labels token by
token (the assistant's replies and end-of-turn tokens, nothing else), packing that keeps each
conversation's loss and attention to itself, a short SFT run of the packaged SmolLM2 that keeps
stopping, and bad conversations stopped in one line naming the file and row."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import run_cli, short_alpaca_rows
from pipeline.config.schema import ChatConfig, DatasetConfig
from pipeline.data.conversations import ensure_chat_template, label_conversation, load_conversations, to_messages
from pipeline.models.pretrained import load_tokenizer


@pytest.fixture(scope="module")
def alpaca():
    return load_conversations(DatasetConfig(name="alpaca_demo"), ChatConfig(), seed=42)


@pytest.fixture(scope="module")
def smollm2():
    return load_tokenizer("smollm2")


@pytest.fixture(scope="module")
def chatml():
    """SmolLM2's vocabulary with its template removed: the ChatML default takes its place."""
    tokenizer = load_tokenizer("smollm2")
    tokenizer.chat_template = None
    ensure_chat_template(tokenizer)
    return tokenizer


def labelled_runs(tokenizer, result) -> list[str]:
    """The labelled tokens, decoded run by run."""
    runs, current = [], []
    for token, label in zip(result["input_ids"], result["labels"]):
        if label != -100:
            assert label == token
            current.append(token)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    return runs + ([tokenizer.decode(current)] if current else [])


@pytest.mark.parametrize("template", ["smollm2", "chatml"])
def test_only_the_assistants_replies_and_end_of_turn_tokens_are_labelled(template, alpaca, request):
    tokenizer = request.getfixturevalue(template)
    first, second = alpaca["train"][0], alpaca["train"][1]
    two_turns = [{"role": "system", "content": "Answer briefly."}, *first, *second]  # both assistant turns train
    result = label_conversation(tokenizer, two_turns, max_length=4096)
    assert labelled_runs(tokenizer, result) == [first[1]["content"] + "<|im_end|>", second[1]["content"] + "<|im_end|>"]
    unlabelled = tokenizer.decode([t for t, l in zip(result["input_ids"], result["labels"]) if l == -100])
    for text in ("Answer briefly.", first[0]["content"], second[0]["content"], "<|im_start|>assistant\n"):
        assert text in unlabelled  # system, user and the template's scaffolding stay out of the loss
    everything = label_conversation(tokenizer, two_turns, max_length=4096, train_on_prompt=True)
    assert everything["labels"] == everything["input_ids"]
    cut = label_conversation(tokenizer, two_turns, max_length=64)
    assert len(cut["input_ids"]) == 64 and cut["assistant_tokens_cut"] == result["assistant_tokens"] - cut["assistant_tokens"]


def test_a_tokenizer_without_the_chatml_tokens_gets_them_as_single_tokens():
    tokenizer = load_tokenizer("minilm")
    assert ensure_chat_template(tokenizer)  # added: the model's embeddings must grow
    for token in ("<|im_start|>", "<|im_end|>"):
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1


def test_packed_conversations_keep_their_own_loss_and_never_attend_to_each_other(alpaca, smollm2):
    from transformers import LlamaConfig, LlamaForCausalLM

    from recipes.instruction import batch_collator

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(smollm2), hidden_size=64, intermediate_size=128,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)).eval()
    features = [{k: v for k, v in label_conversation(smollm2, c, 192).items() if k in ("input_ids", "labels")}
                for c in alpaca["train"][:3]]
    packed = batch_collator(smollm2, packing=True)(features)
    assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed
    inputs = {k: v for k, v in packed.items() if k != "labels"}  # what Trainer passes, but the labels
    with torch.no_grad():
        logits = model(**inputs).logits[0]
        start = 0
        for feature in features:
            n = len(feature["input_ids"])
            alone = model(input_ids=torch.tensor([feature["input_ids"]]), labels=torch.tensor([feature["labels"]])).loss
            labels = torch.tensor(feature["labels"][1:])
            scored = labels != -100
            nll = torch.nn.functional.cross_entropy(logits[start:start + n - 1][scored], labels[scored])
            assert abs(float(nll) - float(alone)) < 1e-4  # fp32: the same loss as the conversation alone
            start += n
        # another first conversation changes nothing the later ones see
        other = packed["input_ids"].clone()
        first = len(features[0]["input_ids"])
        other[0, 1:first] = torch.randint(0, len(smollm2), (first - 1,))
        changed = model(**{**inputs, "input_ids": other}).logits[0]
    assert torch.allclose(changed[first:], logits[first:], atol=1e-5)


@pytest.mark.parametrize("row, words", [
    ({"conversations": [{"from": "human", "value": "Hi"}]}, "no assistant turn"),
    ({"conversations": [{"from": "human", "value": "Hi"}, {"from": "robot", "value": "Hello"}]},
     "turn 2 has the unknown role 'robot'"),
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": " "}]}, "turn 2 (assistant) is empty"),
    ({"question": "Hi", "answer": "Hello"}, "match no conversation layout"),
])
def test_bad_conversations_stop_in_one_line_naming_the_file_and_row(row, words, alpaca, tmp_path, capsys):
    path = tmp_path / "chat.jsonl"
    good = {"instruction": alpaca["train"][0][0]["content"], "output": alpaca["train"][0][1]["content"]}
    path.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
    assert run_cli("train", "alpaca_smollm2_lora", "dataset.name=null", f"dataset.train_file={path}",
                   f"output_dir={tmp_path / 'run'}") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and f"{path} row 2: " in err and words in err, err


def test_to_messages_reads_every_layout_alike(alpaca):
    user, assistant = alpaca["train"][0]
    expected = [user, assistant]
    assert to_messages({"prompt": user["content"], "completion": assistant["content"]}, "auto") == expected
    assert to_messages({"messages": expected}, "auto") == expected
    sharegpt = [{"from": "human", "value": user["content"]}, {"from": "gpt", "value": assistant["content"]}]
    assert to_messages({"conversations": sharegpt}, "auto", system_prompt="Be brief.") == \
        [{"role": "system", "content": "Be brief."}, *expected]


def test_a_short_sft_run_keeps_stopping_and_lowers_the_reply_loss(sft_run, tmp_path):
    """The packaged SmolLM2 with LoRA on real alpaca rows whose replies are short (so a reply can end
    within the generation check's 48 tokens)."""
    out, rows = sft_run, short_alpaca_rows()
    metrics = json.loads((out / "metrics.json").read_text())
    before, after = metrics["before"], metrics["validation"]
    assert after["stop_rate"] >= before["stop_rate"]  # the end-of-turn token is trained: the model still stops
    assert after["loss"] < before["loss"]
    assert 0 <= after["rouge_l"] <= 1
    # serving side: the run's own template, in the merged export and in generate
    from transformers import AutoTokenizer

    import pipeline

    assert run_cli("export", out, tmp_path / "merged", "--merge") == 0
    exported = AutoTokenizer.from_pretrained(tmp_path / "merged")
    assert exported.chat_template == load_tokenizer("smollm2").chat_template
    prompt = rows[48]["instruction"]
    reply = pipeline.load(out, device="cpu")(prompt, max_new_tokens=48, temperature=0)
    messages = [{"role": "user", "content": prompt}]
    inputs = exported.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    by_hand = model.generate(**inputs, max_new_tokens=48, do_sample=False, eos_token_id=exported.convert_tokens_to_ids("<|im_end|>"))
    assert reply == exported.decode(by_hand[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
