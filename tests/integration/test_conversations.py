"""Conversation REST routes on the real app service: CRUD, settings, export, isolation."""

from __future__ import annotations

import json

from tests.integration.chat_client import ChatClient, new_conversation
from tests.integration.conftest import register


def test_create_list_rename_delete(app_server) -> None:
    user = register(app_server.url)
    base = app_server.url + "/api/conversations"
    first = new_conversation(app_server.url, user)
    second = new_conversation(app_server.url, user, title="Trip planning")
    listed = user.get(base).json()["conversations"]
    assert [c["id"] for c in listed] == [second, first]  # newest first
    assert listed[1]["title"] == "New chat"

    renamed = user.patch(f"{base}/{first}", json={"title": "Recipes"})
    assert renamed.status_code == 200 and renamed.json()["title"] == "Recipes"
    # A rename does not move it: the list follows the conversations' activity.
    assert [c["id"] for c in user.get(base).json()["conversations"]] == [second, first]

    found = user.get(base, params={"q": "trip"}).json()["conversations"]
    assert [c["id"] for c in found] == [second]
    assert user.get(base, params={"q": "%"}).json()["conversations"] == []

    assert user.delete(f"{base}/{second}").status_code == 204
    assert user.get(f"{base}/{second}").status_code == 404
    assert [c["id"] for c in user.get(base).json()["conversations"]] == [first]


def test_settings_are_validated_and_kept(app_server) -> None:
    user = register(app_server.url)
    base = app_server.url + "/api/conversations"
    cid = new_conversation(app_server.url, user)
    settings = {
        "system_prompt": "Be terse.",
        "model": "SmolLM2-135M-Instruct",
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 64,
    }
    reply = user.patch(f"{base}/{cid}", json=settings)
    assert reply.status_code == 200
    assert {k: reply.json()[k] for k in settings} == settings
    for bad, param in [
        ({"temperature": 3}, "temperature"),
        ({"top_p": "x"}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"title": ""}, "title"),
        ({"owner": "me"}, "owner"),
    ]:
        error = user.patch(f"{base}/{cid}", json=bad)
        assert error.status_code == 400
        assert error.json()["error"]["param"] == param
    assert user.get(f"{base}/{cid}").json()["temperature"] == 0.3
    cleared = user.patch(f"{base}/{cid}", json={"system_prompt": None, "model": None})
    assert cleared.status_code == 200
    assert (cleared.json()["system_prompt"], cleared.json()["model"]) == ("", "")


def test_another_user_gets_404_for_everything(app_server) -> None:
    owner, other = register(app_server.url), register(app_server.url)
    base = app_server.url + "/api/conversations"
    cid = new_conversation(app_server.url, owner, title="Private")
    for method, path, body in [
        ("get", f"{base}/{cid}", None),
        ("patch", f"{base}/{cid}", {"title": "mine now"}),
        ("delete", f"{base}/{cid}", None),
        ("get", f"{base}/{cid}/export", None),
    ]:
        reply = getattr(other, method)(path, json=body)
        assert reply.status_code == 404, (method, path)
        assert reply.json()["error"]["code"] == "conversation_not_found"
    assert other.get(base).json()["conversations"] == []
    assert owner.get(f"{base}/{cid}").json()["title"] == "Private"


def test_export_as_markdown_and_json(app_server) -> None:
    user = register(app_server.url)
    cid = new_conversation(app_server.url, user, title="Capitals")
    chat = ChatClient(app_server.url, user)
    chat.send(
        type="send",
        conversation_id=cid,
        content="What is the capital of France?",
        settings={"temperature": 0, "max_tokens": 12},
    )
    done, _ = chat.until("done")
    chat.close()
    base = f"{app_server.url}/api/conversations/{cid}/export"
    markdown = user.get(base, params={"format": "md"})
    assert markdown.status_code == 200
    assert markdown.headers["Content-Type"].startswith("text/markdown")
    assert 'filename="Capitals.md"' in markdown.headers["Content-Disposition"]
    assert markdown.text.startswith("# Capitals\n")
    assert "## You\n\nWhat is the capital of France?" in markdown.text
    assert done["message"]["content"] in markdown.text
    exported = json.loads(user.get(base, params={"format": "json"}).text)
    assert [m["role"] for m in exported["messages"]] == ["user", "assistant"]
    assert user.get(base, params={"format": "pdf"}).status_code == 400
