"""The two engines and the two weight formats under real gunicorn: the default server runs
continuous batching on int4 linears; `ENGINE=sequential QUANTIZATION=none` (the benchmark's
baseline) still serves, streamed and whole alike."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from tests.integration.conftest import API_KEY, MODEL
from tests.servers import RunningServer, serving, start_model_api

AUTH = {"Authorization": f"Bearer {API_KEY}"}
GREEDY = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Name three colours."}],
    "temperature": 0,
    "max_tokens": 24,
}


@pytest.fixture(scope="module")
def sequential_fp32_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_model_api(
        tmp_path_factory.mktemp("sequential_api"),
        MODEL_API_KEY=API_KEY,
        ENGINE="sequential",
        QUANTIZATION="none",
    )
    yield from serving(server)


def whole_answer(url: str) -> str:
    reply = requests.post(url + "/v1/chat/completions", json=GREEDY, headers=AUTH, timeout=120)
    assert reply.status_code == 200, reply.text
    return reply.json()["choices"][0]["message"]["content"]


def streamed_answer(url: str) -> str:
    parts = []
    with requests.post(
        url + "/v1/chat/completions",
        json={**GREEDY, "stream": True},
        headers=AUTH,
        stream=True,
        timeout=120,
    ) as reply:
        assert reply.status_code == 200, reply.text
        for line in reply.iter_lines(decode_unicode=True):
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            delta = json.loads(line[6:])["choices"][0]["delta"]
            parts.append(delta.get("content") or "")
    return "".join(parts)


def test_the_default_server_batches_on_int4_linears_on_a_cpu(model_api: RunningServer) -> None:
    health = requests.get(model_api.url + "/health", timeout=10).json()
    # int4 is the CPU path; on a GPU QUANTIZATION=auto keeps the weights as loaded.
    expected = ("int4", "bfloat16") if health["device"] == "cpu" else ("none", "bfloat16")
    assert (health["quantization"], health["dtype"]) == expected
    assert "batch_size" in health  # only the batching engine reports it


def test_the_sequential_fp32_engine_still_serves(sequential_fp32_api: RunningServer) -> None:
    health = requests.get(sequential_fp32_api.url + "/health", timeout=10).json()
    assert (health["quantization"], health["dtype"]) == ("none", "float32")
    assert "batch_size" not in health
    whole = whole_answer(sequential_fp32_api.url)
    assert whole
    assert streamed_answer(sequential_fp32_api.url) == whole
