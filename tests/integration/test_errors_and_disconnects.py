"""Bad input gets an OpenAI-shaped error, and the server keeps answering afterwards."""

from __future__ import annotations

import openai
import pytest
import requests

from tests.integration.conftest import MODEL
from tests.servers import RunningServer, wait_for_idle_model

OK_MESSAGES = [{"role": "user", "content": "Hi"}]


def chat_body(**overrides) -> dict:
    return {"model": MODEL, "messages": OK_MESSAGES, "max_tokens": 2, **overrides}


# (body, expected status, expected param, expected code or None)
BAD_CHAT_BODIES = [
    pytest.param(b"{not json", 400, None, "invalid_json", id="malformed-json"),
    pytest.param(b"[1, 2]", 400, None, "invalid_json", id="json-array"),
    pytest.param(b'"text"', 400, None, "invalid_json", id="json-string"),
    pytest.param({"model": MODEL}, 400, "messages", "missing_required_parameter", id="no-msgs"),
    pytest.param(chat_body(messages=[]), 400, "messages", None, id="empty-messages"),
    pytest.param(chat_body(temperature="hot"), 400, "temperature", "invalid_type", id="type"),
    pytest.param(chat_body(temperature=3), 400, "temperature", "invalid_value", id="temp-range"),
    pytest.param(chat_body(top_p=1.5), 400, "top_p", "invalid_value", id="top-p-range"),
    pytest.param(chat_body(max_tokens=0), 400, "max_tokens", None, id="max-tokens-zero"),
    pytest.param(chat_body(stream="yes"), 400, "stream", "invalid_type", id="stream-type"),
    pytest.param(chat_body(presence_penalty=5), 400, "presence_penalty", None, id="penalty"),
    pytest.param(chat_body(n=2), 400, "n", "unsupported_parameter", id="n"),
    pytest.param(chat_body(logprobs=True), 400, "logprobs", "unsupported_parameter", id="lp"),
    pytest.param(
        chat_body(tools=[{"type": "function", "function": {"name": "f"}}]),
        400,
        "tools",
        "unsupported_parameter",
        id="tools",
    ),
    pytest.param(
        chat_body(response_format={"type": "json_object"}),
        400,
        "response_format",
        "unsupported_parameter",
        id="response-format",
    ),
    pytest.param(chat_body(frobnicate=1), 400, "frobnicate", "unknown_parameter", id="unknown"),
    pytest.param(
        chat_body(messages=[{"role": "tool", "content": "x"}]),
        400,
        "messages[0].role",
        None,
        id="bad-role",
    ),
    pytest.param(
        chat_body(messages=[{"role": "user", "content": [{"type": "image_url", "x": 1}]}]),
        400,
        "messages[0].content",
        None,
        id="image-part",
    ),
    pytest.param(chat_body(stop=["a", "b", "c", "d", "e"]), 400, "stop", None, id="five-stops"),
    pytest.param(
        chat_body(stream_options={"include_usage": True}),
        400,
        "stream_options",
        None,
        id="stream-options-without-stream",
    ),
    pytest.param(chat_body(model="gpt-9"), 404, "model", "model_not_found", id="unknown-model"),
    pytest.param(
        chat_body(max_tokens=9000), 400, "messages", "context_length_exceeded", id="context"
    ),
]


def assert_openai_error(reply: requests.Response, status: int, param, code) -> dict:
    assert reply.status_code == status, reply.text
    assert reply.headers["Content-Type"].startswith("application/json")
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    return error


def assert_still_answers(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=OK_MESSAGES, max_tokens=2)
    assert reply.usage.completion_tokens >= 1


@pytest.mark.parametrize(("body", "status", "param", "code"), BAD_CHAT_BODIES)
def test_bad_chat_request_gets_openai_error(
    http, model_api: RunningServer, client, body, status, param, code
) -> None:
    url = model_api.url + "/v1/chat/completions"
    if isinstance(body, bytes):
        reply = http.post(url, data=body, headers={"Content-Type": "application/json"})
    else:
        reply = http.post(url, json=body)
    error = assert_openai_error(reply, status, param, code)
    if code == "context_length_exceeded":
        assert "8192" in error["message"] and "9000" in error["message"]
    assert_still_answers(client)


def test_openai_client_raises_typed_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL, messages=OK_MESSAGES, n=3)
    assert bad.value.param == "n"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=OK_MESSAGES)
    assert_still_answers(client)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": MODEL, "prompt": "x", "echo": True}, "echo"),
        ({"model": MODEL, "prompt": "x", "best_of": 2}, "best_of"),
        ({"model": MODEL, "prompt": ["a", "b"]}, "prompt"),
        ({"model": MODEL, "prompt": ""}, "prompt"),
        ({"model": MODEL, "prompt": [999999999]}, "prompt"),
        ({"model": MODEL}, "prompt"),
    ],
)
def test_bad_completion_request(http, model_api: RunningServer, client, body, param) -> None:
    reply = http.post(model_api.url + "/v1/completions", json=body)
    assert_openai_error(reply, 400, param, None)
    assert_still_answers(client)


def test_bad_tokenize_request(http, model_api: RunningServer) -> None:
    reply = http.post(model_api.url + "/tokenize", json={"model": MODEL})
    assert_openai_error(reply, 400, "prompt", None)


def test_oversized_body_is_413(http, model_api: RunningServer, client) -> None:
    huge = "x" * (2 * 1024 * 1024)  # the test server allows 1 MB
    reply = http.post(
        model_api.url + "/v1/chat/completions",
        json=chat_body(messages=[{"role": "user", "content": huge}]),
    )
    assert_openai_error(reply, 413, None, "request_too_large")
    assert_still_answers(client)


def test_unknown_route_and_method_are_json(http, model_api: RunningServer) -> None:
    assert_openai_error(http.get(model_api.url + "/v1/nothing"), 404, None, "not_found")
    assert_openai_error(http.get(model_api.url + "/v1/chat/completions"), 405, None, None)


# A prompt the model continues for far longer than the test waits.
ENDLESS = {"model": MODEL, "prompt": "1, 2, 3, 4, 5, 6,", "temperature": 0, "max_tokens": 4000}


def test_client_leaving_a_stream_stops_generation(http, model_api: RunningServer) -> None:
    reply = http.post(
        model_api.url + "/v1/completions", json={**ENDLESS, "stream": True}, stream=True
    )
    lines = reply.iter_lines()
    received = [next(lines) for _ in range(6)]
    assert any(line.startswith(b"data: {") for line in received)
    assert requests.get(model_api.url + "/health").json()["running"] == 1
    reply.close()
    wait_for_idle_model(model_api)


def test_client_leaving_a_whole_answer_stops_generation(http, model_api: RunningServer) -> None:
    with pytest.raises(requests.ReadTimeout):
        http.post(model_api.url + "/v1/completions", json=ENDLESS, timeout=(5, 1.5))
    http.close()
    wait_for_idle_model(model_api)
