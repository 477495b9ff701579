"""The /v1 pass-through in front of a loopback fake upstream (Flask test client)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from app_service.app import create_app
from app_service.limits import bound_request
from app_service.settings import Settings
from tests.unit.test_api_keys import create_key, login
from tests.unit.test_upstream import FakeUpstream, Handler, chunk_for, send_json, sse


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    yield fake
    fake.stop()


@pytest.fixture
def app(tmp_path: Path, upstream: FakeUpstream):
    settings = Settings(
        data_dir=tmp_path,
        model_api_urls=(upstream.url,),
        model_api_key="shared",
        cookie_secure=False,
        max_connections=64,
        max_json_bytes=2000,
    )
    app = create_app(settings)
    yield app
    app.extensions["chatstack_upstreams"].stop()


@pytest.fixture
def client(app) -> FlaskClient:
    user = login(app, "alice")
    key = create_key(user)["key"]
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}


def test_models_come_from_the_upstream(client: FlaskClient) -> None:
    reply = client.get("/v1/models")
    assert reply.status_code == 200
    assert [m["id"] for m in reply.json["data"]] == ["m"]


def test_one_model_is_retrieved_by_id_and_an_unknown_one_is_openais_404(client) -> None:
    reply = client.get("/v1/models/m")
    assert reply.status_code == 200 and reply.json["id"] == "m"
    missing = client.get("/v1/models/org/other")
    assert missing.status_code == 404
    assert missing.json["error"]["code"] == "model_not_found"
    assert missing.json["error"]["message"] == "The model 'org/other' does not exist."
    anonymous = client.application.test_client().get("/v1/models/m")
    assert anonymous.status_code == 401


def test_a_body_goes_upstream_unchanged_with_the_shared_key(client, upstream) -> None:
    answer = {"id": "x", "object": "chat.completion", "choices": [], "usage": {}}
    upstream.routes["/v1/chat/completions"] = lambda h, _b: send_json(h, 200, answer)
    body = {**CHAT, "temperature": 0, "unknown_field": [1, {"a": None}]}
    reply = client.post("/v1/chat/completions", json=body)
    assert reply.status_code == 200
    assert reply.json == answer
    path, headers, sent = upstream.seen[-1]
    assert (path, sent) == ("/v1/chat/completions", body)
    assert headers["Authorization"] == "Bearer shared"  # never the user's key


def test_upstream_errors_keep_their_status_and_shape(client, upstream) -> None:
    error = {"message": "n must be 1", "type": "invalid_request_error", "param": "n", "code": "u"}
    upstream.routes["/v1/completions"] = lambda h, _b: send_json(h, 400, {"error": error})
    for stream in (False, True):
        reply = client.post("/v1/completions", json={"model": "m", "prompt": "x", "stream": stream})
        assert reply.status_code == 400
        assert reply.json == {"error": error}


@pytest.mark.parametrize(
    ("raw", "status", "param"),
    [
        (b"{nope", 400, None),
        (b"[1]", 400, None),
        (b'{"model": 1}', 400, "model"),
        (b'{"messages": []}', 400, "model"),
        (b'{"model": "m", "temperature": NaN}', 400, None),
        (b'{"model": "m", "prompt": "' + b"x" * 3000 + b'"}', 413, None),
    ],
)
def test_bad_bodies_never_reach_the_upstream(client, upstream, raw, status, param) -> None:
    reply = client.post("/v1/completions", data=raw, headers={"Content-Type": "application/json"})
    assert reply.status_code == status
    assert reply.json["error"]["param"] == param
    assert [s for s in upstream.seen if s[0] == "/v1/completions"] == []


def test_a_stream_is_relayed_byte_for_byte_with_sse_headers(client, upstream) -> None:
    events = [b": keep-alive\n\n", sse(chunk_for("Hel")), sse(chunk_for("lo")), b"data: [DONE]\n\n"]

    def stream(handler: Handler, _body: dict) -> None:
        handler.start_chunked()
        for event in events:
            handler.chunk(event)
        handler.end_chunked()

    upstream.routes["/v1/chat/completions"] = stream
    reply = client.post("/v1/chat/completions", json={**CHAT, "stream": True}, buffered=False)
    assert reply.status_code == 200
    assert reply.mimetype == "text/event-stream"
    assert reply.headers["X-Accel-Buffering"] == "no"
    assert reply.headers["Cache-Control"] == "no-cache"
    assert b"".join(reply.response) == b"".join(events)
    reply.close()
    assert upstream.seen[-1][2]["stream"] is True


def test_an_upstream_dying_mid_stream_ends_with_an_error_event(client, upstream) -> None:
    def dies(handler: Handler, _body: dict) -> None:
        handler.start_chunked()
        handler.chunk(sse(chunk_for("a")))
        handler.chunk(b'data: {"partial')
        handler.connection.shutdown(socket.SHUT_RDWR)
        handler.close_connection = True

    upstream.routes["/v1/chat/completions"] = dies
    reply = client.post("/v1/chat/completions", json={**CHAT, "stream": True}, buffered=False)
    body = b"".join(reply.response).decode()
    reply.close()
    frames = [f for f in body.split("\n\n") if f]
    assert frames[0] == "data: " + json.dumps(chunk_for("a"))
    error = json.loads(frames[-2].removeprefix("data: "))
    assert error["error"]["message"] == "The model service stopped while answering."
    assert frames[-1] == "data: [DONE]"
    assert app_pool(client).status()[0]["in_flight"] == 0


def test_closing_the_relay_closes_the_upstream_stream(client, upstream) -> None:
    upstream.routes["/v1/completions"] = upstream.stream_forever()
    reply = client.post(
        "/v1/completions", json={"model": "m", "prompt": "x", "stream": True}, buffered=False
    )
    pieces = iter(reply.response)
    assert next(pieces).startswith(b"data: ")
    assert app_pool(client).status()[0]["in_flight"] == 1
    reply.close()
    assert upstream.stream_closed.wait(5)
    assert app_pool(client).status()[0]["in_flight"] == 0


def test_an_unreachable_model_service_is_a_503(client, upstream) -> None:
    upstream.stop()
    reply = client.post("/v1/chat/completions", json=CHAT)
    assert reply.status_code == 503
    assert "model service is unavailable" in reply.json["error"]["message"]
    assert client.get("/v1/models").status_code == 503


def test_responses_and_embeddings_go_upstream_with_the_same_key_rules(client, upstream) -> None:
    embedded = {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1]}]}
    upstream.routes["/v1/embeddings"] = lambda h, _b: send_json(h, 200, embedded)
    reply = client.post("/v1/embeddings", json={"model": "m", "input": "hi"})
    assert (reply.status_code, reply.json) == (200, embedded)
    assert upstream.seen[-1][2] == {"model": "m", "input": "hi"}  # no max_tokens added

    answer = {"id": "resp_1", "object": "response", "status": "completed", "output": []}
    upstream.routes["/v1/responses"] = lambda h, _b: send_json(h, 200, answer)
    reply = client.post("/v1/responses", json={"model": "m", "input": "hi"})
    assert (reply.status_code, reply.json) == (200, answer)
    path, headers, _ = upstream.seen[-1]
    assert path == "/v1/responses" and headers["Authorization"] == "Bearer shared"
    anonymous = client.application.test_client()
    assert anonymous.post("/v1/responses", json={"model": "m", "input": "x"}).status_code == 401
    assert client.post("/v1/embeddings", json={"input": "x"}).json["error"]["param"] == "model"


def test_a_responses_stream_that_breaks_ends_with_its_own_error_event(client, upstream) -> None:
    created = b'event: response.created\ndata: {"type": "response.created"}\n\n'

    def dies(handler: Handler, _body: dict) -> None:
        handler.start_chunked()
        handler.chunk(created)
        handler.connection.shutdown(socket.SHUT_RDWR)
        handler.close_connection = True

    upstream.routes["/v1/responses"] = dies
    body = {"model": "m", "input": "hi", "stream": True}
    reply = client.post("/v1/responses", json=body, buffered=False)
    events = b"".join(reply.response).decode()
    reply.close()
    assert events.startswith(created.decode())
    last = events.strip().split("\n\n")[-1]
    assert last.startswith("event: error\ndata: ")
    assert json.loads(last.split("data: ", 1)[1])["type"] == "error"
    assert "[DONE]" not in events  # Responses streams have no [DONE]


def test_the_answer_ceiling_uses_each_endpoints_own_field() -> None:
    assert bound_request({"model": "m"}, 64, ("max_output_tokens",)) == {
        "model": "m",
        "max_output_tokens": 64,
    }
    assert bound_request({"model": "m"}, 64, ()) == {"model": "m"}  # embeddings
    assert bound_request({"model": "m"}, 64)["max_tokens"] == 64


def app_pool(client: FlaskClient):
    return client.application.extensions["chatstack_upstreams"]
