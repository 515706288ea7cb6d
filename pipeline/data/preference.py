"""Preference pairs for preference tuning: a prompt (chat messages ending with the user's turn), the
reply people preferred (``chosen``) and the one they did not (``rejected``).

Layouts, told apart by their columns (names settable through ``chat.columns``):

- ``prompt`` / ``chosen`` / ``rejected``: the prompt as a string or as messages, each reply as a
  string, a message ``{"role": "assistant", "content"}`` or a list ending with one (TRL's explicit
  prompt format);
- ShareGPT ``conversations`` (the prompt) with ``chosen`` and ``rejected`` as ``{"from", "value"}``
  turns (LLaMA-Factory's ranking layout, the shipped ``dpo_demo``);
- ``chosen`` / ``rejected`` as whole conversations sharing their prompt turns, which are split off
  (TRL's implicit prompt format, e.g. ``trl-lib/ultrafeedback_binarized``).

Every pair comes out as ``{"prompt": [messages], "chosen": str, "rejected": str}``; a pair that
cannot train (no prompt, an empty reply, chosen identical to rejected, a prompt that does not end
with the user) stops with one line naming the file and row.
"""
from __future__ import annotations

from typing import Any, Iterable

from pipeline.data.conversations import Columns, columns_of, parse_turns, read_rows
from pipeline.errors import PipelineError

Pair = dict[str, Any]  # {"prompt": [{"role", "content"}], "chosen": str, "rejected": str}


def _reply(value: Any, what: str, columns: Columns) -> str:
    """A reply given as a string, one assistant message (messages or ShareGPT keys), or a list of
    messages ending with one."""
    if isinstance(value, list) and value:
        value = value[-1]
    if isinstance(value, dict):
        for role_key, content_key in ((columns.role, columns.content),
                                      (columns.sharegpt_role, columns.sharegpt_content)):
            if content_key in value:
                role = str(value.get(role_key, "assistant")).lower()
                if role not in ("assistant", "gpt"):
                    raise ValueError(f"its {what} reply comes from {value.get(role_key)!r}, not the assistant")
                value = value[content_key]
                break
    if not isinstance(value, str):
        raise ValueError(f"its {what} is a {type(value).__name__}, not a reply (a string or an assistant message)")
    if not value.strip():
        raise ValueError(f"its {what} reply is empty")
    return value


def _split_shared_prompt(chosen: list[dict[str, str]], rejected: list[dict[str, str]]) -> list[dict[str, str]]:
    """The turns two whole conversations share before their replies differ (the implicit prompt)."""
    shared = 0
    while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
        shared += 1
    if len(chosen) != shared + 1 or len(rejected) != shared + 1:
        raise ValueError("its chosen and rejected conversations differ before their last turns; give "
                         "prompt, chosen and rejected columns instead")
    return chosen[:shared]


def to_pair(row: dict[str, Any], columns: Columns = Columns(), system_prompt: str | None = None) -> Pair:
    """A row as a preference pair; a ValueError says what is wrong with it."""
    for key in (columns.chosen, columns.rejected):
        if key not in row:
            raise ValueError(f"it has no {key!r} column (a preference pair needs {columns.chosen} and {columns.rejected})")
    chosen, rejected = row[columns.chosen], row[columns.rejected]
    if columns.conversations in row:
        prompt = parse_turns(row[columns.conversations], columns.conversations, "sharegpt", columns)
    elif columns.prompt in row:
        given = row[columns.prompt]
        prompt = ([{"role": "user", "content": given}] if isinstance(given, str)
                  else parse_turns(given, columns.prompt, "messages", columns))
    elif isinstance(chosen, list) and isinstance(rejected, list):
        whole = [parse_turns(c, key, "messages", columns) for c, key in ((chosen, columns.chosen),
                                                                         (rejected, columns.rejected))]
        prompt = _split_shared_prompt(*whole)
    else:
        raise ValueError(f"it has no prompt: give a {columns.prompt!r} column, ShareGPT {columns.conversations!r}, "
                         f"or chosen and rejected as whole conversations")
    if system_prompt and prompt and prompt[0]["role"] != "system":
        prompt.insert(0, {"role": "system", "content": system_prompt})
    if not prompt or prompt[-1]["role"] != "user" or not prompt[-1]["content"].strip():
        raise ValueError("its prompt does not end with a user turn that has words; the replies answer the user")
    pair = {"prompt": prompt, "chosen": _reply(chosen, columns.chosen, columns),
            "rejected": _reply(rejected, columns.rejected, columns)}
    if pair["chosen"].strip() == pair["rejected"].strip():
        raise ValueError("its chosen and rejected replies are identical, so there is no preference to learn")
    return pair


def rows_to_pairs(rows: Iterable[tuple[int, dict[str, Any]]], where: str, columns: Columns,
                  system_prompt: str | None) -> list[Pair]:
    pairs = []
    for number, row in rows:
        try:
            if not isinstance(row, dict):
                raise ValueError(f"it is a JSON {type(row).__name__}, not an object")
            pairs.append(to_pair(row, columns, system_prompt))
        except ValueError as exc:
            raise PipelineError(f"{where} row {number}: {exc}") from None
    return pairs


def load_pairs(cfg: Any, chat: Any, seed: int) -> dict[str, list[Pair]]:
    """Train and validation preference pairs from ``cfg`` (a DatasetConfig), column names and system
    prompt from ``chat`` (a ChatConfig); held out and limited as ``read_rows`` does."""
    columns = columns_of(chat.columns)
    return read_rows(cfg, seed, "preference pairs",
                     lambda rows, where: rows_to_pairs(rows, where, columns, chat.system_prompt))


def as_conversation(pair: Pair, reply: str = "chosen") -> list[dict[str, str]]:
    """The prompt with one of the pair's replies as the assistant's turn."""
    return [*pair["prompt"], {"role": "assistant", "content": pair[reply]}]
