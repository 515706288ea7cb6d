"""Conversations for instruction tuning: rows in the field's layouts read as chat messages, rendered
by the tokenizer's chat template, and labelled so that the loss covers the assistant's turns alone.

Layouts (``chat.format``; ``auto`` tells them apart by their columns):

- ``alpaca``: ``instruction``, optional ``input``, ``output``: one user turn (the instruction, then a
  blank line and the input when there is one) and one assistant turn;
- ``messages``: ``[{"role", "content"}, ...]`` (OpenAI style);
- ``sharegpt``: ``conversations: [{"from", "value"}, ...]`` (``human``/``gpt``/``system``);
- ``prompt_completion``: ``prompt`` and ``completion`` strings.

Labels come from the template itself: for each assistant turn the conversation up to it is rendered
with the generation prompt, then up to the turn's end; the characters between (the reply and the
template's end-of-turn token, trailing whitespace left out) are the ones trained. That works for any
template that renders a conversation's start the same way alone as inside the whole, which is
checked, so masking can never silently train on everything or on nothing.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterable

from pipeline.data.catalogue import load_named
from pipeline.data.readers import check_exists, read_file
from pipeline.errors import PipelineError
from pipeline.log import log

LAYOUTS = ("alpaca", "messages", "sharegpt", "prompt_completion")
ROLES = ("system", "user", "assistant")
# ShareGPT's speaker names, and the OpenAI names themselves, as roles.
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "chatgpt": "assistant", "bing": "assistant", "bard": "assistant"}

# The default for a model whose tokenizer has no chat template: ChatML, saved with the run so that
# chat and serving render exactly what training did.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
CHATML_TOKENS = ("<|im_start|>", "<|im_end|>")


@dataclass(frozen=True)
class Columns:
    """Where a layout's fields are in a row (``chat.columns`` overrides the names)."""
    instruction: str = "instruction"
    input: str = "input"
    output: str = "output"
    messages: str = "messages"
    conversations: str = "conversations"
    prompt: str = "prompt"
    completion: str = "completion"
    chosen: str = "chosen"  # preference pairs: the preferred reply
    rejected: str = "rejected"
    role: str = "role"
    content: str = "content"
    sharegpt_role: str = "from"
    sharegpt_content: str = "value"


def detect_layout(row: dict[str, Any], columns: Columns) -> str:
    """The layout a row is in, from the columns it has."""
    if columns.messages in row:
        return "messages"
    if columns.conversations in row:
        return "sharegpt"
    if columns.instruction in row and columns.output in row:
        return "alpaca"
    if columns.prompt in row and columns.completion in row:
        return "prompt_completion"
    names = ", ".join(repr(str(name))[:40] for name in list(row)[:8]) or "none"
    raise ValueError(f"its columns ({names}) match no conversation layout: give "
                     f"{columns.instruction}/{columns.output} (alpaca), {columns.messages} (messages), "
                     f"{columns.conversations} (ShareGPT) or {columns.prompt}/{columns.completion}; or set chat.columns")


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"its {what} is a {type(value).__name__}, not a string")
    return value


def to_messages(row: dict[str, Any], layout: str, columns: Columns = Columns(),
                system_prompt: str | None = None) -> list[dict[str, str]]:
    """A row as chat messages ``[{"role", "content"}]``; a ValueError says what is wrong with it."""
    if layout == "auto":
        layout = detect_layout(row, columns)
    if layout == "alpaca":
        for key in (columns.instruction, columns.output):
            if key not in row:
                raise ValueError(f"it has no {key!r} column (alpaca layout)")
        instruction = _text(row[columns.instruction], columns.instruction)
        extra = row.get(columns.input) or ""
        user = instruction + ("\n\n" + _text(extra, columns.input) if extra else "")
        messages = [{"role": "user", "content": user},
                    {"role": "assistant", "content": _text(row[columns.output], columns.output)}]
    elif layout == "prompt_completion":
        for key in (columns.prompt, columns.completion):
            if key not in row:
                raise ValueError(f"it has no {key!r} column (prompt/completion layout)")
        messages = [{"role": "user", "content": _text(row[columns.prompt], columns.prompt)},
                    {"role": "assistant", "content": _text(row[columns.completion], columns.completion)}]
    elif layout in ("messages", "sharegpt"):
        key = columns.messages if layout == "messages" else columns.conversations
        messages = parse_turns(row.get(key), key, layout, columns)
    else:
        raise ValueError(f"chat.format {layout!r} is not one of auto, {', '.join(LAYOUTS)}")
    if system_prompt and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system_prompt})
    check_conversation(messages)
    return messages


def parse_turns(turns: Any, key: str, layout: str, columns: Columns) -> list[dict[str, str]]:
    """A list of turns in the messages or ShareGPT layout as ``[{"role", "content"}]``."""
    role_key, content_key = ((columns.role, columns.content) if layout == "messages"
                             else (columns.sharegpt_role, columns.sharegpt_content))
    if not isinstance(turns, list) or not turns:
        raise ValueError(f"its {key!r} is {'missing' if turns is None else 'not a non-empty list'}")
    messages = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or role_key not in turn or content_key not in turn:
            raise ValueError(f"turn {i + 1} is not {{{role_key!r}: ..., {content_key!r}: ...}}")
        name = turn[role_key]
        role = name if layout == "messages" else SHAREGPT_ROLES.get(str(name).lower())
        if role not in ROLES:
            known = ", ".join(ROLES if layout == "messages" else SHAREGPT_ROLES)
            raise ValueError(f"turn {i + 1} has the unknown role {name!r}; roles are {known}")
        messages.append({"role": role, "content": _text(turn[content_key], f"turn {i + 1}'s {content_key}")})
    return messages


def check_conversation(messages: list[dict[str, str]]) -> None:
    """A conversation trains only if an assistant answers something with words."""
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError("it has no assistant turn, so there is nothing to train on")
    for i, message in enumerate(messages):
        if message["role"] == "assistant" and not message["content"].strip():
            raise ValueError(f"turn {i + 1} (assistant) is empty")
        if message["role"] == "system" and i > 0:
            raise ValueError(f"turn {i + 1} is a system turn after the conversation started; put it first")
    if messages[0]["role"] == "assistant" or (messages[0]["role"] == "system" and messages[1:2] and
                                              messages[1]["role"] == "assistant"):
        raise ValueError("it opens with the assistant; a conversation starts with the user (after a system turn)")


def rows_to_conversations(rows: Iterable[tuple[int, dict[str, Any]]], where: str, layout: str, columns: Columns,
                          system_prompt: str | None) -> list[list[dict[str, str]]]:
    """Every row as messages; the first bad row stops with one line naming ``where`` and the row."""
    conversations = []
    for number, row in rows:
        try:
            if not isinstance(row, dict):
                raise ValueError(f"it is a JSON {type(row).__name__}, not an object")
            conversations.append(to_messages(row, layout, columns, system_prompt))
        except ValueError as exc:
            raise PipelineError(f"{where} row {number}: {exc}") from None
    return conversations


def ensure_chat_template(tokenizer: Any) -> bool:
    """Give a tokenizer without a chat template the ChatML default (its two tokens added as special
    tokens where the vocabulary lacks them); True when tokens were added (the model's embeddings must
    grow to match)."""
    if getattr(tokenizer, "chat_template", None):
        return False
    missing = [t for t in CHATML_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing})
    tokenizer.chat_template = CHATML_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or "<|im_end|>"
    return bool(missing)


def prepare_chat_tokenizer(tokenizer: Any, model: str) -> Any:
    """``tokenizer`` ready to render conversations: ChatML when it has no chat template (said once),
    and a pad token."""
    if ensure_chat_template(tokenizer):
        log.info(f"chat template: {model} has none; using ChatML (<|im_start|>role ... <|im_end|>), saved with the run")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def tokenize_conversations(conversations: list[list[dict[str, str]]], tokenizer: Any, max_length: int,
                           train_on_prompt: bool = False, last_turn_only: bool = False) -> Any:
    """Each conversation's ids and labels (``label_conversation``) as a ``datasets.Dataset``, through
    ``datasets.map``; the first conversation the template cannot label stops with its row."""
    import datasets

    def label(row: dict[str, Any], index: int) -> dict[str, Any]:
        try:
            return label_conversation(tokenizer, row["messages"], max_length, train_on_prompt, last_turn_only)
        except ValueError as exc:
            raise PipelineError(f"conversation {index + 1}: {exc}") from None

    rows = datasets.Dataset.from_dict({"messages": conversations})
    return rows.map(label, with_indices=True, remove_columns=["messages"], desc="rendering conversations")


def render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool = False) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    except Exception as exc:  # a template's own raise_exception (e.g. roles it refuses) or a Jinja error
        raise ValueError(f"the chat template refused it ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") \
            from None


def assistant_spans(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans to train: each assistant turn's reply and
    end-of-turn token (what follows the generation prompt up to the turn's end, trailing whitespace
    left out)."""
    text = render(tokenizer, messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:i], generation_prompt=True)
        through = render(tokenizer, messages[:i + 1])
        if not text.startswith(before) or not through.startswith(before) or not text.startswith(through):
            raise ValueError("the chat template renders a conversation's start differently alone than inside the "
                             "whole, so the assistant's tokens cannot be found; use a template that renders turns in "
                             "order, or set chat.train_on_prompt=true")
        spans.append((len(before), len(through.rstrip())))
    return text, spans


def label_conversation(tokenizer: Any, messages: list[dict[str, str]], max_length: int,
                       train_on_prompt: bool = False, last_turn_only: bool = False) -> dict[str, Any]:
    """Token ids and labels of one conversation, cut at ``max_length`` tokens: labels are the ids on
    the assistant's replies and end-of-turn tokens and -100 elsewhere (every token with
    ``train_on_prompt``; the last reply's alone with ``last_turn_only``, as a preference pair's reply
    follows earlier turns that are its prompt). ``assistant_tokens`` and ``assistant_tokens_cut``
    count the trained tokens kept and lost to the cut, for the length report."""
    text, spans = assistant_spans(tokenizer, messages)
    if last_turn_only:
        spans = spans[-1:]
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    trained = [train_on_prompt or any(a <= start and end <= b for a, b in spans) and end > start
               for start, end in offsets]
    labels = [token if keep else -100 for token, keep in zip(ids, trained)]
    kept = sum(1 for label in labels[:max_length] if label != -100)
    return {"input_ids": ids[:max_length], "labels": labels[:max_length], "length": len(ids),
            "assistant_tokens": kept, "assistant_tokens_cut": sum(1 for label in labels if label != -100) - kept}


def columns_of(names: dict[str, str]) -> Columns:
    """``chat.columns`` as Columns; an unknown field is named with the known ones."""
    known = [f.name for f in fields(Columns)]
    for key in names:
        if key not in known:
            raise PipelineError(f"chat.columns has no field {key!r}; fields: {', '.join(known)}")
    return Columns(**names)


def _rows(columns: dict[str, list[Any]]) -> list[tuple[int, dict[str, Any]]]:
    names = list(columns)
    count = len(columns[names[0]]) if names else 0
    # a table reader fills a row's missing fields with None: a row holds only what it has
    return [(i + 1, {name: columns[name][i] for name in names if columns[name][i] is not None}) for i in range(count)]


def load_conversations(cfg: Any, chat: Any, seed: int) -> dict[str, list[list[dict[str, str]]]]:
    """Train and validation conversations from ``cfg`` (a DatasetConfig: a catalogue name, a Hub id or
    files) read by ``chat`` (a ChatConfig); without a validation split, ``cfg.validation_split`` of
    the training rows is held out (seeded). Limits on rows apply after the split."""
    columns = columns_of(chat.columns)
    return read_rows(cfg, seed, "conversations", lambda rows, where: rows_to_conversations(
        rows, where, chat.format, columns, chat.system_prompt))


def read_rows(cfg: Any, seed: int, what: str,
              parse: Callable[[list[tuple[int, dict[str, Any]]], str], list[Any]]) -> dict[str, list[Any]]:
    """The train and validation rows of ``cfg``'s dataset (a catalogue name of kind "chat", a Hub id,
    or files), each split's rows turned into items by ``parse(numbered_rows, where)``; without a
    validation split, ``cfg.validation_split`` of the training items is held out (seeded). Limits on
    rows apply after the split, so the held-out items do not change with ``max_train_samples``."""
    if cfg.name:
        raw, _ = load_named(cfg.name, "chat")
        sources = {split: (f"dataset {cfg.name} {split}", data) for split, data in raw.items()}
    else:
        sources = {}
        for split in ("train", "validation"):
            path = getattr(cfg, f"{split}_file")
            if path:
                check_exists(Path(path))
                sources[split] = (str(path), read_file(path))
    if "train" not in sources:
        raise PipelineError(f"dataset {cfg.name} has no train split (splits: {', '.join(sources)})")
    splits = {split: parse(_rows(data), where) for split, (where, data) in sources.items()
              if split in ("train", "validation")}
    if not splits["train"]:
        raise PipelineError(f"{sources['train'][0]} holds no {what}")
    if "validation" not in splits:
        train = splits["train"]
        order = list(range(len(train)))
        random.Random(seed).shuffle(order)
        held = max(1, int(len(train) * cfg.validation_split))
        splits = {"train": [train[i] for i in sorted(order[held:])], "validation": [train[i] for i in sorted(order[:held])]}
        log.info(f"data: no validation split; held out {held} of {len(train)} {what} (seed {seed})")
    for split, limit in (("train", cfg.max_train_samples), ("validation", cfg.max_eval_samples)):
        if limit and len(splits[split]) > limit:
            splits[split] = random.Random(seed).sample(splits[split], limit)
    return splits


def end_of_turn_ids(tokenizer: Any) -> list[int]:
    """The tokens that end an assistant turn: what the template puts after a reply (its first token),
    and the tokenizer's end-of-sequence token."""
    probe = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    text = tokenizer.apply_chat_template(probe, tokenize=False)
    after = text[text.rindex("y") + 1:].strip()
    ids = tokenizer(after, add_special_tokens=False)["input_ids"][:1] if after else []
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return sorted(set(ids))
