"""Answers owned by the server: they outlive their socket, resume live on any socket of the
account (sequence numbers prove no gap and no repeat), stop from any tab, and continue where
they were cut — against the real app service and the real model (docs/protocol.md)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from tests.integration.chat_client import LONG, LONG_ANSWER, ChatClient, new_conversation
from tests.integration.conftest import app_service_with, register
from tests.servers import RunningServer

SHORT_QUESTION = "Name three colours."
# At temperature 0 this runs well past 48 tokens: long enough to cut and continue.
STORY = "Tell me a short story about a lighthouse keeper."


def stored_messages(app: RunningServer, session: requests.Session, cid: str) -> list[dict]:
    reply = session.get(f"{app.url}/api/conversations/{cid}")
    assert reply.status_code == 200, reply.text
    return reply.json()["messages"]


def follow(chat: ChatClient, cid: str) -> tuple[str, list[int], dict]:
    """Read one conversation's frames to its final one: (the text of its deltas, their seqs,
    the final frame); a `resume` resets the text to its snapshot."""
    text, seqs = "", []
    while True:
        frame = chat.recv()
        if frame.get("conversation_id") != cid:
            continue
        if frame["type"] == "resume":
            text = (frame["message"] or {}).get("content", "")
            seqs = [frame["seq"]]
        elif frame["type"] == "start":
            text = frame["message"]["content"]
        elif frame["type"] == "delta":
            text += frame["content"]
            seqs.append(frame["seq"])
        elif frame["type"] in ("done", "error"):
            return text, seqs, frame


def assert_consecutive(seqs: list[int]) -> None:
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a gap or a repeat"


def test_an_answer_outlives_its_socket_and_resumes_on_a_new_one(app_server, new_user) -> None:
    user = new_user()
    cid = new_conversation(app_server.url, user)
    first = ChatClient(app_server.url, user)
    first.send(
        type="send", conversation_id=cid, content=LONG_ANSWER, settings={**LONG, "max_tokens": 600}
    )
    first.until("delta")
    first.close()
    time.sleep(2)

    second = ChatClient(app_server.url, user)
    resume = second.recv()
    assert resume["type"] == "resume" and resume["conversation_id"] == cid
    assert resume["message"]["status"] == "streaming"
    assert resume["seq"] > 1 and resume["message"]["content"]  # it went on meanwhile
    text, seqs, done = follow_after(second, cid, resume)
    assert done["type"] == "done", done
    assert seqs[0] == resume["seq"] + 1 and len(seqs) > 1, "no live deltas after the resume"
    assert_consecutive(seqs)
    assert done["message"]["status"] == "complete"
    assert done["message"]["content"] == text
    [_, stored] = stored_messages(app_server, user, cid)
    assert (stored["status"], stored["content"]) == ("complete", text)
    second.close()


def follow_after(chat: ChatClient, cid: str, resume: dict) -> tuple[str, list[int], dict]:
    text, seqs, final = follow(chat, cid)
    return resume["message"]["content"] + text, seqs, final


def test_two_sockets_see_the_same_answer_and_either_stops_it(app_server, new_user) -> None:
    user = new_user()
    cid = new_conversation(app_server.url, user)
    tab_a, tab_b = ChatClient(app_server.url, user), ChatClient(app_server.url, user)
    tab_a.send(type="send", conversation_id=cid, content=LONG_ANSWER, settings=LONG)
    seen_by = {}
    for name, tab in (("a", tab_a), ("b", tab_b)):
        user_message, _ = tab.until("user_message")
        assert user_message["conversation_id"] == cid
        tab.until("start")
        seen_by[name] = [tab.until("delta")[0] for _ in range(5)]
    assert seen_by["a"] == seen_by["b"]  # identical deltas, seq included

    # A second send to the generating conversation is busy, from either tab.
    tab_b.send(type="send", conversation_id=cid, content="And another thing")
    busy, _ = tab_b.until("error")
    assert (busy["code"], busy["conversation_id"]) == ("busy", cid)

    tab_b.send(type="stop", conversation_id=cid)
    ends = []
    for tab in (tab_a, tab_b):
        ends.append(follow(tab, cid)[2])
    assert all(f["type"] == "done" and f["message"]["status"] == "stopped" for f in ends)
    assert ends[0]["message"] == ends[1]["message"]
    assert [m["role"] for m in stored_messages(app_server, user, cid)] == ["user", "assistant"]
    tab_a.close()
    tab_b.close()


def test_other_conversations_generate_at_the_same_time(app_server, new_user) -> None:
    user = new_user()
    first, second = new_conversation(app_server.url, user), new_conversation(app_server.url, user)
    chat = ChatClient(app_server.url, user)
    chat.send(type="send", conversation_id=first, content=LONG_ANSWER, settings=LONG)
    chat.until("start")
    chat.send(
        type="send", conversation_id=second, content=SHORT_QUESTION, settings={"max_tokens": 8}
    )
    _, _, done = follow(chat, second)
    assert done["type"] == "done" and done["message"]["status"] == "complete"
    chat.send(type="stop", conversation_id=first)
    _, _, stopped = follow(chat, first)
    assert stopped["message"]["status"] == "stopped"
    chat.close()


def test_resume_frame_answers_with_the_text_so_far_or_idle(app_server, new_user) -> None:
    user = new_user()
    cid = new_conversation(app_server.url, user)
    chat = ChatClient(app_server.url, user)
    chat.send(type="resume", conversation_id=cid)
    assert chat.until("idle")[0]["conversation_id"] == cid
    chat.send(type="send", conversation_id=cid, content=LONG_ANSWER, settings=LONG)
    first, _ = chat.until("delta")
    chat.send(type="resume", conversation_id=cid)
    resume, before = chat.until("resume")
    deltas = [first] + [f for f in before if f["type"] == "delta"]
    received = "".join(f["content"] for f in deltas)
    last_seq = deltas[-1]["seq"]
    assert resume["seq"] >= last_seq
    assert resume["message"]["content"].startswith(received)
    chat.send(type="stop", conversation_id=cid)
    chat.until("done")
    chat.close()


def test_deleting_the_conversation_stops_its_answer(app_server, new_user) -> None:
    user = new_user()
    cid = new_conversation(app_server.url, user)
    chat = ChatClient(app_server.url, user)
    chat.send(type="send", conversation_id=cid, content=LONG_ANSWER, settings=LONG)
    chat.until("delta")
    assert user.delete(f"{app_server.url}/api/conversations/{cid}").status_code == 204
    error, _ = chat.until("error", timeout=10)
    assert (error["code"], error["conversation_id"]) == ("conversation_not_found", cid)
    chat.close()


def test_an_answer_cut_by_length_continues_to_its_end(app_server, new_user) -> None:
    user = new_user()
    cid = new_conversation(app_server.url, user)
    chat = ChatClient(app_server.url, user)
    chat.send(
        type="send",
        conversation_id=cid,
        content=SHORT_QUESTION,
        settings={"temperature": 0, "max_tokens": 4},
    )
    cut, _ = chat.until("done")
    assert cut["finish_reason"] == "length"
    chat.send(type="continue", conversation_id=cid, settings={"temperature": 0, "max_tokens": 200})
    start, _ = chat.until("start")
    assert start["message"]["id"] == cut["message"]["id"]
    assert start["message"]["content"] == cut["message"]["content"]
    text, seqs, done = follow(chat, cid)
    assert done["type"] == "done", done
    assert_consecutive(seqs)
    message = done["message"]
    assert message["id"] == cut["message"]["id"]
    assert (message["status"], done["finish_reason"]) == ("complete", "stop")
    assert message["content"] == cut["message"]["content"] + text
    assert message["usage"]["completion_tokens"] > 4  # both parts counted
    [_, stored] = stored_messages(app_server, user, cid)
    assert stored == message
    # A complete answer that ended by itself has nothing to continue.
    chat.send(type="continue", conversation_id=cid)
    assert chat.until("error")[0]["code"] == "nothing_to_continue"
    chat.close()


@pytest.fixture(scope="module")
def exact_app(
    tmp_path_factory: pytest.TempPathFactory, float32_model_api: RunningServer
) -> Iterator[RunningServer]:
    """An app service on a float32 model API of each engine (conftest.py says why)."""
    yield from app_service_with(tmp_path_factory, float32_model_api, "exact_app")


def test_a_continued_answer_equals_the_uninterrupted_one(exact_app) -> None:
    """At temperature 0 the open prefix must lead the model to the very same tokens."""
    app_server = exact_app
    user = register(app_server.url)
    chat = ChatClient(app_server.url, user)
    whole_cid = new_conversation(app_server.url, user)
    chat.send(
        type="send",
        conversation_id=whole_cid,
        content=STORY,
        settings={"temperature": 0, "max_tokens": 48},
    )
    whole, _ = chat.until("done")
    assert whole["finish_reason"] == "length"

    cid = new_conversation(app_server.url, user)
    chat.send(
        type="send",
        conversation_id=cid,
        content=STORY,
        settings={"temperature": 0, "max_tokens": 16},
    )
    part, _ = chat.until("done")
    chat.send(type="continue", conversation_id=cid, settings={"temperature": 0, "max_tokens": 32})
    done, _ = chat.until("done")
    assert done["message"]["content"] == whole["message"]["content"]
    assert done["message"]["usage"]["completion_tokens"] == 48
    assert part["message"]["content"] and done["message"]["content"].startswith(
        part["message"]["content"]
    )
    chat.close()


def test_continue_after_stop_appends_to_the_same_message(app_server, new_user) -> None:
    user = new_user()
    cid = new_conversation(app_server.url, user)
    chat = ChatClient(app_server.url, user)
    chat.send(type="send", conversation_id=cid, content=LONG_ANSWER, settings=LONG)
    for _ in range(3):
        chat.until("delta")
    chat.send(type="stop", conversation_id=cid)
    stopped, _ = chat.until("done")
    assert stopped["message"]["status"] == "stopped"
    chat.send(type="continue", conversation_id=cid, settings={"temperature": 0, "max_tokens": 8})
    text, _, done = follow(chat, cid)  # from `start`, which holds the stopped text
    assert done["message"]["id"] == stopped["message"]["id"]
    assert done["message"]["content"] == text
    assert text.startswith(stopped["message"]["content"])
    assert len(text) > len(stopped["message"]["content"])
    assert done["message"]["status"] == "complete"
    chat.close()


@pytest.fixture(scope="module")
def short_turns_app(
    tmp_path_factory: pytest.TempPathFactory, model_api: RunningServer
) -> Iterator[RunningServer]:
    yield from app_service_with(tmp_path_factory, model_api, "short_turns", TURN_MAX_SECONDS="2")


def test_an_answer_nobody_listens_to_ends_by_turn_max_seconds(short_turns_app) -> None:
    user = register(short_turns_app.url)
    cid = new_conversation(short_turns_app.url, user)
    chat = ChatClient(short_turns_app.url, user)
    chat.send(type="send", conversation_id=cid, content=LONG_ANSWER, settings=LONG)
    chat.until("delta")
    chat.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = stored_messages(short_turns_app, user, cid)[-1]
        if answer["status"] != "streaming":
            break
        time.sleep(0.3)
    assert answer["status"] == "stopped"
    assert "TURN_MAX_SECONDS" in answer["error"] and answer["content"]
