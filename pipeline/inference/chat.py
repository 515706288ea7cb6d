"""Chatting with a decoder run: conversations rendered by the run's own chat template (the one it
trained with), replies generated until the template's end-of-turn token, a stop string or a token
limit, whole or streamed piece by piece. ``pipeline chat`` and serve's OpenAI-style routes use it.

A model without a chat template (a causal LM trained on plain text) is talked to through a plain
transcript (``user: ...`` / ``assistant:``), stopping at its end-of-sequence token.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from pipeline.data.conversations import ROLES, end_of_turn_ids
from pipeline.errors import PipelineError

# For a tokenizer with no template: the conversation as a transcript the model continues.
TRANSCRIPT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] + ': ' + message['content'] + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant:' }}{% endif %}")


@dataclass
class Settings:
    """How one reply is generated (OpenAI's names and ranges)."""
    max_tokens: int = 256
    temperature: float = 0.7  # 0: greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()  # strings that end the reply; not part of it
    seed: int | None = None


@dataclass
class Reply:
    text: str
    finish_reason: str  # "stop" (end-of-turn token or a stop string) or "length"
    prompt_tokens: int
    completion_tokens: int


def check_messages(messages: Any) -> list[dict[str, str]]:
    """A conversation to answer: ``[{"role", "content"}]`` with known roles, ending with the user's turn
    (or a tool's), as a list of plain dicts; a ValueError names the first problem."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {role, content}")
    checked = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            raise ValueError(f"messages[{i}] is not an object with a role and content")
        role, content = message["role"], message.get("content")
        if role not in ROLES:
            raise ValueError(f"messages[{i}].role {role!r} is not one of {', '.join(ROLES)}")
        if isinstance(content, list):  # OpenAI's content parts: the text parts joined
            if not all(isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
                       for part in content):
                raise ValueError(f"messages[{i}].content has a part that is not text; this model reads text only")
            content = "".join(part["text"] for part in content)
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}].content is a {type(content).__name__}, not a string")
        checked.append({"role": role, "content": content})
    if checked[-1]["role"] != "user":
        raise ValueError(f"the last message is the {checked[-1]['role']}'s; the model answers a user turn")
    return checked


class ChatModel:
    """A decoder with its tokenizer, answering conversations. Generation is serialised by a lock: one
    reply at a time uses the cores (and the global random seed)."""

    def __init__(self, model: Any, tokenizer: Any, name: str):
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.templated = bool(getattr(tokenizer, "chat_template", None))
        self.stop_ids = end_of_turn_ids(tokenizer) if self.templated else (
            [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])
        self.context = getattr(model.config, "max_position_embeddings", None) or 2048
        self.lock = threading.Lock()

    def render(self, messages: list[dict[str, str]]) -> list[int]:
        """The conversation's prompt ids, ending with the assistant's turn opening; a ValueError when
        it leaves the model no room to answer."""
        template = None if self.templated else TRANSCRIPT_TEMPLATE
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                  chat_template=template)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) >= self.context:
            raise ValueError(f"the conversation is {len(ids)} tokens; this model reads at most {self.context}")
        return ids

    def _generate_kwargs(self, ids: list[int], settings: Settings) -> dict[str, Any]:
        sample = settings.temperature > 0
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        return dict(input_ids=torch.tensor([ids], device=self.model.device),
                    attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=self.model.device),
                    max_new_tokens=min(settings.max_tokens, self.context - len(ids)), do_sample=sample,
                    temperature=settings.temperature if sample else None, top_p=settings.top_p if sample else None,
                    top_k=None, eos_token_id=self.stop_ids or None, pad_token_id=pad)

    def stream(self, messages: list[dict[str, str]], settings: Settings,
               ids: list[int] | None = None) -> Iterator[str | Reply]:
        """The reply's text in pieces as it is generated, then its ``Reply`` (the whole text and why it
        ended). Text that may begin a stop string is held back until it cannot. ``ids``: the
        conversation already rendered (``render``)."""
        from transformers import TextIteratorStreamer

        ids = ids if ids is not None else self.render(messages)
        kwargs = self._generate_kwargs(ids, settings)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        stopped = threading.Event()
        generated: list[int] = []

        class StopOnFlag:  # a transformers StoppingCriteria: ends generation once a stop string is seen
            def __call__(self, input_ids: torch.Tensor, scores: Any, **_: Any) -> torch.Tensor:
                generated[:] = input_ids[0, len(ids):].tolist()
                return torch.full((input_ids.shape[0],), stopped.is_set(), dtype=torch.bool, device=input_ids.device)

        from transformers import StoppingCriteriaList

        error: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(**kwargs, streamer=streamer, stopping_criteria=StoppingCriteriaList([StopOnFlag()]))
            except BaseException as exc:  # handed to the reader, which re-raises it
                error.append(exc)
                streamer.end()

        with self.lock:
            if settings.seed is not None:
                torch.manual_seed(settings.seed)
            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            text, sent, hit = "", 0, False
            hold = max((len(s) for s in settings.stop), default=1) - 1
            try:
                for piece in streamer:
                    if hit:
                        continue  # drain what generate still sends
                    text += piece
                    cut = min((i for i in (text.find(s) for s in settings.stop) if i >= 0), default=-1)
                    if cut >= 0:
                        text, hit = text[:cut], True
                        stopped.set()
                    safe = len(text) if hit else max(sent, len(text) - hold)
                    if safe > sent:
                        yield text[sent:safe]
                        sent = safe
            finally:  # also when the reader goes away mid-reply: generation stops before the lock is freed
                stopped.set()
                worker.join()
            if error:
                raise error[0]
            if sent < len(text):
                yield text[sent:]
        ended = hit or bool(generated and generated[-1] in self.stop_ids)
        yield Reply(text=text, finish_reason="stop" if ended else "length", prompt_tokens=len(ids),
                    completion_tokens=len(generated))

    def reply(self, messages: list[dict[str, str]], settings: Settings, ids: list[int] | None = None) -> Reply:
        """The whole reply at once."""
        *_, last = self.stream(messages, settings, ids)
        return last


def chat_model(generator: Any, name: str) -> ChatModel:
    """A ChatModel over a loaded ``TextGenerator`` (``pipeline.inference.lm_tools``)."""
    if not getattr(generator, "model", None) or not getattr(generator, "tokenizer", None):
        raise PipelineError(f"{name} has no language model to chat with")
    return ChatModel(generator.model, generator.tokenizer, name)


def chat_loop(model: ChatModel, settings: Settings, system: str | None = None, read: Any = input,
              write: Any = None) -> int:
    """``pipeline chat``: read a user turn, print the reply as it is generated, keep the history.
    ``/reset`` starts over; an empty line, ``/exit`` or end of input ends the session."""
    import sys

    write = write or (lambda text: (sys.stdout.write(text), sys.stdout.flush()))
    start = [{"role": "system", "content": system}] if system else []
    history = list(start)
    write(f"chatting with {model.name}; /reset starts over, /exit (or an empty line) ends\n")
    while True:
        try:
            line = read("you> ")
        except EOFError:
            write("\n")
            return 0
        if not line.strip() or line.strip() == "/exit":
            return 0
        if line.strip() == "/reset":
            history = list(start)
            write("(conversation cleared)\n")
            continue
        history.append({"role": "user", "content": line})
        write("assistant> ")
        try:
            for piece in model.stream(history, settings):
                if isinstance(piece, Reply):
                    history.append({"role": "assistant", "content": piece.text})
                    write("\n" if piece.finish_reason == "stop" else f" [cut at {settings.max_tokens} tokens]\n")
                else:
                    write(piece)
        except ValueError as exc:  # the history outgrew the model's context
            history.pop()
            write(f"\n{exc}; /reset to start over\n")
