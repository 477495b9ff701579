"""WebSocket chat against the real app service and the real model."""

from __future__ import annotations

import pytest
import requests
import simple_websocket

from tests.integration.chat_client import ChatClient, new_conversation
from tests.servers import RunningServer, wait_for_idle_model
from tests.upload_samples import make_docx, make_pdf

# Long under every engine and weight format (a shorter wording ends after ~120 tokens,
# about 2.5 s on int4 — too soon for tests that act mid-answer).
LONG_ANSWER = "Count from 1 to 300, one number after another, separated by commas."


def conversation(app: RunningServer, session: requests.Session, cid: str) -> dict:
    reply = session.get(f"{app.url}/api/conversations/{cid}")
    assert reply.status_code == 200
    return reply.json()


def test_a_whole_chat_turn_streams_and_is_stored(app_server, new_user) -> None:
    user = new_user()
    cid = new_conversation(app_server.url, user)
    chat = ChatClient(app_server.url, user)
    chat.send(
        type="send",
        conversation_id=cid,
        content="What is the capital of France?",
        settings={"temperature": 0, "max_tokens": 24},
    )
    stored_user = chat.recv()
    assert stored_user["type"] == "user_message"
    assert stored_user["message"]["content"] == "What is the capital of France?"
    assert stored_user["conversation"]["title"] == "What is the capital of France?"
    start = chat.recv()
    assert start["type"] == "start" and start["message"]["status"] == "streaming"
    done, frames = chat.until("done")
    deltas = [f["content"] for f in frames if f["type"] == "delta"]
    assert len(deltas) >= 2
    assert done["message"]["status"] == "complete"
    assert done["message"]["content"] == "".join(deltas)
    assert "Paris" in done["message"]["content"]
    assert done["finish_reason"] in {"stop", "length"}
    assert done["usage"]["completion_tokens"] >= len(deltas)
    chat.close()
    stored = conversation(app_server, user, cid)["messages"]
    assert [(m["role"], m["status"]) for m in stored] == [
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert stored[1]["content"] == done["message"]["content"]


def test_history_is_sent_on_the_next_turn_and_regenerate_replaces_the_answer(
    app_server, new_user
) -> None:
    user = new_user()
    cid = new_conversation(app_server.url, user, system_prompt="Answer briefly.")
    chat = ChatClient(app_server.url, user)
    for question in ("My name is Ada.", "What is my name?"):
        chat.send(
            type="send",
            conversation_id=cid,
            content=question,
            settings={"temperature": 0, "max_tokens": 16},
        )
        done, _ = chat.until("done")
    assert done["usage"]["prompt_tokens"] > 30  # the first turn came along
    chat.send(type="regenerate", conversation_id=cid, settings={"temperature": 0, "max_tokens": 16})
    regenerated, frames = chat.until("done")
    assert not any(f["type"] == "user_message" for f in frames)
    assert regenerated["message"]["id"] != done["message"]["id"]
    assert regenerated["message"]["content"] == done["message"]["content"]  # greedy: same
    messages = conversation(app_server, user, cid)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[-1]["id"] == regenerated["message"]["id"]
    chat.close()


def test_stop_keeps_what_was_generated_and_frees_the_model(app_server, model_api, new_user) -> None:
    user = new_user()
    cid = new_conversation(app_server.url, user)
    chat = ChatClient(app_server.url, user)
    chat.send(
        type="send",
        conversation_id=cid,
        content=LONG_ANSWER,
        settings={"temperature": 0, "max_tokens": 1500},
    )
    chat.until("start")
    received = [chat.until("delta")[0]["content"] for _ in range(3)]
    chat.send(type="stop")
    done, frames = chat.until("done")
    received += [f["content"] for f in frames if f["type"] == "delta"]
    assert done["message"]["status"] == "stopped"
    assert done["message"]["content"] == "".join(received)
    wait_for_idle_model(model_api)
    stored = conversation(app_server, user, cid)["messages"][-1]
    assert (stored["status"], stored["content"]) == ("stopped", "".join(received))
    chat.send(type="ping")
    assert chat.recv()["type"] == "pong"  # the socket is still usable
    chat.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "invalid_json"),
        ('{"type": "dance"}', "invalid_frame"),
        ('{"type": "send", "conversation_id": "x"}', "invalid_frame"),
        (
            '{"type": "send", "conversation_id": "conv_missing", "content": "hi"}',
            "conversation_not_found",
        ),
        ('{"type": "regenerate", "conversation_id": "NEW"}', "nothing_to_regenerate"),
    ],
)
def test_bad_frames_get_error_frames_and_the_socket_lives_on(
    app_server, new_user, frame, code
) -> None:
    user = new_user()
    chat = ChatClient(app_server.url, user)
    if "NEW" in frame:
        frame = frame.replace("NEW", new_conversation(app_server.url, user))
    chat.ws.send(frame)
    error = chat.until("error")[0]
    assert error["code"] == code
    assert error["error"]
    chat.send(type="ping")
    assert chat.recv()["type"] == "pong"
    chat.close()


def test_another_users_conversation_is_not_found(app_server, new_user) -> None:
    owner, other = new_user(), new_user()
    cid = new_conversation(app_server.url, owner)
    chat = ChatClient(app_server.url, other)
    chat.send(type="send", conversation_id=cid, content="let me in")
    assert chat.until("error")[0]["code"] == "conversation_not_found"
    chat.close()
    assert conversation(app_server, owner, cid)["messages"] == []


def test_handshake_needs_a_session_and_our_origin(app_server, new_user) -> None:
    with pytest.raises(simple_websocket.ConnectionError):
        ChatClient(app_server.url, requests.Session())
    with pytest.raises(simple_websocket.ConnectionError):
        ChatClient(app_server.url, new_user(), origin="https://evil.example")


def test_oversized_frame_closes_the_socket(app_server, new_user) -> None:
    chat = ChatClient(app_server.url, new_user())
    chat.ws.send("x" * (300 * 1024))  # over WS_MAX_MESSAGE_KB
    with pytest.raises(simple_websocket.ConnectionClosed):
        chat.recv(timeout=10)


def upload(app_url: str, session: requests.Session, name: str, data: bytes) -> dict:
    reply = session.post(app_url + "/api/files", files={"file": (name, data)})
    assert reply.status_code == 201, reply.text
    return reply.json()


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("trip.pdf", lambda text: make_pdf([text])),
        ("trip.docx", lambda text: make_docx([text])),
    ],
)
def test_an_answer_uses_an_uploaded_file(app_server, new_user, name, make) -> None:
    user = new_user()
    fact = "The meeting with Zorblax Industries is in Reykjavik on Tuesday."
    uploaded = upload(app_server.url, user, name, make(fact))
    cid = new_conversation(app_server.url, user)
    chat = ChatClient(app_server.url, user)
    chat.send(
        type="send",
        conversation_id=cid,
        content="Where is the Zorblax meeting?",
        file_ids=[uploaded["id"]],
        settings={"temperature": 0, "max_tokens": 32},
    )
    sent = chat.until("user_message")[0]
    assert sent["message"]["attachments"] == [{"id": uploaded["id"], "name": name}]
    done, _ = chat.until("done")
    assert done["sources"] == [{"file_id": uploaded["id"], "file_name": name, "ordinal": None}]
    assert "Reykjavik" in done["message"]["content"]
    # A follow-up without attaching it again still has the file in context.
    chat.send(
        type="send",
        conversation_id=cid,
        content="On which day is it?",
        settings={"temperature": 0, "max_tokens": 16},
    )
    follow_up, _ = chat.until("done")
    assert [s["file_id"] for s in follow_up["sources"]] == [uploaded["id"]]
    chat.close()


def test_a_big_file_is_searched_for_the_chunks_that_answer(app_server, new_user) -> None:
    user = new_user()
    filler = "\n\n".join(
        f"Section {i}. The warehouse inventory lists crates of ordinary goods, number {i}."
        for i in range(400)
    )
    text = filler + "\n\nThe launch code for Project Nightingale is AMBER-7731.\n\n" + filler
    uploaded = upload(app_server.url, user, "inventory.txt", text.encode())
    cid = new_conversation(app_server.url, user)
    chat = ChatClient(app_server.url, user)
    chat.send(
        type="send",
        conversation_id=cid,
        content="What is the launch code for Project Nightingale?",
        file_ids=[uploaded["id"]],
        settings={"temperature": 0, "max_tokens": 24},
    )
    done, _ = chat.until("done")
    assert done["sources"], "no chunk of the file was used"
    assert all(s["ordinal"] is not None for s in done["sources"])  # chunks, not whole
    assert "AMBER-7731" in done["message"]["content"]
    chat.close()


def test_attaching_another_users_file_is_refused(app_server, new_user) -> None:
    owner, other = new_user(), new_user()
    uploaded = upload(app_server.url, owner, "secret.txt", b"owner's secret")
    cid = new_conversation(app_server.url, other)
    chat = ChatClient(app_server.url, other)
    chat.send(type="send", conversation_id=cid, content="Read it", file_ids=[uploaded["id"]])
    assert chat.until("error")[0]["code"] == "file_not_found"
    chat.close()
