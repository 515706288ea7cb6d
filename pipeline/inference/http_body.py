"""Reading HTTP request bodies safely, for every route ``pipeline serve`` offers: a size bound (a
declared ``Content-Length`` over the limit is answered 413 before any of the body is read), a
nesting bound while parsing, and errors a client can act on (``BadRequest``: a status and one line)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.requests import ClientDisconnect


@dataclass
class Limits:
    max_texts: int = 256  # texts (or questions) in one request
    max_body_bytes: int = 1_000_000
    max_text_chars: int = 20_000  # one text, question or context
    max_json_depth: int = 16  # nested arrays and objects; the routes' bodies need 3
    max_new_tokens: int = 1024  # one chat reply; also the default when a request sets none


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


async def read_json(request: Request, limits: Limits, example: str) -> dict[str, Any]:
    """The request's JSON object, read with a size bound and parsed with a nesting bound. A declared
    Content-Length over the limit is refused before the body is read (a client that sent
    ``Expect: 100-continue`` then never sends it; uvicorn discards what others send on)."""
    too_big = BadRequest(413, f"request body over {limits.max_body_bytes} bytes; send fewer items per request")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise too_big
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limits.max_body_bytes:
                raise too_big
    except ClientDisconnect:  # the client stopped sending before its body ended; it reads no answer
        raise BadRequest(400, "the body ended before its Content-Length; send the whole body") from None
    try:
        payload = json.loads(body)
    except RecursionError:  # the parser recurses once per level; a bound deeper than any route needs
        payload = None
    except (ValueError, UnicodeDecodeError):  # JSONDecodeError, or a number past Python's 4,300 digits
        raise BadRequest(400, f"body is not valid JSON (or holds a number of over 4,300 digits); send {example}") from None
    if payload is None or json_depth(payload) > limits.max_json_depth:
        raise BadRequest(400, f"body nests arrays or objects more than {limits.max_json_depth} deep; send {example}")
    if not isinstance(payload, dict):
        raise BadRequest(422, f"body is a JSON {type(payload).__name__}, not an object; send {example}")
    return payload


def json_depth(value: Any) -> int:
    """How deep arrays and objects nest in a parsed JSON value (a scalar: 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in children)
    return deepest


def check_text_length(text: str, where: str, limits: Limits) -> None:
    if not text.strip():
        raise BadRequest(422, f"{where} is empty")
    if len(text) > limits.max_text_chars:
        raise BadRequest(413, f"{where} has {len(text)} characters; the limit is {limits.max_text_chars}")
