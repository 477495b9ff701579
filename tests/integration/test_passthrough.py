"""/v1 on the real app service in front of the real model API, driven by the openai client."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import openai
import pytest
import requests

from tests.integration.conftest import API_KEY, MODEL, register
from tests.integration.test_api_keys import create_key
from tests.servers import RunningServer, free_port, start_app_service, wait_for_idle_model

HI = [{"role": "user", "content": "Say hello in three words."}]
# A prompt the model continues for far longer than the test waits.
ENDLESS = {"model": MODEL, "prompt": "1, 2, 3, 4, 5, 6,", "temperature": 0, "max_tokens": 4000}


@pytest.fixture
def api_key(app_server: RunningServer, new_user: Callable[[], requests.Session]) -> str:
    return create_key(new_user(), app_server.url)["key"]


@pytest.fixture
def client(app_server: RunningServer, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=app_server.url + "/v1", api_key=api_key, max_retries=0)


def in_flight(app_server: RunningServer) -> list[int]:
    health = requests.get(app_server.url + "/api/health").json()
    return [u["in_flight"] for u in health["model_api"]["upstreams"]]


def test_models_list(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == [MODEL]


def test_streamed_chat_matches_the_whole_answer(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model=MODEL, messages=HI, temperature=0, max_tokens=12)
    text = whole.choices[0].message.content
    assert text
    assert whole.usage.completion_tokens == 12 or whole.choices[0].finish_reason == "stop"
    stream = client.chat.completions.create(
        model=MODEL,
        messages=HI,
        temperature=0,
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_completions(client: openai.OpenAI) -> None:
    reply = client.completions.create(model=MODEL, prompt="The sky is", max_tokens=4, temperature=0)
    assert reply.choices[0].text
    assert reply.usage.completion_tokens <= 4
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_model_api_errors_arrive_in_openai_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=HI, max_tokens=2, n=2)
    assert err.value.status_code == 400
    assert err.value.param == "n"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=HI, max_tokens=2, stream=True, n=2)
    assert err.value.param == "n"
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-model", messages=HI, max_tokens=2)
    assert missing.value.code == "model_not_found"
    # and the service still answers afterwards
    assert client.models.list().data


def test_a_wrong_or_missing_key_is_refused(app_server: RunningServer) -> None:
    wrong = openai.OpenAI(base_url=app_server.url + "/v1", api_key="cs-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        wrong.chat.completions.create(model=MODEL, messages=HI, max_tokens=2)
    assert err.value.code == "invalid_api_key"
    reply = requests.post(
        app_server.url + "/v1/chat/completions", json={"model": MODEL, "messages": HI}
    )
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "missing_api_key"


def test_a_body_over_the_limit_is_a_413(app_server: RunningServer, api_key: str) -> None:
    reply = requests.post(
        app_server.url + "/v1/completions",
        json={"model": MODEL, "prompt": "x" * (1024 * 1024 + 10)},
        headers={"Authorization": f"Bearer {api_key}"},
    )
    assert reply.status_code == 413
    assert reply.json()["error"]["code"] == "request_too_large"


def test_a_client_leaving_a_stream_stops_the_model(
    app_server: RunningServer, model_api: RunningServer, api_key: str
) -> None:
    reply = requests.post(
        app_server.url + "/v1/completions",
        json={**ENDLESS, "stream": True},
        headers={"Authorization": f"Bearer {api_key}"},
        stream=True,
        timeout=(5, 30),
    )
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("text/event-stream")
    assert reply.headers["X-Accel-Buffering"] == "no"
    events: list[dict] = []
    lines = reply.iter_lines()
    while len(events) < 5:
        line = next(lines)
        if line.startswith(b"data: {"):
            events.append(json.loads(line[6:]))
    # Tokens arrive while the model is still generating: nothing waits for the end.
    assert requests.get(model_api.url + "/health").json()["running"] == 1
    assert in_flight(app_server) == [1]
    reply.close()
    wait_for_idle_model(model_api)
    deadline = time.monotonic() + 5
    while in_flight(app_server) != [0]:
        assert time.monotonic() < deadline, "the app service still counts the stream"
        time.sleep(0.1)


def test_a_dead_upstream_is_skipped_and_reported(
    tmp_path_factory: pytest.TempPathFactory, model_api: RunningServer
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    server = start_app_service(
        tmp_path_factory.mktemp("two_upstreams"),
        f"{dead},{model_api.url}",
        MODEL_API_KEY=API_KEY,
        UPSTREAM_HEALTH_SECONDS="1",
    )
    try:
        server.wait_healthy("/api/health")
        key = create_key(register(server.url), server.url)["key"]
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
        for _ in range(3):
            reply = client.completions.create(model=MODEL, prompt="Hi", max_tokens=1)
            assert reply.choices[0].text is not None
        upstreams = requests.get(server.url + "/api/health").json()["model_api"]["upstreams"]
        assert [(u["url"], u["healthy"]) for u in upstreams] == [
            (dead, False),
            (model_api.url, True),
        ]
        assert upstreams[1]["models"] == [MODEL]
    finally:
        server.stop()
