"""Tiny randomly initialised models of the architectures users bring, built from their transformers
configs (no download), each saved with a working tokenizer as a model folder the pipeline loads like
a Hub checkpoint: BERT's WordPiece (the packaged MiniLM's vocabulary) for the BERT family, a byte-level
BPE trained on SST-2 sentences for RoBERTa, XLM-R and the decoders (Llama, GPT-2, Qwen2)."""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

from pipeline.models.pretrained import resolve_model

SIZE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)

# model type -> (tokenizer kind, config keyword arguments beyond SIZE)
ZOO = {
    "bert": ("wordpiece", {}),
    "distilbert": ("wordpiece", {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64}),
    "roberta": ("bpe", {"max_position_embeddings": 130}),
    "xlm-roberta": ("bpe", {"max_position_embeddings": 130}),
    "deberta-v2": ("wordpiece", {"max_position_embeddings": 128}),
    "electra": ("wordpiece", {"embedding_size": 32}),
    "albert": ("wordpiece", {"embedding_size": 16}),
    "modernbert": ("wordpiece", {"global_attn_every_n_layers": 2, "local_attention": 16}),
    "llama": ("bpe-decoder", {"num_key_value_heads": 2}),
}

# Decoders users chat-tune besides the packaged Llama-type SmolLM2; their tokenizers have no chat
# template, so a run gives them ChatML (two tokens added, the embeddings grown to match).
DECODERS = {
    "gpt2": ("bpe-decoder", {"n_positions": 256}),
    "qwen2": ("bpe-decoder", {"num_key_value_heads": 1}),
}


def wordpiece(folder: Path) -> None:
    source = Path(resolve_model("minilm"))
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (source / name).exists():
            shutil.copy2(source / name, folder / name)


def byte_bpe(folder: Path, texts: list[str], decoder: bool) -> None:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast, RobertaTokenizer

    specials = ["<|endoftext|>"] if decoder else ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=800, min_frequency=2, special_tokens=specials, show_progress=False)
    if decoder:
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=specials[0],
                                            eos_token=specials[0], unk_token=specials[0])
    else:
        bpe.save_model(str(folder))  # vocab.json + merges.txt, as RoBERTa checkpoints ship them
        tokenizer = RobertaTokenizer.from_pretrained(folder)
    tokenizer.save_pretrained(folder)


def build(model_type: str, folder: Path, texts: list[str]) -> Path:
    """A tiny ``model_type`` model with its tokenizer, saved in ``folder``."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    kind, extra = {**ZOO, **DECODERS}[model_type]
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "wordpiece":
        wordpiece(folder)
    else:
        byte_bpe(folder, texts, decoder=kind == "bpe-decoder")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    special = {"pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id}
    for name in ("bos", "eos", "cls", "sep"):
        token_id = getattr(tokenizer, f"{name}_token_id", None)
        if token_id is not None:
            special[f"{name}_token_id"] = token_id
    size = {} if model_type == "distilbert" else SIZE
    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), **size, **special, **extra)
    torch.manual_seed(0)
    model = (AutoModelForCausalLM if kind == "bpe-decoder" else AutoModel).from_config(config)
    model.save_pretrained(folder)
    return folder
