"""/metrics on the real model API: behind the key, and moved by real generations."""

from __future__ import annotations

import shutil
import time

import openai
import requests
from prometheus_client.parser import text_string_to_metric_families

import chatstack
from tests.integration.conftest import MODEL
from tests.servers import RunningServer, wait_for_idle_model

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
CHAT_200 = (
    "chatstack_http_requests_total",
    (("method", "POST"), ("route", "/v1/chat/completions"), ("status", "200")),
)


def scrape(http: requests.Session, model_api: RunningServer) -> dict[tuple[str, tuple], float]:
    """Every sample as {(name, sorted labels): value}."""
    reply = http.get(model_api.url + "/metrics")
    assert reply.status_code == 200, reply.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(reply.text)
        for s in family.samples
    }


def moved(before: dict, after: dict, key: tuple[str, tuple]) -> float:
    return after.get(key, 0) - before.get(key, 0)


def plain(name: str) -> tuple[str, tuple]:
    return (name, ())


def finished(reason: str) -> tuple[str, tuple]:
    return ("chatstack_model_generations_total", (("finish_reason", reason),))


def assert_generation_counted(before: dict, after: dict, usage, finish_reason: str) -> None:
    assert moved(before, after, CHAT_200) == 1
    assert moved(before, after, plain("chatstack_model_prompt_tokens_total")) == usage.prompt_tokens
    assert (
        moved(before, after, plain("chatstack_model_completion_tokens_total"))
        == usage.completion_tokens
    )
    assert moved(before, after, plain("chatstack_model_time_to_first_token_seconds_count")) == 1
    assert moved(before, after, plain("chatstack_model_e2e_request_latency_seconds_count")) == 1
    per_token = moved(before, after, plain("chatstack_model_time_per_output_token_seconds_count"))
    assert per_token == (1 if usage.completion_tokens > 1 else 0)
    for reason in ("stop", "length", "cancelled", "error"):
        assert moved(before, after, finished(reason)) == (reason == finish_reason), reason


def test_metrics_need_the_key(model_api: RunningServer, http: requests.Session) -> None:
    refused = requests.get(model_api.url + "/metrics", timeout=5)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"
    reply = http.get(model_api.url + "/metrics", timeout=5)
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("text/plain")


def test_a_whole_chat_completion_moves_the_counters(
    client: openai.OpenAI, http: requests.Session, model_api: RunningServer
) -> None:
    wait_for_idle_model(model_api)
    before = scrape(http, model_api)
    reply = client.chat.completions.create(
        model=MODEL, messages=QUESTION, temperature=0, max_tokens=8
    )
    after = scrape(http, model_api)
    assert_generation_counted(before, after, reply.usage, reply.choices[0].finish_reason)


def test_a_streamed_chat_completion_moves_the_counters(
    client: openai.OpenAI, http: requests.Session, model_api: RunningServer
) -> None:
    wait_for_idle_model(model_api)
    before = scrape(http, model_api)
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=QUESTION,
            temperature=0,
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    after = scrape(http, model_api)
    reason = next(
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    )
    assert_generation_counted(before, after, chunks[-1].usage, reason)


def test_a_client_leaving_a_stream_counts_as_cancelled(
    http: requests.Session, model_api: RunningServer
) -> None:
    wait_for_idle_model(model_api)
    before = scrape(http, model_api)
    endless = {"model": MODEL, "prompt": "1, 2, 3, 4, 5, 6,", "temperature": 0, "max_tokens": 4000}
    reply = http.post(
        model_api.url + "/v1/completions", json={**endless, "stream": True}, stream=True
    )
    lines = reply.iter_lines()
    assert any(next(lines).startswith(b"data: {") for _ in range(6))
    reply.close()
    wait_for_idle_model(model_api)
    deadline = time.monotonic() + 5
    while moved(before, after := scrape(http, model_api), finished("cancelled")) == 0:
        assert time.monotonic() < deadline, "the cancelled stream was never counted"
        time.sleep(0.1)
    assert moved(before, after, finished("cancelled")) == 1
    assert moved(before, after, finished("stop")) == moved(before, after, finished("length")) == 0


def test_the_model_and_its_engine_are_described(
    http: requests.Session, model_api: RunningServer
) -> None:
    samples = scrape(http, model_api)
    info = [dict(labels) for name, labels in samples if name == "chatstack_model_info"]
    assert len(info) == 1
    assert info[0]["model"] == MODEL and info[0]["version"] == chatstack.__version__
    assert info[0]["engine"] == "batching"
    health = requests.get(model_api.url + "/health", timeout=5).json()
    assert health["version"] == chatstack.__version__
    for field in ("device", "dtype", "quantization"):
        assert info[0][field] == health[field], field
    capacity = samples[plain("chatstack_model_kv_cache_capacity_tokens")]
    assert capacity == health["kv_cache_capacity_tokens"] > 0
    for name in ("requests_running", "requests_waiting", "batch_size", "kv_cache_tokens"):
        assert plain(f"chatstack_model_{name}") in samples, name


def test_gpu_metrics_say_whether_there_is_a_gpu(
    http: requests.Session, model_api: RunningServer
) -> None:
    samples = scrape(http, model_api)
    gpu_names = {name for name, _ in samples if name.startswith("chatstack_gpu_")}
    if shutil.which("nvidia-smi") is None:  # this machine kind and CI
        assert samples[plain("chatstack_gpu_available")] == 0
        assert gpu_names == {"chatstack_gpu_available"}
    else:
        assert samples[plain("chatstack_gpu_available")] == 1
        assert "chatstack_gpu_memory_total_bytes" in gpu_names
