"""A real HTTP server on 127.0.0.1: predictions, adapters, batching, and every bad request's 4xx."""
from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import http, serving

from pipeline.inference.engines import TextClassifier
from pipeline.inference.serve import Limits, create_app


@pytest.fixture(scope="module")
def server(lora_run, rt_lora_run):
    engine = TextClassifier.from_run(lora_run, adapters={"rt": rt_lora_run})
    with serving(create_app(engine, Limits(max_texts=16, max_body_bytes=20_000))) as url:
        yield url, engine


def post(url: str, payload) -> tuple[int, dict]:
    return http(url, "/predict", json.dumps(payload).encode())


GOOD = {"texts": ["A true cinematic achievement!", "Boring and predictable."]}


def test_health_adapters_and_predict(server):
    url, engine = server
    assert http(url, "/health")[1]["status"] == "ok"
    assert http(url, "/adapters")[1]["adapters"] == ["default", "rt"]
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
    (b"[" * 9_000 + b"]" * 9_000, 400, "nests arrays or objects more than 16 deep"),  # was a 500
    (b'{"texts": ' + b"[" * 17 + b'"x"' + b"]" * 17 + b"}", 400, "more than 16 deep"),
    (json.dumps(["fine"]).encode(), 422, "not an object"),
    (b'{"texts": ["caf\xe9"]}', 400, "not valid JSON"),
])
def test_bad_requests_get_a_4xx_and_the_server_keeps_serving(server, body, status, words):
    url, _ = server
    got_status, got = http(url, "/predict", body)
    assert got_status == status and words in got["error"]
    assert post(url, GOOD)[0] == 200


def test_concurrent_requests_are_batched_together(server, sst2_rows):
    url, engine = server
    before = http(url, "/health")[1]["batches"]
    texts = [[s] for s, _ in sst2_rows[:24]]
    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(lambda t: post(url, {"texts": t}), texts))
    assert all(status == 200 for status, _ in results)
    expected = engine.predict([t[0] for t in texts])
    got = [r["predictions"][0] for _, r in results]
    assert [g["label"] for g in got] == [e["label"] for e in expected]
    # batched with other requests, a text is padded differently: scores agree to float precision
    assert max(abs(g["score"] - e["score"]) for g, e in zip(got, expected)) < 1e-4
    assert http(url, "/health")[1]["batches"] - before < len(texts)


def raw_post(url: str, headers: str, body: bytes = b"", chunk: int = 65536) -> tuple[bytes, int]:
    """POST over a plain socket, the body sent in chunks as a client on a network sends it; returns what
    came back and how many body bytes went out before the server answered or the body ended."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"POST /predict HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n".encode())
        sent = 0
        for i in range(0, len(body), chunk):
            sock.sendall(body[i:i + chunk])
            sent += len(body[i:i + chunk])
        return sock.recv(4096), sent


def test_a_body_far_over_the_limit_gets_its_413_not_a_broken_connection(server):
    url, _ = server
    body = json.dumps({"texts": ["x" * 20_000_000]}).encode()  # 20 MB against a 20 kB limit
    answer, sent = raw_post(url, f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n", body)
    assert sent == len(body)  # the server read on and discarded: the client's send never broke
    assert answer.startswith(b"HTTP/1.1 413") and b"over 20000 bytes" in answer
    assert post(url, GOOD)[0] == 200


def test_a_client_that_waits_for_100_continue_gets_the_413_before_sending(server):
    url, _ = server
    answer, _ = raw_post(url, "Content-Type: application/json\r\nContent-Length: 20000000\r\n"
                              "Expect: 100-continue\r\n")
    assert answer.startswith(b"HTTP/1.1 413") and b"100 Continue" not in answer


def test_a_slow_body_holds_up_no_one_and_a_body_cut_short_is_answered_400(server):
    url, _ = server
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as slow:
        slow.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b'Content-Length: 1000\r\n\r\n{"texts": ["A fine')
        assert post(url, GOOD)[0] == 200  # served while the slow client's body is still on its way
        slow.shutdown(socket.SHUT_WR)  # the client stops sending: the body ends before its Content-Length
        answer = slow.recv(4096)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer
    assert post(url, GOOD)[0] == 200


def test_a_body_nested_100000_deep_is_a_400_at_the_default_limits(server):
    _, engine = server
    with serving(create_app(engine)) as url:  # the 1 MB default: 200 kB of brackets is well inside it
        status, body = http(url, "/predict", b"[" * 100_000 + b"]" * 100_000)
        assert status == 400 and "nests arrays or objects more than 16 deep" in body["error"]  # was a 500
        assert post(url, GOOD)[0] == 200
