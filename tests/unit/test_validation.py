"""JSON from the wire on every edge (app routes, /v1 pass-through, WebSocket frames, the
model API): hostile nesting is a 400 `invalid_json`, never a RecursionError or a 500."""

from __future__ import annotations

import json

import pytest
from flask import Flask
from pydantic import BaseModel

from app_service.frames import parse_frame
from app_service.passthrough import read_body
from app_service.settings import Settings
from chatstack.errors import APIError
from chatstack.validation import MAX_JSON_DEPTH, load_json, parse_body
from model_api.protocol import ChatCompletionRequest
from model_api.protocol import parse_body as model_parse_body


def nested(depth: int) -> str:
    """{"model": "m", "a": {"a": … {} …}}: `depth` objects, one inside the other."""
    return '{"model": "m", "a": ' + '{"a": ' * (depth - 2) + "{}" + "}" * (depth - 1)


HOSTILE = {
    "arrays": "[" * 50_000 + "]" * 50_000,
    "objects": '{"a":' * 50_000 + "1" + "}" * 50_000,
    "unclosed": "[" * 50_000,
    "parseable but too deep": nested(MAX_JSON_DEPTH + 1),
    "deep inside an object": '{"model": "m", "messages": ' + "[" * 500 + "]" * 500 + "}",
}


class Anything(BaseModel):
    model_config = {"extra": "allow"}


def assert_invalid_json(call, *args) -> None:
    with pytest.raises(APIError) as caught:
        call(*args)
    assert (caught.value.status, caught.value.code) == (400, "invalid_json")


@pytest.mark.parametrize("raw", HOSTILE.values(), ids=HOSTILE.keys())
def test_app_and_model_api_bodies_refuse_deep_nesting(raw) -> None:
    assert_invalid_json(parse_body, raw.encode(), Anything)
    assert_invalid_json(model_parse_body, raw.encode(), ChatCompletionRequest)


@pytest.mark.parametrize("raw", HOSTILE.values(), ids=HOSTILE.keys())
def test_websocket_frames_refuse_deep_nesting(raw) -> None:
    assert_invalid_json(parse_frame, raw)
    assert_invalid_json(parse_frame, raw.encode())


@pytest.mark.parametrize("raw", HOSTILE.values(), ids=HOSTILE.keys())
def test_the_v1_pass_through_refuses_deep_nesting(tmp_path, raw) -> None:
    app = Flask(__name__)
    app.extensions["chatstack_settings"] = Settings(data_dir=tmp_path)
    with app.test_request_context("/v1/chat/completions", method="POST", data=raw):
        assert_invalid_json(read_body)


def test_nesting_up_to_the_limit_is_parsed() -> None:
    value = load_json(nested(MAX_JSON_DEPTH).encode())
    assert value["model"] == "m"
    assert load_json(b"[]") == [] and load_json(b"1") == 1


def test_a_deep_parseable_structure_in_a_free_form_field_is_validated_not_a_crash() -> None:
    schema = json.loads(nested(MAX_JSON_DEPTH - 4))
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "text", "json_schema": schema},
    }
    req = model_parse_body(json.dumps(body).encode(), ChatCompletionRequest)
    assert req.response_format is not None
    # The typed fields refuse a deep value by name instead of recursing into it.
    body["messages"] = json.loads("[" * (MAX_JSON_DEPTH - 2) + "]" * (MAX_JSON_DEPTH - 2))
    with pytest.raises(APIError) as caught:
        model_parse_body(json.dumps(body).encode(), ChatCompletionRequest)
    assert caught.value.status == 400 and caught.value.param.startswith("messages")


@pytest.mark.parametrize("raw", [b"NaN", b'{"x": Infinity}', b"{oops", b"\xff"])
def test_what_is_not_json_is_invalid_json(raw) -> None:
    assert_invalid_json(load_json, raw)
