"""HTTP serving of a run (FastAPI + uvicorn): ``POST /predict`` for a classifier, ``POST /qa`` for a
question-answering run, OpenAI's ``POST /v1/chat/completions`` and ``GET /v1/models`` for a decoder
(``chat_server``), ``GET /health`` and ``GET /adapters``.

Requests that arrive together are batched together: a single worker drains the queue for a few
milliseconds, runs one engine call per adapter, and answers each request with its own slice. Every
bad request gets a 4xx JSON error ``{"error": ...}`` and the server keeps serving. Bodies are read
with a size bound (a declared ``Content-Length`` over the limit is answered 413 before any of the body
is read) and parsed with a nesting bound. With an API key, every route but ``/health`` needs
``Authorization: Bearer KEY`` (401 otherwise); the queue is bounded (429 when full); a client that
goes away mid-request never stops the worker.
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
from typing import Any, Callable, Sequence

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictInt, StrictStr, ValidationError

from pipeline.errors import PipelineError
from pipeline.inference.http_body import BadRequest, Limits, check_text_length, read_json
from pipeline.inference.chat import ChatModel
from pipeline.inference.chat_server import add_chat_routes
from pipeline.inference.engines import TextClassifier
from pipeline.inference.question_answering import QuestionAnswerer
from pipeline.log import log


class MicroBatcher:
    """Collects concurrent requests for up to ``max_wait`` seconds, then runs them as one batch through
    ``compute(items, adapter)``, which returns one result per item (a classifier's probabilities, a
    question's ranked answers). At most ``max_queue`` items wait at once; past that a request is
    refused (429), not queued."""

    def __init__(self, compute: Callable[[list[Any], str | None], Sequence[Any]], max_batch: int = 512,
                 max_wait: float = 0.005, max_queue: int = 1024):
        self.compute, self.max_batch, self.max_wait, self.max_queue = compute, max_batch, max_wait, max_queue
        self.queue: asyncio.Queue | None = None
        self.waiting = 0  # items submitted and not yet answered
        self.batches = 0  # engine calls made, for tests and /health

    async def submit(self, texts: list[Any], adapter: str | None) -> Sequence[Any]:
        if self.waiting + len(texts) > self.max_queue:
            raise BadRequest(429, f"the server is busy ({self.waiting} items waiting, limit {self.max_queue}); "
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
                probs = await loop.run_in_executor(None, self.compute, texts, adapter)
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


Engine = TextClassifier | QuestionAnswerer | ChatModel


def create_app(engine: Engine, limits: Limits | None = None, api_key: str | None = None,
               max_queue: int = 1024) -> FastAPI:
    """The app for a classifier (``/predict``), a question answerer (``/qa``) or a decoder (``/v1/...``)."""
    limits = limits or Limits()
    if isinstance(engine, ChatModel):
        app = _app_with_key(api_key)

        @app.get("/health")
        async def chat_health() -> dict[str, Any]:
            return {"status": "ok", "task": "chat", "model": engine.name}

        add_chat_routes(app, engine, limits, max_queue)
        return app
    answers_questions = isinstance(engine, QuestionAnswerer)
    if answers_questions:
        batcher = MicroBatcher(lambda pairs, _: engine.n_best([q for q, _ in pairs], [c for _, c in pairs]),
                               max_queue=max_queue)
    else:
        batcher = MicroBatcher(engine.probabilities, max_queue=max_queue)
    adapters = [] if answers_questions else engine.adapters
    app = _app_with_key(api_key)
    app.state.batcher = batcher

    @app.get("/health")
    async def health() -> dict[str, Any]:
        facts = {"task": "question_answering"} if answers_questions else {"labels": engine.label_names}
        return {"status": "ok", **facts, "batches": batcher.batches,
                "backend": engine.runner.backend, "precision": engine.runner.precision}

    @app.get("/adapters")
    async def list_adapters() -> dict[str, Any]:
        return {"adapters": adapters, "default": "default" if adapters else None}

    if answers_questions:
        @app.post("/qa")
        async def qa(request: Request) -> dict[str, Any]:
            body = parse_questions(await read_json(request, limits, QA_EXAMPLE), limits)
            pairs = [(item.question, item.context) for item in body.questions]
            ranked = await batcher.submit(pairs, None)
            answers = [[{"question": q, **a} for a in best[:body.top_k or 1]] for (q, _), best in zip(pairs, ranked)]
            return {"answers": answers if body.top_k else [best[0] for best in answers]}
    else:
        @app.post("/predict")
        async def predict(request: Request) -> dict[str, Any]:
            body = parse_predict(await read_json(request, limits, PREDICT_EXAMPLE), engine, limits)
            probs = await batcher.submit(body.texts, body.adapter)
            return {"predictions": engine.format(probs, body.top_k), "adapter": body.adapter}

    return app


def _app_with_key(api_key: str | None) -> FastAPI:
    """An app whose routes but ``/health`` need the API key when one is set, and whose BadRequests
    become JSON answers: ``{"error": message}``, or OpenAI's ``{"error": {"message", "type"}}`` under
    ``/v1/`` where OpenAI's clients read them."""
    app = FastAPI(title="finetune-pipeline", docs_url=None, redoc_url=None)

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else \
            {"Retry-After": "1"} if exc.status == 429 else None
        error: Any = str(exc)
        if request.url.path.startswith("/v1/"):
            kind = {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error"}
            error = {"message": str(exc), "type": kind.get(exc.status, "invalid_request_error"), "param": None,
                     "code": None}
        return JSONResponse({"error": error}, status_code=exc.status, headers=headers)

    @app.middleware("http")
    async def require_key(request: Request, call_next: Any) -> Any:
        if api_key and request.url.path != "/health":
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), api_key.encode()):
                return await bad_request(request, BadRequest(401, "missing or wrong API key; send the header "
                                                                  "Authorization: Bearer KEY"))
        return await call_next(request)

    return app


PREDICT_EXAMPLE = '{"texts": ["..."]}'
QA_EXAMPLE = '{"questions": [{"question": "...", "context": "..."}]}'


class PredictRequest(BaseModel):
    """The body of ``POST /predict``. Unknown fields are ignored; the limits on how many texts and
    how long each may be are the server's (``Limits``), checked after the shape."""
    texts: list[StrictStr] = Field(min_length=1)
    adapter: StrictStr | None = None
    top_k: StrictInt | None = Field(None, gt=0)


class Question(BaseModel):
    question: StrictStr
    context: StrictStr


class QARequest(BaseModel):
    """The body of ``POST /qa``: questions with their contexts, and ``top_k`` for the k best answers."""
    questions: list[Question] = Field(min_length=1)
    top_k: StrictInt | None = Field(None, gt=0)


def _request_error(exc: ValidationError, items: str, example: str) -> BadRequest:
    """A validation error as the 4xx answer a client reads; ``items`` is the list field."""
    error = exc.errors()[0]
    loc, kind = error["loc"], error["type"]
    if loc[0] == items:
        if kind == "missing" and len(loc) == 1:
            return BadRequest(422, f'missing field "{items}"; send {example}')
        if len(loc) == 2 and kind != "missing":
            what = "a string" if items == "texts" else 'an object {"question": "...", "context": "..."}'
            return BadRequest(422, f"{items}[{loc[1]}] is a {type(error['input']).__name__}, not {what}")
        if len(loc) > 2:
            field = loc[2]
            if kind == "missing":
                return BadRequest(422, f'{items}[{loc[1]}] has no "{field}"; send {example}')
            return BadRequest(422, f"{items}[{loc[1]}].{field} is a {type(error['input']).__name__}, not a string")
        return BadRequest(422, f'"{items}" must be a non-empty list; send {example}')
    if loc[0] == "top_k":
        return BadRequest(422, '"top_k" must be a positive integer')
    return BadRequest(422, f'"{loc[0]}" must be a string')


def _validated(request_type: type[BaseModel], payload: dict[str, Any], items: str, example: str,
               limits: Limits) -> Any:
    """The body as ``request_type``, its list field ``items`` within the server's count limit."""
    try:
        parsed = request_type.model_validate(payload)
    except ValidationError as exc:
        raise _request_error(exc, items, example) from None
    count = len(getattr(parsed, items))
    if count > limits.max_texts:
        raise BadRequest(413, f"{count} {items} in one request; the limit is {limits.max_texts}")
    return parsed


def parse_predict(payload: dict[str, Any], engine: TextClassifier, limits: Limits) -> PredictRequest:
    parsed = _validated(PredictRequest, payload, "texts", PREDICT_EXAMPLE, limits)
    for i, text in enumerate(parsed.texts):
        check_text_length(text, f"texts[{i}]", limits)
    if parsed.adapter is not None and parsed.adapter not in engine.adapters:
        known = ", ".join(engine.adapters) or "none"
        raise BadRequest(404, f"adapter {parsed.adapter!r} is not loaded; loaded adapters: {known}")
    return parsed


def parse_questions(payload: dict[str, Any], limits: Limits) -> QARequest:
    parsed = _validated(QARequest, payload, "questions", QA_EXAMPLE, limits)
    for i, item in enumerate(parsed.questions):
        check_text_length(item.question, f"questions[{i}].question", limits)
        check_text_length(item.context, f"questions[{i}].context", limits)
    return parsed


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(engine: Engine, host: str, port: int, api_key: str | None = None,
          max_queue: int = 1024) -> None:
    import uvicorn

    if port < 0 or port > 65535:
        raise PipelineError(f"--port {port} is not a TCP port; use 1-65535 (0 picks a free one)")
    if max_queue <= 0:
        raise PipelineError(f"--max-queue must be positive, got {max_queue}")
    if not api_key and not is_loopback(host):
        log.warning(f"serving on {host} without an API key: anyone who reaches this address can use the model; "
              f"set --api-key or PIPELINE_API_KEY")
    if isinstance(engine, ChatModel):
        what, route, runs_on = f"chat with {engine.name}", "POST /v1/chat/completions, GET /v1/models", ""
    else:
        if isinstance(engine, QuestionAnswerer):
            what, route = "question answering", "POST /qa"
        else:
            what = f"{len(engine.label_names)} labels (adapters: {', '.join(engine.adapters) or 'none'})"
            route = "POST /predict"
        runs_on = f" with {engine.runner.backend} {engine.runner.precision}"
    log.info(f"serving {what} on http://{host}:{port} ({route}){runs_on}")
    uvicorn.run(create_app(engine, api_key=api_key, max_queue=max_queue), host=host, port=port, log_level="warning")
