"""Continuing a partial assistant answer (vLLM's continue_final_message) under real gunicorn,
with both engines, driven by the official openai client: the continuation of an answer cut
short is exactly the rest of the uninterrupted answer."""

from __future__ import annotations

import openai
import pytest
import requests

from tests.integration.conftest import API_KEY, MODEL
from tests.servers import RunningServer

# An answer that runs past 48 tokens. The servers run float32: in bf16 (int4 included) a
# prompt's prefill and the decode steps that generated it round differently, so a near tie
# after the seam may flip, which says nothing about the seam itself.
QUESTION = [{"role": "user", "content": "What are the benefits of regular exercise?"}]
CONTINUE = {"continue_final_message": True, "add_generation_prompt": False}
BOTH_FLAGS = "Cannot set both `continue_final_message` and `add_generation_prompt` to True."


@pytest.fixture
def server(float32_model_api: RunningServer) -> RunningServer:
    """A float32 model API with each engine (conftest.py says why float32)."""
    return float32_model_api


def client_of(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0)


def answer(client: openai.OpenAI, messages: list, max_tokens: int, stream: bool, **extra):
    """(text, finish_reason, usage) of one greedy chat completion, streamed or whole."""
    kwargs = {"model": MODEL, "messages": messages, "temperature": 0, "max_tokens": max_tokens}
    if extra:
        kwargs["extra_body"] = extra
    if not stream:
        reply = client.chat.completions.create(**kwargs)
        return reply.choices[0].message.content, reply.choices[0].finish_reason, reply.usage
    chunks = list(
        client.chat.completions.create(
            stream=True, stream_options={"include_usage": True}, **kwargs
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    return text, finish, chunks[-1].usage


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_prefix_plus_continuation_is_the_uninterrupted_answer(
    server: RunningServer, stream: bool
) -> None:
    client = client_of(server)
    whole, whole_finish, whole_usage = answer(client, QUESTION, 48, stream)
    prefix, prefix_finish, _ = answer(client, QUESTION, 16, stream)
    assert (whole_finish, prefix_finish) == ("length", "length")
    assert whole.startswith(prefix) and len(whole) > len(prefix)

    partial = [*QUESTION, {"role": "assistant", "content": prefix}]
    rest, finish, usage = answer(client, partial, 32, stream, **CONTINUE)

    assert prefix + rest == whole
    assert finish == "length"
    assert usage.completion_tokens == 32  # only the new tokens
    counted = requests.post(
        server.url + "/tokenize",
        json={"model": MODEL, "messages": partial, **CONTINUE},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=30,
    ).json()
    assert usage.prompt_tokens == counted["count"]  # the whole open prompt, prefix included
    assert usage.prompt_tokens > whole_usage.prompt_tokens


PARTIAL = [*QUESTION, {"role": "assistant", "content": "Regular exercise"}]


@pytest.mark.parametrize(
    ("body", "param", "code", "words"),
    [
        ({"messages": PARTIAL, "continue_final_message": True}, "add_generation_prompt",
         "invalid_value", BOTH_FLAGS),
        ({"messages": PARTIAL, **CONTINUE, "add_generation_prompt": True},
         "add_generation_prompt", "invalid_value", BOTH_FLAGS),
        ({"messages": QUESTION, **CONTINUE}, "messages", "invalid_value", "role 'user'"),
        ({"messages": [*QUESTION, {"role": "assistant", "content": ""}], **CONTINUE},
         "messages", "invalid_value", "is empty"),
        ({"messages": PARTIAL, "continue_final_message": "yes"}, "continue_final_message",
         "invalid_type", "continue_final_message"),
        ({"messages": PARTIAL, "add_generation_prompt": 0}, "add_generation_prompt",
         "invalid_type", "add_generation_prompt"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/tokenize"])
def test_refusals_have_openai_shape_and_name_their_param(
    http: requests.Session, model_api: RunningServer, path, body, param, code, words
) -> None:
    limit = {} if path == "/tokenize" else {"max_tokens": 4}
    reply = http.post(model_api.url + path, json={"model": MODEL, **limit, **body})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert words in error["message"]
    assert http.get(model_api.url + "/v1/models").status_code == 200  # still answering


def test_the_openai_client_sees_the_refusal_as_a_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MODEL,
            messages=PARTIAL,
            max_tokens=4,
            extra_body={"continue_final_message": True},
        )
    assert caught.value.status_code == 400
    assert caught.value.body["param"] == "add_generation_prompt"
    assert caught.value.body["message"] == BOTH_FLAGS
    reply = client.chat.completions.create(
        model=MODEL, messages=PARTIAL, max_tokens=4, temperature=0, extra_body=CONTINUE
    )
    assert reply.choices[0].message.content  # the same request, once fixed, continues
