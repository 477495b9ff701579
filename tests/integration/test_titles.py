"""The real model titles a conversation after its first answer, on the real app service."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.chat_client import ChatClient, new_conversation
from tests.integration.conftest import app_service_with, register
from tests.servers import RunningServer


@pytest.fixture(scope="module")
def titled_app(tmp_path_factory, model_api: RunningServer) -> Iterator[RunningServer]:
    yield from app_service_with(tmp_path_factory, model_api, "titled_app", AUTO_TITLES="true")


def test_the_first_answer_is_followed_by_the_models_title_on_every_socket(titled_app) -> None:
    user = register(titled_app.url)
    cid = new_conversation(titled_app.url, user)
    chat = ChatClient(titled_app.url, user)
    other_tab = ChatClient(titled_app.url, user)
    question = "How do I make a cup of green tea?"
    chat.send(type="send", conversation_id=cid, content=question, settings={"max_tokens": 32})
    stored, _ = chat.until("user_message")
    assert stored["conversation"]["title"] == question  # the first words, at once
    chat.until("done")
    titled, _ = chat.until("conversation")  # after the answer, never before
    title = titled["conversation"]["title"]
    assert 2 <= len(title) <= 60 and "\n" not in title and "…" not in title
    seen, _ = other_tab.until("conversation")
    assert seen["conversation"]["title"] == title
    assert user.get(f"{titled_app.url}/api/conversations/{cid}").json()["title"] == title
    # A rename wins over it from then on, and the second answer brings no new title.
    assert (
        user.patch(f"{titled_app.url}/api/conversations/{cid}", json={"title": "Tea"}).status_code
        == 200
    )
    renamed, _ = other_tab.until("conversation")
    assert renamed["conversation"]["title"] == "Tea"
    chat.send(
        type="send", conversation_id=cid, content="And black tea?", settings={"max_tokens": 8}
    )
    chat.until("done")
    assert user.get(f"{titled_app.url}/api/conversations/{cid}").json()["title"] == "Tea"
    chat.close()
    other_tab.close()
