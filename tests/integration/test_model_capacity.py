"""A full model API under real gunicorn: one request beyond the engine's capacity gets a
429 at once, /health and /metrics keep answering, and the server recovers when the
streams end — with either engine, the threads sized by the settings alone."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import API_KEY, MODEL
from tests.servers import RunningServer, start_model_api, wait_for_idle_model

BATCH, QUEUE = 2, 2
CAPACITY = {"batching": BATCH + QUEUE, "sequential": 1 + QUEUE}
# A prompt the model continues for far longer than the test waits.
ENDLESS = {"model": MODEL, "prompt": "1, 2, 3, 4, 5, 6,", "temperature": 0, "max_tokens": 4000}
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}
AUTH = {"Authorization": f"Bearer {API_KEY}"}
# Generous: a request that waited for a thread would wait for a whole stream, minutes.
PROMPT = 10


@pytest.fixture(scope="module", params=sorted(CAPACITY))
def full_api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, int]]:
    engine = request.param
    server = start_model_api(
        tmp_path_factory.mktemp(f"capacity_{engine}"),
        MODEL_API_KEY=API_KEY,
        ENGINE=engine,
        MAX_BATCH_SIZE=str(BATCH),
        MAX_WAITING=str(QUEUE),
        # Queued text completions send nothing until a keep-alive: send one soon, so each
        # stream's headers (and the test) need not wait 15 s for it.
        SSE_KEEPALIVE_SECONDS="0.5",
    )
    try:
        server.wait_healthy()
        yield server, CAPACITY[engine]
    finally:
        server.stop()


def health(server: RunningServer) -> requests.Response:
    return requests.get(server.url + "/health", timeout=PROMPT)


def wait_until_held(server: RunningServer, capacity: int, within: float = 60) -> dict:
    deadline = time.monotonic() + within
    while True:
        current = health(server).json()
        if current["running"] + current["waiting"] == capacity:
            return current
        assert time.monotonic() < deadline, f"the engine never held {capacity}: {current}"
        time.sleep(0.1)


def post_promptly(server: RunningServer, path: str, body: dict) -> requests.Response:
    try:
        return requests.post(server.url + path, json=body, headers=AUTH, timeout=PROMPT)
    except requests.Timeout:
        pytest.fail(f"{path} waited instead of being answered while the engine was full")


def test_a_full_engine_refuses_at_once_and_keeps_answering_health(
    full_api: tuple[RunningServer, int],
) -> None:
    server, capacity = full_api
    streams: list[requests.Response] = []
    try:
        for _ in range(capacity):
            reply = requests.post(
                server.url + "/v1/completions",
                json={**ENDLESS, "stream": True},
                headers=AUTH,
                stream=True,
                timeout=60,
            )
            assert reply.status_code == 200, reply.text
            streams.append(reply)
        held = wait_until_held(server, capacity)
        assert held["waiting"] > 0  # the queue is full too, not only the running ones

        for body in (ENDLESS, {**ENDLESS, "stream": True}):
            refused = post_promptly(server, "/v1/completions", body)
            assert refused.status_code == 429, refused.text
            assert int(refused.headers["Retry-After"]) > 0
            assert refused.json()["error"]["code"] == "server_busy"
        assert post_promptly(server, "/v1/chat/completions", CHAT).status_code == 429

        assert health(server).status_code == 200
        metrics = requests.get(server.url + "/metrics", headers=AUTH, timeout=PROMPT)
        assert metrics.status_code == 200
        assert "chatstack_model_requests_waiting" in metrics.text
        tokens = post_promptly(server, "/tokenize", {"model": MODEL, "prompt": "Hi"})
        assert tokens.status_code == 200
        models = requests.get(server.url + "/v1/models", headers=AUTH, timeout=PROMPT)
        assert models.status_code == 200
    finally:
        for stream in streams:
            stream.close()

    wait_for_idle_model(server)
    answer = post_promptly(server, "/v1/chat/completions", {**CHAT, "max_tokens": 4})
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["completion_tokens"] >= 1


def test_too_few_threads_fail_at_start_naming_the_variables(tmp_path: Path) -> None:
    server = start_model_api(
        tmp_path, MAX_BATCH_SIZE=str(BATCH), MAX_WAITING=str(QUEUE), MODEL_API_THREADS="8"
    )
    try:
        assert server.proc.wait(timeout=60) != 0
        log = server.log()
        assert "MODEL_API_THREADS=8" in log
        assert "MAX_BATCH_SIZE + MAX_WAITING" in log
    finally:
        server.stop()
