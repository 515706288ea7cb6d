"""A real HTTP server on 127.0.0.1: predictions, adapters, batching, and every bad request's 4xx."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import serving

from pipeline.inference.engines import TextClassifier
from pipeline.inference.serve import Limits, create_app


@pytest.fixture(scope="module")
def server(lora_run, rt_lora_run):
    engine = TextClassifier.from_run(lora_run, adapters={"rt": rt_lora_run})
    with serving(create_app(engine, Limits(max_texts=16, max_body_bytes=20_000))) as url:
        yield url, engine


def call(url: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url + path, data=body, method="POST" if body is not None else "GET",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def post(url: str, payload) -> tuple[int, dict]:
    return call(url, "/predict", json.dumps(payload).encode())


GOOD = {"texts": ["A true cinematic achievement!", "Boring and predictable."]}


def test_health_adapters_and_predict(server):
    url, engine = server
    assert call(url, "/health")[1]["status"] == "ok"
    assert call(url, "/adapters")[1]["adapters"] == ["default", "rt"]
    status, body = post(url, GOOD)
    assert status == 200
    assert body["predictions"] == engine.predict(GOOD["texts"])
    status, body = post(url, {**GOOD, "adapter": "rt", "top_k": 2})
    assert status == 200 and body["adapter"] == "rt"
    assert [p[0] for p in body["predictions"]] == engine.predict(GOOD["texts"], adapter="rt")


@pytest.mark.parametrize("body, status, words", [
    (b'{"texts": ["fine"', 400, "not valid JSON"),
    (json.dumps({"text": ["fine"]}).encode(), 422, 'missing field "texts"'),
    (json.dumps({"texts": ["fine", 3]}).encode(), 422, "texts[1] is a int"),
    (json.dumps({"texts": []}).encode(), 422, "non-empty list"),
    (json.dumps({"texts": ["fine"] * 17}).encode(), 413, "limit is 16"),
    (json.dumps({"texts": ["fine"], "adapter": "imdb"}).encode(), 404, "'imdb' is not loaded"),
    (json.dumps({"texts": ["word " * 5000]}).encode(), 413, "over 20000 bytes"),
])
def test_bad_requests_get_a_4xx_and_the_server_keeps_serving(server, body, status, words):
    url, _ = server
    got_status, got = call(url, "/predict", body)
    assert got_status == status and words in got["error"]
    assert post(url, GOOD)[0] == 200


def test_concurrent_requests_are_batched_together(server, sst2_rows):
    url, engine = server
    before = call(url, "/health")[1]["batches"]
    texts = [[s] for s, _ in sst2_rows[:24]]
    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(lambda t: post(url, {"texts": t}), texts))
    assert all(status == 200 for status, _ in results)
    expected = engine.predict([t[0] for t in texts])
    got = [r["predictions"][0] for _, r in results]
    assert [g["label"] for g in got] == [e["label"] for e in expected]
    # batched with other requests, a text is padded differently: scores agree to float precision
    assert max(abs(g["score"] - e["score"]) for g, e in zip(got, expected)) < 1e-4
    assert call(url, "/health")[1]["batches"] - before < len(texts)
