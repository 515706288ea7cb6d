"""The language-model commands: ``fill-mask``, ``generate`` and ``inspect``.

Each takes a model alias (``minilm``, ``bert-tiny-mlm``, ``smollm2``), a Hub id, a model folder, or a
run folder (a full model, or an adapter that is merged into its base on load).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pipeline.data.conversations import end_of_turn_ids
from pipeline.errors import PipelineError
from pipeline.models.pretrained import load_pretrained, load_tokenizer
from pipeline.registry import get_recipe
from pipeline.runs import run_folder
from pipeline.runs.loading import (
    LoadOptions,
    load_run_model,
    place,
    resolve_device,
    resolve_precision,
)


def load(name: str, auto_class: Any, command: str, options: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) in eval mode on ``options.device``, from an alias, Hub id, folder or run
    folder (whose recipe must support ``command``)."""
    options = options or LoadOptions()
    if (Path(name) / run_folder.CONFIG_FILE).exists():
        get_recipe(run_folder.load_run_config(name).recipe).require(command)
        loaded = load_run_model(name, auto_class, options=options)
        return loaded.model, loaded.tokenizer
    resolve_precision(options.precision, resolve_device(options.device))  # fail before loading
    tokenizer = load_tokenizer(name, options.trust_remote_code)
    model = load_pretrained(auto_class, name, options.trust_remote_code, options.allow_pickle)
    return place(model, options), tokenizer


class MaskFiller:
    """A masked LM loaded once: for each mask in a text, the most likely tokens."""

    def __init__(self, model: Any, tokenizer: Any, name: str):
        if tokenizer.mask_token is None:
            raise PipelineError(f"model {name!r} has no mask token; fill-mask needs a masked LM such as bert-tiny-mlm")
        self.model, self.tokenizer = model, tokenizer

    @classmethod
    def load(cls, name: str, options: Any = None) -> "MaskFiller":
        from transformers import AutoModelForMaskedLM

        return cls(*load(name, AutoModelForMaskedLM, "fill-mask", options), name)

    def __call__(self, text: str, top_k: int = 5) -> list[list[dict[str, Any]]]:
        """For each mask in ``text`` (written ``[MASK]`` or as the model's own mask token), the ``top_k``
        tokens with their probabilities; several masks are predicted jointly in one pass."""
        if top_k <= 0:
            raise PipelineError(f"--top-k must be positive, got {top_k}")
        tokenizer = self.tokenizer
        text = text.replace("[MASK]", tokenizer.mask_token)
        encoded = tokenizer(text, return_tensors="pt", truncation=True).to(self.model.device)
        positions = (encoded["input_ids"][0] == tokenizer.mask_token_id).nonzero().flatten().tolist()
        if not positions:
            raise PipelineError("the text has no mask; write [MASK] where a word should be predicted, "
                                "e.g. \"The capital of France is [MASK].\"")
        with torch.inference_mode():
            logits = self.model(**encoded).logits[0]
        results = []
        for position in positions:
            probs = torch.softmax(logits[position].float(), dim=-1)
            scores, ids = probs.topk(min(top_k, probs.numel()))
            results.append([{"token": tokenizer.decode([int(i)]).strip(), "score": float(s)} for s, i in zip(scores, ids)])
        return results


def fill_mask(name: str, text: str, top_k: int = 5, options: Any = None) -> list[list[dict[str, Any]]]:
    """``pipeline fill-mask``: load ``name`` and fill the masks of one text."""
    if top_k <= 0:
        raise PipelineError(f"--top-k must be positive, got {top_k}")
    return MaskFiller.load(name, options)(text, top_k)


class TextGenerator:
    """A causal LM loaded once: sampled or greedy continuations of a prompt. An instruction-tuned run
    (``chat``) answers the prompt as a user's turn through its chat template instead, and the reply
    ends at the template's end-of-turn token."""

    def __init__(self, model: Any, tokenizer: Any, chat: bool = False):
        self.model, self.tokenizer, self.chat = model, tokenizer, chat

    @classmethod
    def load(cls, name: str, options: Any = None) -> "TextGenerator":
        from transformers import AutoModelForCausalLM

        chat = (Path(name) / run_folder.CONFIG_FILE).exists() and get_recipe(run_folder.load_run_config(name).recipe).chat
        return cls(*load(name, AutoModelForCausalLM, "generate", options), chat=chat)

    def __call__(self, prompt: str, max_new_tokens: int = 50, temperature: float = 0.8, top_p: float = 0.95,
                 num_return_sequences: int = 1, seed: int = 0) -> list[str]:
        """Sampled continuations of ``prompt`` (greedy when ``temperature`` is 0), reproducible by ``seed``."""
        check_generation(prompt, max_new_tokens, temperature, top_p, num_return_sequences)
        tokenizer = self.tokenizer
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True) if self.chat else prompt
        encoded = tokenizer(text, return_tensors="pt", add_special_tokens=not self.chat).to(self.model.device)
        sample = temperature > 0
        torch.manual_seed(seed)
        stop = {"eos_token_id": end_of_turn_ids(tokenizer)} if self.chat else {}
        with torch.inference_mode():
            out = self.model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=sample,
                                      temperature=temperature if sample else None, top_p=top_p if sample else None,
                                      top_k=None, num_return_sequences=num_return_sequences,
                                      pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                                      else tokenizer.eos_token_id, **stop)
        start = encoded["input_ids"].shape[1]
        replies = [tokenizer.decode(seq[start:], skip_special_tokens=True) for seq in out]
        return [reply.strip() for reply in replies] if self.chat else [prompt + reply for reply in replies]


def check_generation(prompt: str, max_new_tokens: int, temperature: float, top_p: float,
                     num_return_sequences: int) -> None:
    if max_new_tokens <= 0 or num_return_sequences <= 0:
        raise PipelineError("--max-new-tokens and --num-return-sequences must be positive")
    if temperature < 0 or not 0 < top_p <= 1:
        raise PipelineError(f"--temperature must be >= 0 and --top-p in (0, 1]; got {temperature} and {top_p}")
    if not prompt.strip():
        raise PipelineError("the prompt is empty; give the text to continue")


def generate(name: str, prompt: str, max_new_tokens: int = 50, temperature: float = 0.8, top_p: float = 0.95,
             num_return_sequences: int = 1, seed: int = 0, options: Any = None) -> list[str]:
    """``pipeline generate``: load ``name`` and continue one prompt (settings checked before loading)."""
    check_generation(prompt, max_new_tokens, temperature, top_p, num_return_sequences)
    return TextGenerator.load(name, options)(prompt, max_new_tokens, temperature, top_p, num_return_sequences, seed)


def inspect(name: str, text: str) -> str:
    """What a model does with a text: tokens, ids, attention mask, hidden-state shapes, and its sizes.
    A run folder loads as its recipe's model (with its head and adapter); anything else as the bare model."""
    from transformers import AutoModel

    model_class = AutoModel
    if (Path(name) / run_folder.CONFIG_FILE).exists():
        config = run_folder.load_run_config(name)
        model_class = get_recipe(config.recipe).model_class(config)
    model, tokenizer = load(name, model_class, "inspect", LoadOptions(device="cpu", precision="fp32"))
    encoded = tokenizer(text, return_tensors="pt")
    with torch.inference_mode():
        out = model(**encoded, output_hidden_states=True)
    config = model.config
    ids = encoded["input_ids"][0].tolist()
    hidden = out.hidden_states or ()
    lines = [f"model: {name} ({type(model).__name__}, {config.model_type})",
             f"tokens ({len(ids)}): {tokenizer.convert_ids_to_tokens(ids)}",
             f"input ids: {ids}",
             f"attention mask: {encoded['attention_mask'][0].tolist()}"]
    if "token_type_ids" in encoded:
        lines.append(f"token type ids: {encoded['token_type_ids'][0].tolist()}")
    lines += [f"hidden states: {len(hidden)} tensors (embeddings + one per layer), each {tuple(hidden[0].shape)} "
              f"(batch, tokens, hidden size)" if hidden else "hidden states: not returned by this model",
              f"output: {', '.join(f'{k} {tuple(v.shape)}' for k, v in out.items() if hasattr(v, 'shape'))}",
              f"hidden size {config.hidden_size}, attention heads {config.num_attention_heads}, "
              f"layers {config.num_hidden_layers}, vocabulary {config.vocab_size:,}",
              f"parameters: {sum(p.numel() for p in model.parameters()):,}"]
    return "\n".join(lines)
