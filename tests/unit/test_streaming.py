"""SSE framing and the whole-answer collector, with events fed by hand (no model)."""

import json

import pytest

from chatstack.errors import APIError
from chatstack.sse import DONE, KEEPALIVE, sse_data
from model_api.engine import Delta, Failed, Finished, GenerationHandle
from model_api.formats import ChatFormat, CompletionFormat
from model_api.sampling import SamplingParams
from model_api.serving import collect_response, stream_sse


def handle_with(*events) -> GenerationHandle:
    handle = GenerationHandle([1, 2, 3], SamplingParams(max_tokens=5))
    for event in events:
        handle.events.put(event)
    return handle


def payloads(frames: list[str]) -> list:
    out = []
    for frame in frames:
        assert frame.endswith("\n\n")
        if frame.startswith("data: {"):
            out.append(json.loads(frame[len("data: ") :]))
    return out


def test_sse_data_is_one_compact_event():
    assert sse_data({"a": "é"}) == 'data: {"a":"é"}\n\n'


def test_chat_stream_sends_role_deltas_finish_usage_then_done():
    handle = handle_with(Delta("Hel"), Delta("lo"), Finished("stop", 3, 2))
    frames = list(stream_sse(handle, ChatFormat(model="m", include_usage=True), 1.0))
    assert frames[-1] == DONE
    chunks = payloads(frames)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:3]] == ["Hel", "lo"]
    assert chunks[3]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert chunks[4]["choices"] == []
    assert chunks[4]["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 2,
        "total_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    assert all(c["usage"] is None for c in chunks[:4])
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}


def test_completion_stream_has_no_role_chunk_and_no_usage_unless_asked():
    handle = handle_with(Delta("x"), Finished("length", 3, 1))
    chunks = payloads(list(stream_sse(handle, CompletionFormat(model="m"), 1.0)))
    assert [c["choices"][0]["text"] for c in chunks] == ["x", ""]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all("usage" not in c for c in chunks)


def test_failure_inside_a_stream_ends_with_an_error_frame_then_done():
    handle = handle_with(Delta("par"), Failed("CUDA out of memory"))
    frames = list(stream_sse(handle, ChatFormat(model="m"), 1.0))
    assert frames[-1] == DONE
    error = payloads(frames)[-1]["error"]
    assert error["message"] == "CUDA out of memory"
    assert error["type"] == "server_error"


def test_idle_stream_sends_keepalive_comments():
    handle = handle_with()
    frames = stream_sse(handle, CompletionFormat(model="m"), 0.01)
    assert next(frames) == KEEPALIVE
    handle.events.put(Finished("stop", 3, 0))
    assert list(frames)[-1] == DONE


def test_closing_the_stream_cancels_the_generation():
    handle = handle_with(Delta("a"))
    frames = stream_sse(handle, ChatFormat(model="m"), 1.0)
    next(frames)
    frames.close()
    assert handle.cancelled


def test_collect_joins_deltas_into_one_response():
    handle = handle_with(Delta("Hi"), Delta(" there"), Finished("stop", 3, 2))
    body = collect_response(handle, ChatFormat(model="m"), lambda: False)
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "Hi there"
    assert body["usage"]["total_tokens"] == 5


def test_collect_cancels_when_the_client_is_gone():
    handle = handle_with()
    with pytest.raises(APIError):
        collect_response(handle, ChatFormat(model="m"), lambda: True, poll_seconds=0.01)
    assert handle.cancelled


def test_collect_turns_a_failure_into_a_500():
    handle = handle_with(Failed("boom"))
    with pytest.raises(APIError) as caught:
        collect_response(handle, CompletionFormat(model="m"), lambda: False)
    assert caught.value.status == 500
