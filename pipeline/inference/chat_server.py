"""OpenAI-compatible routes for a decoder run: ``POST /v1/chat/completions`` (whole replies, or
``stream: true`` as server-sent events) and ``GET /v1/models``, so the official ``openai`` client,
and the tools built on it, talk to a run as to OpenAI's API. The body limits, API key and 4xx answers
are serve's; errors come in OpenAI's shape (``{"error": {"message", "type"}}``) so clients show them.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, StrictBool, StrictInt, StrictStr, ValidationError

from pipeline.inference.chat import ChatModel, Reply, Settings, check_messages
from pipeline.inference.http_body import BadRequest, Limits, check_text_length, read_json

CHAT_EXAMPLE = '{"model": "...", "messages": [{"role": "user", "content": "..."}]}'
MAX_STOPS = 4  # OpenAI's limit on stop strings


class ChatRequest(BaseModel):
    """The body of ``POST /v1/chat/completions``: OpenAI's fields that a local model honours. Others
    (``frequency_penalty``, ``user``, ...) are accepted and ignored, as OpenAI-compatible servers do."""
    model: StrictStr | None = None
    messages: list[Any] = Field(min_length=1)
    max_tokens: StrictInt | None = Field(None, gt=0)
    max_completion_tokens: StrictInt | None = Field(None, gt=0)  # OpenAI's newer name for max_tokens
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: StrictStr | list[StrictStr] | None = None
    seed: StrictInt | None = None
    stream: StrictBool = False
    stream_options: dict[str, Any] | None = None
    n: StrictInt = Field(1, ge=1, le=1)  # one reply per request


def chat_request(payload: dict[str, Any], chat: ChatModel, limits: Limits) -> tuple[ChatRequest, list[dict[str, str]],
                                                                                    Settings]:
    """The body as a request, its conversation and its generation settings; a BadRequest names what is wrong."""
    try:
        body = ChatRequest.model_validate(payload)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "body"
        if error["type"] == "missing":
            raise BadRequest(422, f'missing field "{field}"; send {CHAT_EXAMPLE}') from None
        if field == "n":
            raise BadRequest(422, '"n" must be 1: this server writes one reply per request') from None
        raise BadRequest(422, f'"{field}": {error["msg"].lower()}') from None
    if body.model not in (None, chat.name):
        raise BadRequest(404, f"model {body.model!r} is not served here; this server serves {chat.name!r} (GET /v1/models)")
    if len(body.messages) > limits.max_texts:
        raise BadRequest(413, f"{len(body.messages)} messages in one request; the limit is {limits.max_texts}")
    try:
        messages = check_messages(body.messages)
    except ValueError as exc:
        raise BadRequest(422, str(exc)) from None
    for i, message in enumerate(messages):
        if message["role"] == "user" or message["content"]:  # an empty system or assistant turn says nothing
            check_text_length(message["content"], f"messages[{i}].content", limits)
    stops = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    if len(stops) > MAX_STOPS or any(not s for s in stops):
        raise BadRequest(422, f'"stop" takes at most {MAX_STOPS} non-empty strings')
    max_tokens = body.max_completion_tokens or body.max_tokens or limits.max_new_tokens
    if max_tokens > limits.max_new_tokens:
        raise BadRequest(422, f'"max_tokens" {max_tokens} is over this server\'s limit of {limits.max_new_tokens}')
    settings = Settings(max_tokens=max_tokens, temperature=1.0 if body.temperature is None else body.temperature,
                        top_p=1.0 if body.top_p is None else body.top_p, stop=stops, seed=body.seed)
    return body, messages, settings


def add_chat_routes(app: FastAPI, chat: ChatModel, limits: Limits, max_queue: int) -> None:
    """Mount the OpenAI-style routes on ``app``. Replies are generated one at a time; at most
    ``max_queue`` requests wait, past that a request is refused (429)."""
    created = int(time.time())
    waiting = {"count": 0}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": chat.name, "object": "model", "created": created,
                                            "owned_by": "finetune-pipeline"}]}

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> Any:
        body, messages, settings = chat_request(await read_json(request, limits, CHAT_EXAMPLE), chat, limits)
        if waiting["count"] >= max_queue:
            raise BadRequest(429, f"the server is busy ({waiting['count']} requests waiting, limit {max_queue}); "
                                  f"retry shortly")
        try:
            prompt = chat.render(messages)  # rendered once: checked here, then generated from
        except ValueError as exc:
            raise BadRequest(422, str(exc)) from None
        ident, now = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        head = {"id": ident, "created": now, "model": chat.name}
        if body.stream:
            usage = bool((body.stream_options or {}).get("include_usage"))
            return StreamingResponse(_events(chat, messages, prompt, settings, head, usage, waiting),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        waiting["count"] += 1
        try:
            reply = await asyncio.get_running_loop().run_in_executor(None, chat.reply, messages, settings, prompt)
        finally:
            waiting["count"] -= 1
        return {**head, "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                             "logprobs": None, "finish_reason": reply.finish_reason}],
                "usage": _usage(reply)}


def _usage(reply: Reply) -> dict[str, int]:
    return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens}


async def _events(chat: ChatModel, messages: list[dict[str, str]], prompt: list[int], settings: Settings,
                  head: dict[str, Any], include_usage: bool, waiting: dict[str, int]) -> AsyncIterator[str]:
    """The reply as OpenAI's chunks: the role first, then the text as it comes, then why it ended
    (and the token counts when asked), then ``[DONE]``."""
    loop = asyncio.get_running_loop()

    def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        chunk = {**head, "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(chunk)}\n\n"

    waiting["count"] += 1
    pieces = chat.stream(messages, settings, prompt)
    done = object()
    try:
        yield event({"role": "assistant", "content": ""})
        while (piece := await loop.run_in_executor(None, next, pieces, done)) is not done:
            if isinstance(piece, Reply):
                yield event({}, piece.finish_reason, **({"usage": None} if include_usage else {}))
                if include_usage:
                    yield f"data: {json.dumps({**head, 'object': 'chat.completion.chunk', 'choices': [], 'usage': _usage(piece)})}\n\n"
            else:
                yield event({"content": piece})
        yield "data: [DONE]\n\n"
    finally:  # also when the client goes away: generation stops and the next request may start
        waiting["count"] -= 1
        await loop.run_in_executor(None, pieces.close)
