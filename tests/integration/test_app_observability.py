"""The app service's metrics, per-turn request ids and admin status page, against a fresh
app service (its first account is the admin) in front of the real model API."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from chatstack import __version__
from tests.conftest import API_KEY, MODEL
from tests.integration.chat_client import ChatClient, new_conversation
from tests.integration.conftest import app_service_with, register
from tests.servers import RunningServer


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory, model_api: RunningServer
) -> Iterator[RunningServer]:
    yield from app_service_with(
        tmp_path_factory, model_api, "app_observability", STATUS_INTERVAL_SECONDS="1"
    )


@pytest.fixture(scope="module")
def admin(app: RunningServer) -> requests.Session:
    return register(app.url, "admin")  # the first account of a fresh database


def metric(app: RunningServer, name: str, **labels: str) -> float | None:
    reply = requests.get(app.url + "/metrics", timeout=5)
    assert reply.status_code == 200
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


def whole_log(server: RunningServer) -> str:
    """All of a server's log (RunningServer.log() keeps only the tail)."""
    server.log()  # flushes
    return Path(server.log_path).read_text(errors="replace")


def wait_for(check, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.1)


def test_a_chat_turn_is_counted_and_its_id_reaches_both_logs(app, admin, model_api) -> None:
    complete_before = metric(app, "chatstack_app_chat_turns_total", outcome="complete")
    cid = new_conversation(app.url, admin)
    chat = ChatClient(app.url, admin)
    assert metric(app, "chatstack_app_open_websockets") == 1.0
    chat.send(type="send", conversation_id=cid, content="Say hi.", settings={"max_tokens": 8})
    first = chat.recv()
    assert first["type"] == "user_message"
    turn_id = first["request_id"]
    assert re.fullmatch(r"[A-Za-z0-9._:-]+\.1", turn_id)
    done, frames = chat.until("done")
    assert done["request_id"] == turn_id
    assert all("request_id" not in f for f in frames if f["type"] == "delta")
    assert metric(app, "chatstack_app_chat_turns_total", outcome="complete") == complete_before + 1

    # The app logged the turn's end under its id, and the model API served it under the same.
    turn_lines = [line for line in whole_log(app).splitlines() if f"[{turn_id}]" in line]
    assert any(f"chat turn complete: conversation {cid}" in line for line in turn_lines)
    model_lines = [line for line in whole_log(model_api).splitlines() if f"[{turn_id}]" in line]
    assert any("POST /v1/chat/completions 200" in line for line in model_lines)

    # The next turn on the same socket gets the next number.
    chat.send(type="regenerate", conversation_id=cid, settings={"max_tokens": 8})
    start = chat.recv()
    assert start["type"] == "start"
    assert start["request_id"] == turn_id.removesuffix(".1") + ".2"
    chat.until("done")
    chat.close()
    wait_for(lambda: metric(app, "chatstack_app_open_websockets") == 0.0)


def test_uploads_are_counted_by_outcome(app, admin) -> None:
    before = {
        o: metric(app, "chatstack_app_uploads_total", outcome=o)
        for o in ("accepted", "unsupported")
    }
    ok = admin.post(app.url + "/api/files", files={"file": ("a.txt", b"Llamas hum.")}, timeout=30)
    assert ok.status_code == 201, ok.text
    refused = admin.post(app.url + "/api/files", files={"file": ("a.exe", b"MZ")}, timeout=30)
    assert refused.status_code == 415
    assert metric(app, "chatstack_app_uploads_total", outcome="accepted") == before["accepted"] + 1
    assert (
        metric(app, "chatstack_app_uploads_total", outcome="unsupported")
        == before["unsupported"] + 1
    )


def test_upstream_gauges_and_version(app, model_api) -> None:
    assert metric(app, "chatstack_app_info", version=__version__) == 1.0
    assert metric(app, "chatstack_app_upstream_healthy", upstream=model_api.url) == 1.0
    assert metric(app, "chatstack_app_upstream_in_flight", upstream=model_api.url) == 0.0


def test_the_status_page_is_for_the_admin_only(app, admin) -> None:
    assert requests.get(app.url + "/api/admin/status", timeout=5).status_code == 401
    other = register(app.url)
    reply = other.get(app.url + "/api/admin/status", timeout=5)
    assert reply.status_code == 403
    assert reply.json()["error"]["type"] == "permission_error"


def model_api_exports(model_api: RunningServer, name: str) -> bool:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    reply = requests.get(model_api.url + "/metrics", headers=headers, timeout=5)
    return reply.status_code == 200 and f"\n{name}" in reply.text


def test_the_admin_status_shows_the_model_api(app, admin, model_api) -> None:
    cid = new_conversation(app.url, admin)
    chat = ChatClient(app.url, admin)
    chat.send(type="send", conversation_id=cid, content="Say hi.", settings={"max_tokens": 8})
    chat.until("done")
    chat.close()

    def history() -> list[dict]:
        body = admin.get(app.url + "/api/admin/status", timeout=5).json()
        return body["upstreams"][0]["history"]

    if model_api_exports(model_api, "chatstack_model_completion_tokens_total"):
        # The turn's tokens and first token fall between two samples a second apart.
        wait_for(lambda: any((p["tokens_per_s"] or 0) > 0 for p in history()))
        assert any((p["ttft_avg_s"] or 0) > 0 for p in history())
    wait_for(lambda: len(history()) >= 2)
    reply = admin.get(app.url + "/api/admin/status", timeout=5)
    assert reply.status_code == 200
    body = reply.json()
    assert body["app"]["status"] == "ok" and body["app"]["version"] == __version__
    assert body["app"]["uptime_s"] > 0
    assert isinstance(body["app"]["open_websockets"], int)
    assert body["interval_s"] == 1.0
    [upstream] = body["upstreams"]
    assert upstream["url"] == model_api.url
    assert upstream["healthy"] is True and upstream["error"] is None
    assert upstream["health"]["status"] == "ok" and upstream["health"]["model"] == MODEL
    assert {"running", "waiting", "device", "dtype"} <= upstream["health"].keys()
    assert isinstance(upstream["gpus"]["available"], bool)
    for device in upstream["gpus"]["devices"]:
        assert isinstance(device["index"], int) and isinstance(device["name"], str)
    for point in upstream["history"]:
        assert set(point) == {
            "t",
            "tokens_per_s",
            "ttft_avg_s",
            "running",
            "waiting",
            "gpu_utilization_pct",
            "gpu_memory_used_mb",
        }
        assert point["tokens_per_s"] is None or point["tokens_per_s"] >= 0
        assert isinstance(point["running"], int)  # from /metrics, or /health without it
    times = [p["t"] for p in upstream["history"]]
    assert times == sorted(times) and times[-1] <= time.time() + 1
