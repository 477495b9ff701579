"""A dying model API, a killed app service: conversations survive, service resumes.

These tests kill and restart servers, so they run their own pair instead of the shared ones.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.chat_client import LONG, LONG_ANSWER, ChatClient, new_conversation
from tests.integration.conftest import API_KEY, register
from tests.servers import RunningServer, free_port, start_app_service, start_model_api


class Stack:
    """A model API and an app service that tests may kill and start again."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.model_port = free_port()
        self.app_port = free_port()
        self.model_api = self.start_model_api()
        self.app = self.start_app()

    def start_model_api(self) -> RunningServer:
        server = start_model_api(self.tmp, port=self.model_port, MODEL_API_KEY=API_KEY)
        server.wait_healthy()
        return server

    def start_app(self) -> RunningServer:
        server = start_app_service(
            self.tmp,
            f"http://127.0.0.1:{self.model_port}",
            port=self.app_port,
            MODEL_API_KEY=API_KEY,
            UPSTREAM_HEALTH_SECONDS="0.5",
        )
        server.wait_healthy("/api/health")
        return server

    def wait_model_reachable(self, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if requests.get(self.app.url + "/api/health").json()["model_api"]["reachable"]:
                return
            time.sleep(0.2)
        raise AssertionError("the app service never saw the model API come back")

    def stop(self) -> None:
        self.app.stop()
        self.model_api.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    pair = Stack(tmp_path_factory.mktemp("resilience"))
    try:
        yield pair
    finally:
        pair.stop()


def messages(stack: Stack, session: requests.Session, cid: str) -> list[dict]:
    reply = session.get(f"{stack.app.url}/api/conversations/{cid}")
    assert reply.status_code == 200, reply.text
    return reply.json()["messages"]


def test_model_api_dying_mid_answer_fails_the_turn_then_chat_resumes(stack: Stack) -> None:
    user = register(stack.app.url)
    cid = new_conversation(stack.app.url, user)
    chat = ChatClient(stack.app.url, user)
    chat.send(type="send", conversation_id=cid, content=LONG_ANSWER, settings=LONG)
    received = [chat.until("delta")[0]["content"] for _ in range(3)]
    stack.model_api.kill()
    killed_at = time.monotonic()
    error, frames = chat.until("error", "done", timeout=30)
    assert error["type"] == "error"
    assert time.monotonic() - killed_at < 15
    assert error["code"] == "upstream_failed" and error["error"]
    received += [f["content"] for f in frames if f["type"] == "delta"]
    assert error["message"]["status"] == "failed"
    assert error["message"]["content"] == "".join(received)
    stored = messages(stack, user, cid)
    assert [(m["role"], m["status"]) for m in stored] == [
        ("user", "complete"),
        ("assistant", "failed"),
    ]

    stack.model_api = stack.start_model_api()
    stack.wait_model_reachable()
    chat.send(
        type="send",
        conversation_id=cid,
        content="Say hi.",
        settings={"temperature": 0, "max_tokens": 8},
    )
    done, _ = chat.until("done", "error")
    assert done["type"] == "done" and done["message"]["status"] == "complete"
    chat.close()


def test_app_service_killed_mid_answer_keeps_history_intact(stack: Stack) -> None:
    user = register(stack.app.url)
    cid = new_conversation(stack.app.url, user)
    chat = ChatClient(stack.app.url, user)
    chat.send(
        type="send",
        conversation_id=cid,
        content="Say hello.",
        settings={"temperature": 0, "max_tokens": 8},
    )
    first_answer = chat.until("done")[0]["message"]
    chat.send(type="send", conversation_id=cid, content=LONG_ANSWER, settings=LONG)
    chat.until("start")
    received = ""
    deadline = time.monotonic() + 2.5  # past the once-a-second partial save
    while time.monotonic() < deadline:
        received += chat.until("delta")[0]["content"]
    stack.app.kill()

    stack.app = stack.start_app()
    stored = messages(stack, user, cid)  # the session cookie outlives the restart
    assert [m["role"] for m in stored] == ["user", "assistant", "user", "assistant"]
    assert stored[1]["content"] == first_answer["content"]
    assert stored[1]["status"] == "complete"
    interrupted = stored[3]
    assert interrupted["status"] == "failed"
    assert "restarted" in interrupted["error"]
    assert interrupted["content"] and received.startswith(interrupted["content"])

    # Continue goes on from the saved text, in the same message.
    chat = ChatClient(stack.app.url, user)
    chat.send(type="continue", conversation_id=cid, settings={"temperature": 0, "max_tokens": 8})
    start, _ = chat.until("start")
    assert (start["message"]["id"], start["message"]["content"]) == (
        interrupted["id"],
        interrupted["content"],
    )
    done, _ = chat.until("done", "error")
    assert done["type"] == "done", done
    continued = done["message"]
    assert continued["status"] == "complete" and continued["error"] is None
    assert continued["content"].startswith(interrupted["content"])
    assert len(continued["content"]) > len(interrupted["content"])
    assert messages(stack, user, cid)[3] == continued
    chat.close()

    db = sqlite3.connect(stack.tmp / "data" / "chatstack.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
