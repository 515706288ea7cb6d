"""Bring your own model: tiny random models of nine architectures, built from their configs, trained
on real SST-2 and WNUT-17 rows with the shipped configs' defaults (no lora.target_modules given)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml
from conftest import run_cli, short_alpaca_rows, write_tsv
from zoo import DECODERS, ZOO, build

from pipeline.inference.engines import TextClassifier, TokenTagger
from pipeline.models.architectures import head_modules, lora_targets
from pipeline.runs.loading import LoadOptions, load_run_model

# What a user of each architecture expects LoRA to adapt and the head to be (issue: bring your own model).
TARGETS = {"bert": ["query", "value"], "distilbert": ["q_lin", "v_lin"], "roberta": ["query", "value"],
           "xlm-roberta": ["query", "value"], "deberta-v2": ["query_proj", "value_proj"],
           "electra": ["query", "value"], "albert": ["query", "value"], "modernbert": ["Wqkv"],
           "llama": ["q_proj", "v_proj"]}
HEADS = {"bert": ["classifier", "bert.pooler"], "distilbert": ["pre_classifier", "classifier"],
         "roberta": ["classifier"], "xlm-roberta": ["classifier"], "deberta-v2": ["pooler", "classifier"],
         "electra": ["classifier"], "albert": ["classifier", "albert.pooler"], "modernbert": ["head", "classifier"],
         "llama": ["score"]}
DECODER_TARGETS = {"gpt2": ["c_attn"], "qwen2": ["q_proj", "v_proj"]}
REVIEWS = ["A true cinematic achievement!", "Boring and predictable.", "not bad at all"]
STEPS = ["training.max_steps=8", "training.per_device_train_batch_size=16", "training.eval_strategy=no",
         "training.save_strategy=no", "dataset.max_length=64"]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, sst2_rows):
    """model type -> folder, built on first use."""
    root = tmp_path_factory.mktemp("zoo")
    texts = [s for s, _ in sst2_rows]
    built: dict[str, object] = {}

    def get(model_type: str):
        if model_type not in built:
            built[model_type] = build(model_type, root / model_type, texts)
        return built[model_type]
    return get


@pytest.fixture(scope="module")
def sst2_files(tmp_path_factory, sst2_rows):
    folder = tmp_path_factory.mktemp("sst2_files")
    return (write_tsv(folder / "train.tsv", sst2_rows[:160]), write_tsv(folder / "dev.tsv", sst2_rows[160:224]))


@pytest.mark.parametrize("model_type", list(ZOO))
def test_defaults_name_each_architectures_query_value_and_head(model_type, zoo):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(zoo(model_type))
    model = AutoModelForSequenceClassification.from_config(config)
    assert lora_targets(config.model_type) == TARGETS[model_type]
    assert sorted(head_modules(model)) == sorted(HEADS[model_type])


def adapter_probabilities(run, texts):
    """The run's adapter on its base, unmerged: what the merged export must reproduce."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from pipeline.models.pretrained import load_pretrained, load_tokenizer
    from pipeline.runs.loading import label_kwargs
    from pipeline.runs.run_folder import load_labels, load_run_config

    config, labels = load_run_config(run), load_labels(run)
    base = load_pretrained(AutoModelForSequenceClassification, config.model, **label_kwargs(labels))
    model = PeftModel.from_pretrained(base, run).eval()
    tokenizer = load_tokenizer(str(run))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return TextClassifier(model, tokenizer, labels).probabilities(texts)


@pytest.mark.parametrize("model_type", list(ZOO))
def test_lora_with_default_targets_trains_saves_predicts_and_exports(model_type, zoo, sst2_files, tmp_path, capsys):
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    run = tmp_path / "lora"
    train, dev = sst2_files
    assert run_cli("train", "sst2_lora", f"model={zoo(model_type)}", "dataset.name=null", f"dataset.train_file={train}",
                   f"dataset.validation_file={dev}", "lora.target_modules=null", *STEPS, f"output_dir={run}") == 0
    config = yaml.safe_load((run / "run_config.yaml").read_text())
    assert config["lora"]["target_modules"] == TARGETS[model_type]  # the resolved default is recorded
    weights = load_file(run / "adapter_model.safetensors")
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in weights.items())  # LoRA trained
    for head in HEADS[model_type]:  # the head trained in full and travels with the adapter
        assert any(f"{head}." in k and "lora_" not in k for k in weights), (head, sorted(weights)[:8])
    capsys.readouterr()
    assert run_cli("predict", run, "--json", *sum((["--text", t] for t in REVIEWS), [])) == 0
    predicted = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p["text"] for p in predicted] == REVIEWS and all(p["label"] in ("0", "1") for p in predicted)

    assert run_cli("export", run, tmp_path / "merged", "--merge") == 0
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "merged")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    exported = TextClassifier(merged, tokenizer, ["0", "1"]).probabilities(REVIEWS)
    np.testing.assert_allclose(exported, adapter_probabilities(run, REVIEWS), atol=1e-4)


@pytest.mark.parametrize("model_type", list(ZOO))
def test_full_fine_tuning_trains_saves_reloads_and_reproduces_its_metrics(model_type, zoo, sst2_files, tmp_path,
                                                                         capsys):
    run = tmp_path / "full"
    train, dev = sst2_files
    before = {n: p.clone() for n, p in load_run_model_free(zoo(model_type)).items()}
    assert run_cli("train", "sst2_full", f"model={zoo(model_type)}", "dataset.name=null", f"dataset.train_file={train}",
                   f"dataset.validation_file={dev}", *STEPS, f"output_dir={run}") == 0
    after = load_run_model_free(run)
    assert any(not torch.equal(before[n], after[n]) for n in before if n in after)  # the encoder moved
    recorded = json.loads((run / "metrics.json").read_text())["validation"]
    capsys.readouterr()
    assert run_cli("evaluate", run) == 0
    assert json.loads((run / "metrics.json").read_text())["validation"] == recorded
    probs = TextClassifier.from_run(run).probabilities(REVIEWS)
    assert probs.shape == (3, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)


def load_run_model_free(folder):
    """The encoder's weights in a model folder, by name without the task head."""
    from safetensors.torch import load_file

    weights = load_file(folder / "model.safetensors")
    return {n.split(".", 1)[1] if n.split(".", 1)[0] in ("bert", "distilbert", "roberta", "deberta", "electra",
                                                           "albert", "model") else n: w
            for n, w in weights.items() if "classifier" not in n and "score" not in n}


@pytest.mark.parametrize("model_type", ["bert", "distilbert", "roberta", "deberta-v2"])
def test_token_classification_lora_exports_a_token_classifier(model_type, zoo, tmp_path):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    run = tmp_path / "ner"
    assert run_cli("train", "wnut17_lora", f"model={zoo(model_type)}", "dataset.max_train_samples=120",
                   "dataset.max_eval_samples=40", *STEPS, f"output_dir={run}") == 0
    config = yaml.safe_load((run / "run_config.yaml").read_text())
    assert config["lora"]["target_modules"] == TARGETS[model_type]
    sentences = [["Empire", "State", "Building", "is", "in", "New", "York"], ["I", "love", "Paris"]]
    adapter = TokenTagger.from_run(run, options=LoadOptions(device="cpu"))
    unmerged = load_run_model(run, AutoModelForTokenClassification, adapters={"same": run}).model  # kept unmerged
    unmerged.set_adapter("default")
    assert run_cli("export", run, tmp_path / "merged", "--merge") == 0
    merged = AutoModelForTokenClassification.from_pretrained(tmp_path / "merged").eval()
    assert type(merged).__name__.endswith("ForTokenClassification")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "merged")
    batch = tokenizer(sentences, is_split_into_words=True, padding=True, return_tensors="pt")
    with torch.inference_mode():
        np.testing.assert_allclose(merged(**batch).logits.softmax(-1).numpy(),
                                   unmerged(**batch).logits.softmax(-1).numpy(), atol=1e-4)
    tags, _, _ = adapter.tag_words(sentences)
    assert [len(t) for t in tags] == [7, 3]


def test_lora_params_and_advise_plan_with_the_architecture_defaults(zoo, capsys):
    assert run_cli("lora-params", "--model", zoo("distilbert"), "--r", "4") == 0
    out = capsys.readouterr().out
    # q_lin and v_lin are 32 x 32 in each of 2 layers: 4 * (32 + 32) * 4 = 1,024 LoRA parameters
    assert "q_lin" in out and "v_lin" in out and "total LoRA parameters: 1,024" in out
    # several tasks: one base with a LoRA adapter each, sized with ModernBERT's own LoRA targets
    assert run_cli("advise", "--model", zoo("modernbert"), "--train-size", "500", "--gpu-memory", "8GB",
                   "--tasks", "3") == 0
    assert "with 3 LoRA adapters, one per task" in capsys.readouterr().out


@pytest.mark.parametrize("model_type", ["distilbert", "roberta", "deberta-v2", "llama"])
def test_onnx_runtime_and_openvino_run_other_architectures_like_torch(model_type, zoo, sst2_files, tmp_path):
    from pipeline.runs.loading import LoadOptions

    run = tmp_path / "full"
    train, dev = sst2_files
    assert run_cli("train", "sst2_full", f"model={zoo(model_type)}", "dataset.name=null", f"dataset.train_file={train}",
                   f"dataset.validation_file={dev}", *STEPS, f"output_dir={run}") == 0
    texts = [s for s, _ in sst2_rows_of(dev)]
    expected = TextClassifier.from_run(run, options=LoadOptions(device="cpu", precision="fp32")).probabilities(texts)
    for backend in ("onnxruntime", "openvino"):
        options = LoadOptions(device="cpu", precision="fp32", backend=backend)
        probs = TextClassifier.from_run(run, options=options).probabilities(texts)
        np.testing.assert_allclose(probs, expected, atol=1e-3, err_msg=backend)
        # int8 rewrites each backend's graph (measured: within 1e-3 of fp32 on these small models)
        options = LoadOptions(device="cpu", precision="int8", backend=backend)
        probs = TextClassifier.from_run(run, options=options).probabilities(texts)
        np.testing.assert_allclose(probs, expected, atol=1e-2, err_msg=f"{backend} int8")


def sst2_rows_of(path):
    return [line.split("\t")[:2] for line in path.read_text(encoding="utf-8").splitlines()[1:]]


@pytest.mark.parametrize("model_type", ["distilbert", "roberta", "deberta-v2"])
def test_question_answering_trains_with_lora_defaults_and_exports(model_type, zoo, tmp_path):
    """A span head on other architectures: LoRA finds their query/value layers, the merged export is
    transformers' own QA class with the run's logits, and the ONNX graph answers like torch."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    import pipeline

    run = tmp_path / "qa"
    assert run_cli("train", "squad_lora", f"model={zoo(model_type)}", "lora.target_modules=null",
                   "dataset.max_train_samples=48", "dataset.max_eval_samples=16", *STEPS, "dataset.max_length=96",
                   "qa.doc_stride=24",
                   f"output_dir={run}") == 0
    assert yaml.safe_load((run / "run_config.yaml").read_text())["lora"]["target_modules"] == TARGETS[model_type]
    assert run_cli("export", run, tmp_path / "merged", "--merge") == 0
    merged = AutoModelForQuestionAnswering.from_pretrained(tmp_path / "merged").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "merged")
    question, context = "Who starred?", REVIEWS[0] + " " + REVIEWS[2]
    encoded = tokenizer(question, context, return_tensors="pt")
    encoded = {k: v for k, v in encoded.items() if k in ("input_ids", "attention_mask", "token_type_ids")
               and (k != "token_type_ids" or model_type != "distilbert")}
    loaded = load_run_model(run, AutoModelForQuestionAnswering, options=LoadOptions(device="cpu", precision="fp32"))
    with torch.inference_mode():
        ours, theirs = loaded.model(**encoded), merged(**encoded)
    torch.testing.assert_close(ours.start_logits, theirs.start_logits, atol=1e-4, rtol=0)
    on_torch = pipeline.load(run, device="cpu", backend="torch")({"question": question, "context": context})
    on_onnx = pipeline.load(run, device="cpu", backend="onnxruntime")({"question": question, "context": context})
    assert (on_onnx["answer"], on_onnx["start"]) == (on_torch["answer"], on_torch["start"])


@pytest.mark.parametrize("model_type", list(DECODERS))
def test_a_decoder_without_a_chat_template_is_chat_tuned_in_chatml_and_merges(model_type, zoo, tmp_path, capsys):
    """Tiny GPT-2 and Qwen2 decoders whose tokenizers have no chat template: a LoRA run with the
    architecture's default targets adds ChatML's two tokens, trains their embedding rows with the
    adapter and saves them, so the reloaded run, `chat` and the merged export compute the same
    logits; DPO trains on the merged export (the base itself is refused in one line)."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipeline.runs.loading import load_run_model

    rows = short_alpaca_rows()
    train, held = tmp_path / "train.jsonl", tmp_path / "held.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows[:32]))
    held.write_text("".join(json.dumps(r) + "\n" for r in rows[32:40]))
    sft = tmp_path / "sft"
    assert run_cli("train", "alpaca_smollm2_lora", f"model={zoo(model_type)}", "lora.target_modules=null",
                   "dataset.name=null", f"dataset.train_file={train}", f"dataset.validation_file={held}",
                   "dataset.max_length=128", "training.max_steps=4", "training.per_device_train_batch_size=8",
                   "training.learning_rate=1e-2", "chat.generation_samples=2", "chat.max_new_tokens=8",
                   f"output_dir={sft}") == 0
    assert "using ChatML" in capsys.readouterr().out
    recorded = yaml.safe_load((sft / "run_config.yaml").read_text())
    assert recorded["lora"]["target_modules"] == DECODER_TARGETS[model_type]
    metrics = json.loads((sft / "metrics.json").read_text())
    assert metrics["validation"]["loss"] < metrics["before"]["loss"]
    saved = load_file(sft / "adapter_model.safetensors")
    trained_rows = [k for k in saved if k.endswith("trainable_tokens_delta")]
    assert trained_rows  # ChatML's rows trained: they moved from where the resize put them
    for key in trained_rows:
        start = saved[key.replace("trainable_tokens_delta", "base_layer.weight")][-2:]
        assert not torch.allclose(saved[key], start)

    ids = AutoTokenizer.from_pretrained(sft).apply_chat_template(
        [{"role": "user", "content": rows[40]["instruction"]}], add_generation_prompt=True, return_tensors="pt",
        return_dict=True)["input_ids"]
    with torch.no_grad():
        first = load_run_model(sft, AutoModelForCausalLM, options=LoadOptions(device="cpu")).model(ids).logits
        again = load_run_model(sft, AutoModelForCausalLM, options=LoadOptions(device="cpu")).model(ids).logits
    assert torch.equal(first, again)  # ChatML's rows come from the run, not from a fresh resize
    assert run_cli("chat", str(sft), "--prompt", rows[40]["instruction"], "--max-new-tokens", "4") == 0

    merged = tmp_path / "merged"
    assert run_cli("export", str(sft), str(merged), "--merge") == 0
    tokenizer = AutoTokenizer.from_pretrained(merged)
    assert "<|im_start|>" in tokenizer.chat_template
    with torch.no_grad():
        exported = AutoModelForCausalLM.from_pretrained(merged)(ids).logits
    torch.testing.assert_close(exported, first, atol=1e-4, rtol=1e-4)

    pytest.importorskip("trl")  # preference tuning of the chat-tuned export, which knows ChatML now
    assert run_cli("train", "dpo_smollm2_lora", f"model={zoo(model_type)}", f"output_dir={tmp_path / 'refused'}") != 0
    assert "chat-tune it first" in capsys.readouterr().err
    dpo = tmp_path / "dpo"
    assert run_cli("train", "dpo_smollm2_lora", f"model={merged}", "lora.target_modules=null",
                   "dataset.max_train_samples=16", "dataset.max_length=128", "training.max_steps=2",
                   "training.per_device_train_batch_size=4", "training.eval_strategy=no", "chat.generation_samples=0",
                   f"output_dir={dpo}") == 0
    scores = json.loads((dpo / "metrics.json").read_text())["validation"]
    assert scores["pairs"] > 0 and math.isfinite(scores["loss"])


@pytest.mark.parametrize("model_type", ["bert", "distilbert", "deberta-v2", "llama", "gpt2"])
def test_training_dropout_reaches_every_dropout_of_the_architecture(model_type, zoo, sst2_rows):
    """training.dropout sets the model's own dropouts, attention included (Llama keeps a float, BERT an
    nn.Dropout, GPT-2 names it attn_dropout): at 0.3 two training-mode passes differ, at 0 they agree."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from pipeline.models.training_setup import attention_dropout_off, set_dropout

    folder = zoo(model_type)
    auto = AutoModelForCausalLM if model_type in DECODERS or model_type == "llama" else AutoModelForSequenceClassification
    model, tokenizer = auto.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    batch = tokenizer([s for s, _ in sst2_rows[:4]], padding=True, return_tensors="pt")
    model.train()
    set_dropout(model, 0.3)
    assert not attention_dropout_off(model)
    assert not torch.equal(model(**batch).logits, model(**batch).logits)
    set_dropout(model, 0.0)
    assert attention_dropout_off(model)
    assert torch.equal(model(**batch).logits, model(**batch).logits)


@pytest.mark.parametrize("model_type, expected", [
    ("distilbert", ["attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin", "ffn.lin1", "ffn.lin2"]),
    ("llama", ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
               "mlp.up_proj", "mlp.down_proj"]),
])
def test_all_linear_names_each_architectures_block_layers(model_type, expected, zoo):
    """sst2_lora's lora.target_modules: [all-linear] resolves by the model's own names, so the shipped
    config adapts any architecture's blocks (not BERT's names on a model that has none)."""
    from pipeline.config.loader import load_config
    from pipeline.models.methods import resolve_lora_targets
    from pipeline.registry import config_dir

    config = load_config(config_dir() / "sst2_lora.yaml", [f"model={zoo(model_type)}"])
    resolve_lora_targets(config)
    assert config.lora.target_modules == expected


@pytest.mark.parametrize("model_type", ["packaged", *(m for m in ZOO if m != "llama")])
def test_masked_lm_training_scores_the_masked_tokens_alone_as_the_full_head_does(model_type, zoo, sst2_rows):
    """Masked-LM training runs its head on the masked tokens only; on real masked sentences its logits
    there, and so the loss, equal the full head's, for the packaged BERT (also under LoRA) and each
    encoder architecture."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForMaskedLM

    from pipeline.data.language_modeling import MaskingCollator
    from pipeline.models.pretrained import load_tokenizer, resolve_model
    from pipeline.models.training_setup import head_on_positions

    folder = resolve_model("bert-tiny-mlm") if model_type == "packaged" else zoo(model_type)
    tokenizer = load_tokenizer(str(folder))
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_pretrained(folder).eval()
    models = [model]
    if model_type == "packaged":
        models.append(get_peft_model(AutoModelForMaskedLM.from_pretrained(folder),
                                     LoraConfig(r=4, target_modules=["query", "value"], init_lora_weights=False)).eval())
    encoded = [tokenizer(text, return_special_tokens_mask=True) for text, _ in sst2_rows[:24]]
    batch = MaskingCollator(tokenizer, mlm_probability=0.15, seed=0)(encoded)
    labels = batch.pop("labels")
    keep = labels != -100
    for each in models:
        with torch.no_grad():
            full = each(**batch).logits[keep]
            with head_on_positions(each, keep) as gathered:
                masked_only = each(**batch).logits
        assert gathered and masked_only.shape == (1, int(keep.sum()), full.shape[-1])
        assert torch.allclose(masked_only[0], full, atol=1e-5)
        assert torch.nn.functional.cross_entropy(masked_only[0], labels[keep]).item() == pytest.approx(
            torch.nn.functional.cross_entropy(full, labels[keep]).item(), abs=1e-5)
