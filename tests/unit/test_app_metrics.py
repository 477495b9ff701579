"""The app service's /metrics and per-turn request ids (Flask test client and the chat socket
with a stand-in WebSocket; the upstream is a loopback fake)."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from app_service.app import create_app
from app_service.frames import parse_frame
from app_service.settings import Settings
from app_service.ws_chat import ChatSocket
from chatstack import __version__
from chatstack.logs import REQUEST_ID_HEADER, RequestIdFilter
from tests.unit.test_api_keys import login
from tests.unit.test_upstream import FakeUpstream, dead_url, send_json, sse


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    yield fake
    fake.stop()


@pytest.fixture
def app(tmp_path: Path, upstream: FakeUpstream, request: pytest.FixtureRequest) -> Iterator[Flask]:
    """The app service in-process on a loopback fake upstream; a test changes its settings
    with `@pytest.mark.parametrize("app", [{"name": value}], indirect=True)`."""
    overrides = getattr(request, "param", {})
    defaults = {
        "cookie_secure": False,
        "max_connections": 64,
        "max_upload_bytes": 4000,
        "chat_max_tokens": 16,  # the fake model has a context of 99 tokens
        "auto_titles": False,  # no title requests unless asked (test_titles.py)
    }
    settings = Settings(
        data_dir=tmp_path, model_api_urls=(upstream.url,), **{**defaults, **overrides}
    )
    app = create_app(settings)
    yield app
    app.extensions["chatstack_status"].stop()
    app.extensions["chatstack_upstreams"].stop()


def metric(app: Flask, name: str, **labels: str) -> float | None:
    """One sample's value from the app's /metrics as Prometheus reads it."""
    reply = app.test_client().get("/metrics")
    assert reply.status_code == 200
    assert reply.mimetype == "text/plain"
    for family in text_string_to_metric_families(reply.get_data(as_text=True)):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


# ---- what /metrics lists -------------------------------------------------------------------


def test_metrics_is_open_and_lists_every_series_from_the_start(app, upstream) -> None:
    assert metric(app, "chatstack_app_info", version=__version__) == 1.0
    assert metric(app, "chatstack_app_open_websockets") == 0.0
    for outcome in ("complete", "stopped", "failed"):
        assert metric(app, "chatstack_app_chat_turns_total", outcome=outcome) == 0.0
    for outcome in ("accepted", "invalid", "too_large", "unsupported", "unreadable", "failed"):
        assert metric(app, "chatstack_app_uploads_total", outcome=outcome) == 0.0
    assert metric(app, "chatstack_app_upstream_in_flight", upstream=upstream.url) == 0.0
    # The shared HTTP counter (chatstack/metrics.py) is on the same registry.
    assert metric(
        app, "chatstack_http_requests_total", route="/metrics", method="GET", status="200"
    )


def test_upstream_health_is_read_from_the_pool_at_scrape_time(tmp_path, upstream) -> None:
    down = dead_url()
    app = create_app(
        Settings(data_dir=tmp_path, model_api_urls=(upstream.url, down), cookie_secure=False)
    )
    try:
        app.extensions["chatstack_upstreams"].check_health()
        assert metric(app, "chatstack_app_upstream_healthy", upstream=upstream.url) == 1.0
        assert metric(app, "chatstack_app_upstream_healthy", upstream=down) == 0.0
    finally:
        app.extensions["chatstack_status"].stop()
        app.extensions["chatstack_upstreams"].stop()


# ---- uploads by outcome --------------------------------------------------------------------


def upload(client: FlaskClient, name: str | None, data: bytes) -> int:
    form = {"file": (io.BytesIO(data), name)} if name is not None else {"other": "x"}
    return client.post("/api/files", data=form).status_code


@pytest.mark.parametrize(
    ("name", "data", "status", "outcome"),
    [
        ("notes.txt", b"Some notes about llamas.", 201, "accepted"),
        (None, b"", 400, "invalid"),
        ("big.txt", b"x" * 5000, 413, "too_large"),  # over max_upload_bytes
        ("huge.txt", b"x" * 80_000, 413, "too_large"),  # over the whole request's limit
        ("tool.exe", b"MZ", 415, "unsupported"),
        ("fake.pdf", b"not a pdf", 415, "unsupported"),
        ("empty.txt", b"   ", 422, "unreadable"),
    ],
)
def test_each_upload_is_counted_by_outcome(app, name, data, status, outcome) -> None:
    client = login(app, "alice")
    assert upload(client, name, data) == status
    assert metric(app, "chatstack_app_uploads_total", outcome=outcome) == 1.0
    others = {"accepted", "invalid", "too_large", "unsupported", "unreadable", "failed"} - {outcome}
    assert all(metric(app, "chatstack_app_uploads_total", outcome=o) == 0.0 for o in others)


# ---- chat turns: outcome, request id, log line ---------------------------------------------


class TurnLog(logging.Handler):
    """Turn lines as the service's own handler sees them: stamped in the turn's thread."""

    def __init__(self) -> None:
        super().__init__()
        self.addFilter(RequestIdFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def turn_log() -> Iterator[TurnLog]:
    handler = TurnLog()
    logger = logging.getLogger("app_service.chat")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def chat_socket(app: Flask) -> tuple[ChatSocket, list[dict[str, Any]], str]:
    """A socket for a new user with a conversation, as the /ws route would make it, and the
    frames of the user's turns as every socket of the user gets them."""
    client = login(app, "alice")
    user_id = client.get("/api/auth/me").json["user"]["id"]
    conversation_id = client.post("/api/conversations", json={}).json["id"]
    registry = app.extensions["chatstack_turns"]
    chat = ChatSocket(None, registry, user_id, connection_id="conn-1a2b")
    frames: list[dict[str, Any]] = []
    registry.subscribe(user_id, frames.append)
    return chat, frames, conversation_id


def run_turn(chat: ChatSocket, frame: dict[str, Any]) -> None:
    chat.handle(parse_frame(json.dumps(frame)))
    wait_for_turn(chat, frame["conversation_id"])


def wait_for_turn(chat: ChatSocket, conversation_id: str) -> None:
    turn = chat.registry.running(chat.user_id, conversation_id)
    assert turn is None or turn.ended.wait(10)


def stream_with_usage(handler, _body) -> None:
    handler.start_chunked()
    for word in ("Hel", "lo"):
        handler.chunk(sse({"choices": [{"index": 0, "delta": {"content": word}}]}))
    handler.chunk(sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    usage = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    handler.chunk(sse({"choices": [], "usage": usage}))
    handler.chunk(b"data: [DONE]\n\n")
    handler.end_chunked()


def test_each_turn_has_its_own_id_in_frames_upstream_and_log(app, upstream, turn_log) -> None:
    upstream.routes["/v1/chat/completions"] = stream_with_usage
    chat, ws, conversation_id = chat_socket(app)
    for n in (1, 2):
        ws.clear()
        run_turn(chat, {"type": "send", "conversation_id": conversation_id, "content": "hi"})
        turn_id = f"conn-1a2b.{n}"
        types = [f["type"] for f in ws]
        assert types == ["user_message", "start", "delta", "delta", "done"]
        for frame in ws:
            assert frame.get("request_id") == (None if frame["type"] == "delta" else turn_id)
        # The turn's thread called the model API, and it sent the turn's id.
        chat_calls = [h for path, h, _ in upstream.seen if path == "/v1/chat/completions"]
        assert chat_calls[-1][REQUEST_ID_HEADER] == turn_id
        record = turn_log.records[-1]
        assert record.request_id == turn_id  # type: ignore[attr-defined]
        assert record.getMessage().startswith(f"chat turn complete: conversation {conversation_id}")
        assert (record.outcome, record.completion_tokens) == ("complete", 2)  # type: ignore[attr-defined]
    assert metric(app, "chatstack_app_chat_turns_total", outcome="complete") == 2.0


def test_a_turn_that_fails_before_answering_counts_as_failed(app, turn_log) -> None:
    chat, ws, _ = chat_socket(app)
    run_turn(chat, {"type": "send", "conversation_id": "conv_" + "0" * 32, "content": "hi"})
    [frame] = ws
    assert frame["type"] == "error" and frame["code"] == "conversation_not_found"
    assert frame["request_id"] == "conn-1a2b.1"
    assert turn_log.records[-1].outcome == "failed"  # type: ignore[attr-defined]
    assert metric(app, "chatstack_app_chat_turns_total", outcome="failed") == 1.0
    assert metric(app, "chatstack_app_chat_turns_total", outcome="complete") == 0.0


def test_a_failed_upstream_and_a_stopped_answer_are_counted(app, upstream) -> None:
    chat, ws, conversation_id = chat_socket(app)
    upstream.routes["/v1/chat/completions"] = lambda h, _b: send_json(
        h, 500, {"error": {"message": "boom", "type": "server_error"}}
    )
    run_turn(chat, {"type": "send", "conversation_id": conversation_id, "content": "hi"})
    assert ws[-1]["code"] == "upstream_failed"
    assert metric(app, "chatstack_app_chat_turns_total", outcome="failed") == 1.0

    upstream.routes["/v1/chat/completions"] = upstream.stream_forever()
    chat.handle(parse_frame(json.dumps({"type": "regenerate", "conversation_id": conversation_id})))
    deadline = time.monotonic() + 10
    while not any(f["type"] == "delta" for f in ws) and time.monotonic() < deadline:
        time.sleep(0.02)
    chat.handle(parse_frame('{"type": "stop"}'))
    wait_for_turn(chat, conversation_id)
    assert ws[-1]["type"] == "done" and ws[-1]["request_id"] == "conn-1a2b.2"
    assert ws[-1]["message"]["status"] == "stopped"
    assert metric(app, "chatstack_app_chat_turns_total", outcome="stopped") == 1.0
