"""Conversations are trees, end to end in one process: edit, regenerate, switch and delete
branches over the chat socket and the REST routes, and the history the model is sent follows
the active path exactly (the upstream is a loopback fake that records every request)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from app_service.frames import parse_frame
from tests.unit.test_api_keys import PASSWORD
from tests.unit.test_app_metrics import (  # noqa: F401 - fixtures
    app,
    chat_socket,
    run_turn,
    upstream,
    wait_for_turn,
)
from tests.unit.test_upstream import sse


@pytest.fixture
def numbered(upstream):  # noqa: F811 - the fixture imported above
    """Every answer says which request it was: `answer 1`, `answer 2`, …"""
    counter = itertools.count(1)

    def behaviour(handler, _body) -> None:
        handler.start_chunked()
        handler.chunk(
            sse({"choices": [{"index": 0, "delta": {"content": f"answer {next(counter)}"}}]})
        )
        handler.chunk(sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
        handler.chunk(b"data: [DONE]\n\n")
        handler.end_chunked()

    upstream.routes["/v1/chat/completions"] = behaviour
    return upstream


@pytest.fixture
def chat(app, numbered):  # noqa: F811
    chat_, frames, conversation_id = chat_socket(app)
    client = app.test_client()
    client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    return chat_, frames, conversation_id, client


def sent_history(upstream) -> list[tuple[str, str]]:  # noqa: F811
    """The last chat request's messages, system prompt left out."""
    body = upstream.chat_requests()[-1]
    return [(m["role"], m["content"]) for m in body["messages"] if m["role"] != "system"]


def shown(client, cid: str) -> list[dict[str, Any]]:
    reply = client.get(f"/api/conversations/{cid}")
    assert reply.status_code == 200, reply.json
    return reply.json["messages"]


def texts(messages: list[dict[str, Any]]) -> list[str]:
    return [m["content"] for m in messages]


def send(chat_, cid: str, content: str) -> None:
    run_turn(chat_, {"type": "send", "conversation_id": cid, "content": content})


def test_editing_an_earlier_question_adds_a_branch_and_keeps_the_first(chat, numbered) -> None:
    chat_, frames, cid, client = chat
    send(chat_, cid, "first")
    send(chat_, cid, "second")
    first_q = shown(client, cid)[0]
    frames.clear()
    run_turn(
        chat_,
        {"type": "edit", "conversation_id": cid, "message_id": first_q["id"], "content": "1st"},
    )
    assert [f["type"] for f in frames] == ["user_message", "start", "delta", "done"]
    edited = frames[0]["message"]
    assert edited["parent_id"] is None and edited["sibling_ids"] == [first_q["id"], edited["id"]]
    assert frames[1]["message"]["parent_id"] == edited["id"]
    # The model saw the edited question alone: nothing of the branch it replaced.
    assert sent_history(numbered) == [("user", "1st")]
    path = shown(client, cid)
    assert texts(path) == ["1st", "answer 3"]
    assert path[0]["sibling_ids"] == [first_q["id"], edited["id"]]

    # Back to the first version: its whole branch, as it was; the next turn follows it.
    reply = client.put(f"/api/conversations/{cid}/branch", json={"message_id": first_q["id"]})
    assert reply.status_code == 200, reply.json
    assert texts(reply.json["messages"]) == ["first", "answer 1", "second", "answer 2"]
    send(chat_, cid, "third")
    assert sent_history(numbered) == [
        ("user", "first"),
        ("assistant", "answer 1"),
        ("user", "second"),
        ("assistant", "answer 2"),
        ("user", "third"),
    ]
    assert len(client.get(f"/api/conversations/{cid}/export?format=json").json["messages"]) == 8


def test_regenerating_twice_keeps_three_answers_to_page_through(chat, numbered) -> None:
    chat_, frames, cid, client = chat
    send(chat_, cid, "question")
    for _ in range(2):
        frames.clear()
        run_turn(chat_, {"type": "regenerate", "conversation_id": cid})
        assert frames[-1]["type"] == "done"
        assert "discarded_message_id" not in frames[-1]
        assert sent_history(numbered) == [("user", "question")]
    path = shown(client, cid)
    assert texts(path) == ["question", "answer 3"]
    answers = path[1]["sibling_ids"]
    assert len(answers) == 3 and answers[-1] == path[1]["id"]
    reply = client.put(f"/api/conversations/{cid}/branch", json={"message_id": answers[0]})
    assert texts(reply.json["messages"]) == ["question", "answer 1"]
    assert texts(shown(client, cid)) == ["question", "answer 1"]  # remembered


def test_deleting_a_branch_shows_a_sibling_and_markdown_exports_the_path(chat) -> None:
    chat_, _frames, cid, client = chat
    send(chat_, cid, "question")
    run_turn(chat_, {"type": "regenerate", "conversation_id": cid})
    shown_answer = shown(client, cid)[1]
    reply = client.delete(f"/api/conversations/{cid}/messages/{shown_answer['id']}")
    assert reply.status_code == 200, reply.json
    assert texts(reply.json["messages"]) == ["question", "answer 1"]
    assert reply.json["messages"][1]["sibling_ids"] == [reply.json["messages"][1]["id"]]
    markdown = client.get(f"/api/conversations/{cid}/export?format=md").get_data(as_text=True)
    assert "answer 1" in markdown and "answer 2" not in markdown
    exported = json.loads(client.get(f"/api/conversations/{cid}/export?format=json").data)
    assert exported["active_leaf_id"] == reply.json["messages"][1]["id"]
    assert [m["parent_id"] for m in exported["messages"]] == [None, exported["messages"][0]["id"]]


def test_branch_routes_refuse_what_they_cannot_do(app, chat, upstream) -> None:  # noqa: F811
    chat_, frames, cid, client = chat
    send(chat_, cid, "question")
    answer = shown(client, cid)[1]
    for method, path, body in [
        ("put", f"/api/conversations/{cid}/branch", {"message_id": "msg_nope"}),
        ("delete", f"/api/conversations/{cid}/messages/msg_nope", None),
    ]:
        reply = getattr(client, method)(path, json=body)
        assert reply.status_code == 404 and reply.json["error"]["code"] == "message_not_found"
    for body in ({}, {"message_id": 5}, {"message_id": "x", "more": 1}):
        reply = client.put(f"/api/conversations/{cid}/branch", json=body)
        assert reply.status_code == 400 and reply.json["error"]["type"] == "invalid_request_error"
    # Another user sees none of it.
    other = app.test_client()
    other.post("/api/auth/register", json={"username": "bob", "password": PASSWORD})
    reply = other.put(f"/api/conversations/{cid}/branch", json={"message_id": answer["id"]})
    assert reply.status_code == 404
    # An answer is not edited; a message of nowhere is not found. Nothing was stored.
    frames.clear()
    for message_id, code in ((answer["id"], "not_editable"), ("msg_nope", "message_not_found")):
        run_turn(
            chat_,
            {"type": "edit", "conversation_id": cid, "message_id": message_id, "content": "x"},
        )
        assert frames[-1]["type"] == "error" and frames[-1]["code"] == code
    assert texts(shown(client, cid)) == ["question", "answer 1"]

    # While an answer is written, its conversation's branches stay as they are.
    upstream.routes["/v1/chat/completions"] = upstream.stream_forever()
    chat_.handle(_frame({"type": "regenerate", "conversation_id": cid}))
    reply = client.put(f"/api/conversations/{cid}/branch", json={"message_id": answer["id"]})
    assert reply.status_code == 409 and reply.json["error"]["code"] == "busy"
    reply = client.delete(f"/api/conversations/{cid}/messages/{answer['id']}")
    assert reply.status_code == 409
    chat_.handle(_frame({"type": "stop", "conversation_id": cid}))
    wait_for_turn(chat_, cid)


def _frame(data: dict[str, Any]):
    return parse_frame(json.dumps(data))
