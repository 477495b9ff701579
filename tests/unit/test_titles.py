"""Titles: a conversation is called by its first words, then by the model's few words after
its first answer; a rename always wins, and a failure leaves the first words."""

from __future__ import annotations

import threading
import time

import pytest

from app_service.titles import PROMPT, clean_title, first_words
from tests.unit.test_api_keys import PASSWORD
from tests.unit.test_app_metrics import (  # noqa: F401 - fixtures
    app,
    chat_socket,
    run_turn,
    stream_with_usage,
    upstream,
)
from tests.unit.test_upstream import send_json, sse

TITLED = pytest.mark.parametrize("app", [{"auto_titles": True}], indirect=True)


def test_first_words_are_the_first_line_cut_at_a_word_without_an_ellipsis() -> None:
    assert first_words("  Plan a trip\nto Lisbon") == "Plan a trip"
    long = "word " * 40
    cut = first_words(long)
    assert len(cut) <= 80 and cut.endswith("word") and "…" not in cut
    assert first_words("   ") == "New chat"


@pytest.mark.parametrize(
    ("reply", "title"),
    [
        ('"Trip Planning Ideas."', "Trip Planning Ideas"),
        ("Title: Lisbon trams\nmore text", "Lisbon trams"),
        ("**Recette de crêpes**", "Recette de crêpes"),
        ("  ", None),
        ("!", None),
        ("x" * 200, "x" * 60),
    ],
)
def test_the_models_reply_is_cleaned_into_a_title(reply: str, title: str | None) -> None:
    assert clean_title(reply) == title


def answers_and_titles(title_reply):
    """The fake model: a title request (its system prompt is titles.PROMPT) gets
    `title_reply(handler)`, a chat turn "Hello"."""

    def behaviour(handler, body) -> None:
        if body["messages"][0]["content"] == PROMPT:
            title_reply(handler, body)
        else:
            stream_with_usage(handler, body)

    return behaviour


def say(text: str):
    def reply(handler, body) -> None:
        assert body["max_tokens"] <= 16 and body["temperature"] == 0
        handler.start_chunked()
        handler.chunk(sse({"choices": [{"index": 0, "delta": {"content": text}}]}))
        handler.chunk(b"data: [DONE]\n\n")
        handler.end_chunked()

    return reply


def title_frames(frames: list[dict], timeout: float = 5.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [f for f in frames if f["type"] == "conversation"]
        if found:
            return found
        time.sleep(0.02)
    return []


def listed(flask_app, cid: str) -> dict:
    client = flask_app.test_client()
    client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    return client.get(f"/api/conversations/{cid}").json


@TITLED
def test_the_model_titles_a_conversation_after_its_first_answer(app, upstream) -> None:  # noqa: F811
    upstream.routes["/v1/chat/completions"] = answers_and_titles(say('"Greeting Exchange."'))
    chat, frames, cid = chat_socket(app)
    run_turn(chat, {"type": "send", "conversation_id": cid, "content": "Say hello\nplease"})
    user_message = next(f for f in frames if f["type"] == "user_message")
    assert user_message["conversation"]["title"] == "Say hello"  # the first words, at once
    assert frames.index(user_message) < [f["type"] for f in frames].index("done")
    [titled] = title_frames(frames)
    assert titled["conversation"]["title"] == "Greeting Exchange"
    assert listed(app, cid)["title"] == "Greeting Exchange"
    # The title request came after the answer was complete, with the exchange in it.
    title_request = upstream.chat_requests()[-1]
    assert "Say hello" in title_request["messages"][1]["content"]
    assert "Hello" in title_request["messages"][1]["content"]
    # Only the first answer is followed by one.
    run_turn(chat, {"type": "send", "conversation_id": cid, "content": "Again"})
    time.sleep(0.3)
    assert len(upstream.chat_requests()) == 3


@TITLED
def test_a_rename_while_the_model_writes_wins(app, upstream) -> None:  # noqa: F811
    asked, release = threading.Event(), threading.Event()

    def slow(handler, body) -> None:
        asked.set()
        release.wait(5)
        say("Model Title")(handler, body)

    upstream.routes["/v1/chat/completions"] = answers_and_titles(slow)
    chat, frames, cid = chat_socket(app)
    run_turn(chat, {"type": "send", "conversation_id": cid, "content": "Hi"})
    assert asked.wait(5)
    client = app.test_client()
    client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    reply = client.patch(f"/api/conversations/{cid}", json={"title": "Mine"})
    assert reply.status_code == 200
    release.set()
    time.sleep(0.5)
    assert listed(app, cid)["title"] == "Mine"
    titles = [f["conversation"]["title"] for f in frames if f["type"] == "conversation"]
    assert titles == ["Mine"]  # the rename's own frame; none from the model


@TITLED
@pytest.mark.parametrize(
    "failure",
    [
        lambda h, _b: send_json(h, 500, {"error": {"message": "boom", "type": "server_error"}}),
        say("  "),
    ],
    ids=["upstream-error", "empty-reply"],
)
def test_when_the_model_gives_no_title_the_first_words_stay(app, upstream, failure) -> None:  # noqa: F811
    upstream.routes["/v1/chat/completions"] = answers_and_titles(failure)
    chat, frames, cid = chat_socket(app)
    run_turn(chat, {"type": "send", "conversation_id": cid, "content": "What is a kumquat?"})
    time.sleep(0.5)
    assert len(upstream.chat_requests()) == 2  # it was asked
    assert listed(app, cid)["title"] == "What is a kumquat?"
    assert title_frames(frames, timeout=0.1) == []


@TITLED
def test_a_conversation_created_with_a_title_is_not_retitled(app, upstream) -> None:  # noqa: F811
    upstream.routes["/v1/chat/completions"] = answers_and_titles(say("Other"))
    chat, _frames, _ = chat_socket(app)
    client = app.test_client()
    client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    cid = client.post("/api/conversations", json={"title": "Named"}).json["id"]
    run_turn(chat, {"type": "send", "conversation_id": cid, "content": "Hi"})
    time.sleep(0.3)
    assert len(upstream.chat_requests()) == 1
    assert listed(app, cid)["title"] == "Named"
