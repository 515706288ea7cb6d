"""HTTP serving of a run: ``POST /predict``, ``GET /health``, ``GET /adapters`` (FastAPI + uvicorn).

Requests that arrive together are batched together: a single worker drains the queue for a few
milliseconds, runs one engine call per adapter, and answers each request with its own slice. Every
bad request gets a 4xx JSON error ``{"error": ...}`` and the server keeps serving. With an API key,
``/predict`` and ``/adapters`` need ``Authorization: Bearer KEY`` (401 otherwise); the queue is
bounded (429 when full); a client that goes away mid-request never stops the worker.
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictInt, StrictStr, ValidationError

from pipeline.errors import PipelineError
from pipeline.inference.engines import TextClassifier
from pipeline.log import log


@dataclass
class Limits:
    max_texts: int = 256  # texts in one request
    max_body_bytes: int = 1_000_000
    max_text_chars: int = 20_000


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class MicroBatcher:
    """Collects concurrent requests for up to ``max_wait`` seconds, then runs them as one batch.
    At most ``max_queue`` texts wait at once; past that a request is refused (429), not queued."""

    def __init__(self, engine: TextClassifier, max_batch: int = 512, max_wait: float = 0.005,
                 max_queue: int = 1024):
        self.engine, self.max_batch, self.max_wait, self.max_queue = engine, max_batch, max_wait, max_queue
        self.queue: asyncio.Queue | None = None
        self.waiting = 0  # texts submitted and not yet answered
        self.batches = 0  # engine calls made, for tests and /health

    async def submit(self, texts: list[str], adapter: str | None) -> np.ndarray:
        if self.waiting + len(texts) > self.max_queue:
            raise BadRequest(429, f"the server is busy ({self.waiting} texts waiting, limit {self.max_queue}); "
                                  f"retry shortly")
        if self.queue is None:
            self.queue = asyncio.Queue()
            asyncio.get_running_loop().create_task(self._work())
        future = asyncio.get_running_loop().create_future()
        self.waiting += len(texts)
        try:
            await self.queue.put((texts, adapter, future))
            return await future
        finally:
            self.waiting -= len(texts)

    async def _work(self) -> None:
        while True:
            try:
                await self._run_batch()
            except Exception as exc:  # the worker outlives any one batch
                log.warning(f"serving batch failed ({type(exc).__name__}: {exc})")

    async def _run_batch(self) -> None:
        """Take what is queued within ``max_wait``, run one engine call per adapter, answer each request."""
        loop = asyncio.get_running_loop()
        items = [await self.queue.get()]
        size = len(items[0][0])
        deadline = loop.time() + self.max_wait
        while size < self.max_batch and (remaining := deadline - loop.time()) > 0:
            try:
                item = await asyncio.wait_for(self.queue.get(), timeout=remaining)
            except asyncio.TimeoutError:
                break
            items.append(item)
            size += len(item[0])
        groups: dict[str | None, list] = {}
        for item in items:
            groups.setdefault(item[1], []).append(item)
        for adapter, group in groups.items():
            texts = [t for item in group for t in item[0]]
            try:
                probs = await loop.run_in_executor(None, self.engine.probabilities, texts, adapter)
            except Exception as exc:  # hand the failure to each waiting request
                for *_, future in group:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.batches += 1
            start = 0
            for item_texts, _, future in group:
                if not future.done():  # a cancelled request (its client went away) takes no answer
                    future.set_result(probs[start:start + len(item_texts)])
                start += len(item_texts)


def create_app(engine: TextClassifier, limits: Limits | None = None, api_key: str | None = None,
               max_queue: int = 1024) -> FastAPI:
    limits = limits or Limits()
    batcher = MicroBatcher(engine, max_queue=max_queue)
    app = FastAPI(title="finetune-pipeline", docs_url=None, redoc_url=None)
    app.state.batcher = batcher

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else \
            {"Retry-After": "1"} if exc.status == 429 else None
        return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=headers)

    @app.middleware("http")
    async def require_key(request: Request, call_next: Any) -> Any:
        if api_key and request.url.path != "/health":
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), api_key.encode()):
                return await bad_request(request, BadRequest(401, "missing or wrong API key; send the header "
                                                                  "Authorization: Bearer KEY"))
        return await call_next(request)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "labels": engine.label_names, "batches": batcher.batches,
                "backend": engine.runner.backend, "precision": engine.runner.precision}

    @app.get("/adapters")
    async def adapters() -> dict[str, Any]:
        return {"adapters": engine.adapters, "default": "default" if engine.adapters else None}

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        body = await _parse(request, engine, limits)
        probs = await batcher.submit(body.texts, body.adapter)
        return {"predictions": engine.format(probs, body.top_k), "adapter": body.adapter}

    return app


class PredictRequest(BaseModel):
    """The body of ``POST /predict``. Unknown fields are ignored; the limits on how many texts and
    how long each may be are the server's (``Limits``), checked after the shape."""
    texts: list[StrictStr] = Field(min_length=1)
    adapter: StrictStr | None = None
    top_k: StrictInt | None = Field(None, gt=0)


def _request_error(exc: ValidationError) -> BadRequest:
    """A validation error as the 4xx answer a client reads."""
    error = exc.errors()[0]
    loc, kind = error["loc"], error["type"]
    if loc[0] == "texts":
        if kind == "missing":
            return BadRequest(422, 'missing field "texts"; send {"texts": ["..."]}')
        if len(loc) > 1:
            return BadRequest(422, f"texts[{loc[1]}] is a {type(error['input']).__name__}, not a string")
        return BadRequest(422, '"texts" must be a non-empty list of strings')
    if loc[0] == "top_k":
        return BadRequest(422, '"top_k" must be a positive integer')
    return BadRequest(422, f'"{loc[0]}" must be a string')


async def _parse(request: Request, engine: TextClassifier, limits: Limits) -> PredictRequest:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise BadRequest(413, f"request body over {limits.max_body_bytes} bytes; send fewer texts per request")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limits.max_body_bytes:
            raise BadRequest(413, f"request body over {limits.max_body_bytes} bytes; send fewer texts per request")
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest(400, 'body is not valid JSON; send {"texts": ["..."]}') from None
    if not isinstance(payload, dict):
        raise BadRequest(422, 'missing field "texts"; send {"texts": ["..."]}')
    try:
        parsed = PredictRequest.model_validate(payload)
    except ValidationError as exc:
        raise _request_error(exc) from None
    if len(parsed.texts) > limits.max_texts:
        raise BadRequest(413, f"{len(parsed.texts)} texts in one request; the limit is {limits.max_texts}")
    for i, text in enumerate(parsed.texts):
        if not text.strip():
            raise BadRequest(422, f"texts[{i}] is empty")
        if len(text) > limits.max_text_chars:
            raise BadRequest(413, f"texts[{i}] has {len(text)} characters; the limit is {limits.max_text_chars}")
    if parsed.adapter is not None and parsed.adapter not in engine.adapters:
        known = ", ".join(engine.adapters) or "none"
        raise BadRequest(404, f"adapter {parsed.adapter!r} is not loaded; loaded adapters: {known}")
    return parsed


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(engine: TextClassifier, host: str, port: int, api_key: str | None = None, max_queue: int = 1024) -> None:
    import uvicorn

    if port < 0 or port > 65535:
        raise PipelineError(f"--port {port} is not a TCP port; use 1-65535 (0 picks a free one)")
    if max_queue <= 0:
        raise PipelineError(f"--max-queue must be positive, got {max_queue}")
    if not api_key and not is_loopback(host):
        log.warning(f"serving on {host} without an API key: anyone who reaches this address can use the model; "
              f"set --api-key or PIPELINE_API_KEY")
    log.info(f"serving {len(engine.label_names)} labels on http://{host}:{port} with {engine.runner.backend} "
             f"{engine.runner.precision} (adapters: {', '.join(engine.adapters) or 'none'})")
    uvicorn.run(create_app(engine, api_key=api_key, max_queue=max_queue), host=host, port=port, log_level="warning")
