"""The batching engine under real gunicorn: batched answers equal lone ones, a full queue
answers 429 with Retry-After, and a client that leaves frees its place in the batch."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.integration.conftest import API_KEY, MODEL
from tests.servers import RunningServer, serving, start_model_api, wait_for_idle_model

BATCH, QUEUE = 4, 2
QUESTIONS = [
    "Hi",
    "What is the capital of France?",
    "Explain photosynthesis in two sentences, as if to a curious child of seven.",
    "Write a short poem about the sea, the wind and the stars, in the voice of an old "
    "sailor who has travelled the whole world for fifty years and misses none of it.",
]
ENDLESS = {"model": MODEL, "prompt": "1, 2, 3, 4, 5, 6,", "temperature": 0, "max_tokens": 4000}


@pytest.fixture(scope="module")
def batching_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_model_api(
        tmp_path_factory.mktemp("batching_api"),
        MODEL_API_KEY=API_KEY,
        ENGINE="batching",
        MAX_BATCH_SIZE=str(BATCH),
        MAX_WAITING=str(QUEUE),
    )
    yield from serving(server)


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {API_KEY}"
        yield session


def ask(url: str, question: str, **sampling) -> str:
    body = {"model": MODEL, "messages": [{"role": "user", "content": question}], **sampling}
    reply = requests.post(
        url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["choices"][0]["message"]["content"]


def health(server: RunningServer) -> dict:
    return requests.get(server.url + "/health", timeout=5).json()


def wait_for(server: RunningServer, key: str, value: int, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while (current := health(server))[key] != value:
        assert time.monotonic() < deadline, f"{key} never reached {value}: {current}"
        time.sleep(0.1)


def open_stream(http: requests.Session, server: RunningServer) -> requests.Response:
    reply = http.post(
        server.url + "/v1/completions", json={**ENDLESS, "stream": True}, stream=True, timeout=60
    )
    assert reply.status_code == 200, reply.text
    return reply


def test_batched_answers_equal_lone_answers_at_temperature_zero(
    batching_api: RunningServer,
) -> None:
    greedy = {"temperature": 0, "max_tokens": 16}
    alone = [ask(batching_api.url, q, **greedy) for q in QUESTIONS]
    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        together = list(pool.map(lambda q: ask(batching_api.url, q, **greedy), QUESTIONS))
    assert together == alone
    assert all(alone)


def test_seeded_sampling_is_reproducible(batching_api: RunningServer) -> None:
    seeded = {"temperature": 0.9, "top_p": 0.9, "seed": 1234, "max_tokens": 16}
    first = ask(batching_api.url, QUESTIONS[1], **seeded)
    assert ask(batching_api.url, QUESTIONS[1], **seeded) == first


def test_full_queue_is_429_with_retry_after_and_leaving_frees_a_place(
    batching_api: RunningServer, http: requests.Session
) -> None:
    streams = []
    try:
        for _ in range(BATCH):
            streams.append(open_stream(http, batching_api))
        wait_for(batching_api, "batch_size", BATCH)
        for _ in range(QUEUE):
            streams.append(open_stream(http, batching_api))
        wait_for(batching_api, "waiting", QUEUE)

        refused = http.post(batching_api.url + "/v1/completions", json=ENDLESS, timeout=30)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) > 0
        assert refused.json()["error"]["code"] == "server_busy"

        running = streams.pop(0)
        next(running.iter_lines())
        running.close()  # the engine notices at its next token; a waiting request takes over
        wait_for(batching_api, "waiting", QUEUE - 1)
        wait_for(batching_api, "batch_size", BATCH)
    finally:
        for stream in streams:
            stream.close()
    wait_for_idle_model(batching_api)
    assert health(batching_api)["batch_size"] == 0
    assert ask(batching_api.url, "Hi", temperature=0, max_tokens=4)
