"""Fairness between users and sessions: per-user sockets, answers and answer length, and
sockets that end with their session; a failed regenerate loses nothing."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
import requests
import simple_websocket

from tests.conftest import MODEL
from tests.integration.chat_client import (
    LONG,
    LONG_ANSWER,
    LONG_TOKENS,
    ChatClient,
    new_conversation,
)
from tests.integration.conftest import PASSWORD, app_service_with, register
from tests.servers import RunningServer

LIMITS = {
    "USER_MAX_SOCKETS": "2",
    "USER_MAX_ACTIVE_TURNS": "1",
    "USER_MAX_TOKENS": str(LONG_TOKENS),
}


@pytest.fixture(scope="module")
def limited_app(
    tmp_path_factory: pytest.TempPathFactory, model_api: RunningServer
) -> Iterator[RunningServer]:
    yield from app_service_with(tmp_path_factory, model_api, "limited_app", **LIMITS)


def closed_with(chat: ChatClient, timeout: float = 30) -> int | None:
    """The close code the server ended this socket with (frames before it are skipped)."""
    try:
        while True:
            if chat.ws.receive(timeout=timeout) is None:
                return None  # still open
    except simple_websocket.ConnectionClosed as closed:
        return closed.reason


def api_key(app_url: str, user: requests.Session) -> str:
    reply = user.post(app_url + "/api/keys", json={"name": "limits"})
    assert reply.status_code == 201, reply.text
    return reply.json()["key"]


def start_long_turn(chat: ChatClient, cid: str) -> str:
    """A long answer, streaming once this returns; its message id."""
    chat.send(
        type="send",
        conversation_id=cid,
        content=LONG_ANSWER,
        settings=LONG,
    )
    start, _ = chat.until("start")
    chat.until("delta")
    return start["message"]["id"]


def stored(app_url: str, user: requests.Session, cid: str) -> list[dict]:
    reply = user.get(app_url + f"/api/conversations/{cid}")
    assert reply.status_code == 200, reply.text
    return reply.json()["messages"]


def test_past_user_max_sockets_the_oldest_socket_is_closed(limited_app: RunningServer) -> None:
    user = register(limited_app.url)
    first = ChatClient(limited_app.url, user)
    second = ChatClient(limited_app.url, user)
    third = ChatClient(limited_app.url, user)
    assert closed_with(first) == 4008
    for chat in (second, third):  # the newer ones keep working
        chat.send(type="ping")
        assert chat.recv()["type"] == "pong"
        chat.close()
    other = ChatClient(limited_app.url, register(limited_app.url))  # another user: own count
    other.close()


def test_one_user_has_at_most_user_max_active_turns(limited_app: RunningServer) -> None:
    user = register(limited_app.url)
    key = api_key(limited_app.url, user)
    chat = ChatClient(limited_app.url, user)
    cid = new_conversation(limited_app.url, user)
    start_long_turn(chat, cid)

    client = openai.OpenAI(base_url=limited_app.url + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
    assert refused.value.code == "too_many_active_turns"
    assert refused.value.response.headers.get("Retry-After")

    other_tab = ChatClient(limited_app.url, user)
    other_cid = new_conversation(limited_app.url, user)
    other_tab.send(type="send", conversation_id=other_cid, content="Hello")
    error, _ = other_tab.until("error")
    assert error["code"] == "too_many_active_turns"
    assert "1 answers" in error["error"]

    # Another user is not affected by this one's answers.
    stranger = register(limited_app.url)
    answer = openai.OpenAI(
        base_url=limited_app.url + "/v1", api_key=api_key(limited_app.url, stranger), max_retries=0
    ).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert answer.choices[0].message.content is not None

    chat.send(type="stop")
    chat.until("done")
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert reply.usage.completion_tokens >= 1
    chat.close()
    other_tab.close()


def test_answers_longer_than_user_max_tokens_are_refused(limited_app: RunningServer) -> None:
    user = register(limited_app.url)
    client = openai.OpenAI(
        base_url=limited_app.url + "/v1", api_key=api_key(limited_app.url, user), max_retries=0
    )
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=LONG_TOKENS + 1
        )
    assert refused.value.code == "max_tokens_over_limit"
    assert str(LONG_TOKENS) in refused.value.message
    chat = ChatClient(limited_app.url, user)
    cid = new_conversation(limited_app.url, user)
    chat.send(
        type="send", conversation_id=cid, content="Hi", settings={"max_tokens": LONG_TOKENS + 1}
    )
    error, _ = chat.until("error")
    assert error["code"] == "max_tokens_over_limit"
    chat.close()


def test_logout_closes_the_sessions_sockets_and_the_answer_goes_on(
    limited_app: RunningServer,
) -> None:
    user = register(limited_app.url)
    chat = ChatClient(limited_app.url, user)
    cid = new_conversation(limited_app.url, user)
    answer_id = start_long_turn(chat, cid)
    assert user.post(limited_app.url + "/api/auth/logout").status_code == 204
    assert closed_with(chat) == 4001

    again = requests.Session()
    reply = again.post(
        limited_app.url + "/api/auth/login",
        json={"username": user.username, "password": PASSWORD},  # type: ignore[attr-defined]
    )
    assert reply.status_code == 200, reply.text
    # The answer belongs to the server, not to the socket: the new session resumes it.
    resumed = ChatClient(limited_app.url, again)
    resume = resumed.recv()
    assert (resume["type"], resume["message"]["id"]) == ("resume", answer_id)
    resumed.send(type="stop", conversation_id=cid)
    done, _ = resumed.until("done")
    assert done["message"]["status"] == "stopped" and done["message"]["content"]
    answer = next(m for m in stored(limited_app.url, again, cid) if m["id"] == answer_id)
    assert answer["status"] == "stopped"
    resumed.close()


def test_password_change_closes_every_socket_of_the_user(limited_app: RunningServer) -> None:
    user = register(limited_app.url)
    elsewhere = requests.Session()
    reply = elsewhere.post(
        limited_app.url + "/api/auth/login",
        json={"username": user.username, "password": PASSWORD},  # type: ignore[attr-defined]
    )
    assert reply.status_code == 200
    here, there = ChatClient(limited_app.url, user), ChatClient(limited_app.url, elsewhere)
    reply = user.post(
        limited_app.url + "/api/auth/password",
        json={"current_password": PASSWORD, "new_password": PASSWORD + "!"},
    )
    assert reply.status_code == 204, reply.text
    assert closed_with(there) == 4001
    assert closed_with(here) == 4001
    ChatClient(limited_app.url, user).close()  # this session still opens a new one


def test_a_regenerate_that_fails_first_keeps_the_previous_answer(
    app_server: RunningServer,
) -> None:
    user = register(app_server.url)
    chat = ChatClient(app_server.url, user)
    cid = new_conversation(app_server.url, user)
    chat.send(type="send", conversation_id=cid, content="Say hello.", settings={"max_tokens": 8})
    done, _ = chat.until("done")
    before = stored(app_server.url, user, cid)

    # More answer than the context holds: refused before anything is generated.
    chat.send(type="regenerate", conversation_id=cid, settings={"max_tokens": 100_000})
    error, _ = chat.until("error")
    assert error["code"] == "context_length_exceeded"
    assert error["message"]["id"] == done["message"]["id"]  # shown again
    assert stored(app_server.url, user, cid) == before

    chat.send(type="regenerate", conversation_id=cid, settings={"max_tokens": 8})
    again, _ = chat.until("done")
    after = stored(app_server.url, user, cid)
    assert [m["id"] for m in after] == [before[0]["id"], again["message"]["id"]]
    chat.close()
