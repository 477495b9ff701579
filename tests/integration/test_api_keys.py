"""API keys on the real app service: shown once, listed without secrets, revoked for good."""

from __future__ import annotations

from collections.abc import Callable

import openai
import pytest
import requests

from tests.servers import RunningServer


def create_key(user: requests.Session, app_url: str, name: str = "script") -> dict:
    reply = user.post(app_url + "/api/keys", json={"name": name})
    assert reply.status_code == 201, reply.text
    return reply.json()


def key_client(app_server: RunningServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=app_server.url + "/v1", api_key=key, max_retries=0)


def test_a_key_is_shown_once_and_never_listed(
    app_server: RunningServer, new_user: Callable[[], requests.Session]
) -> None:
    user = new_user()
    created = create_key(user, app_server.url, "notebook")
    key = created["key"]
    assert key.startswith("cs-") and key.startswith(created["prefix"])
    listing = user.get(app_server.url + "/api/keys")
    assert listing.status_code == 200
    assert key not in listing.text
    [entry] = listing.json()["data"]
    assert "key" not in entry and "key_hash" not in entry
    assert (entry["id"], entry["name"], entry["revoked"]) == (created["id"], "notebook", False)
    assert entry["last_used_at"] is None
    assert [m.id for m in key_client(app_server, key).models.list().data]
    [used] = user.get(app_server.url + "/api/keys").json()["data"]
    assert used["last_used_at"] >= created["created_at"]


def test_a_revoked_key_is_refused(
    app_server: RunningServer, new_user: Callable[[], requests.Session]
) -> None:
    user = new_user()
    created = create_key(user, app_server.url)
    client = key_client(app_server, created["key"])
    client.models.list()
    assert user.delete(f"{app_server.url}/api/keys/{created['id']}").status_code == 204
    with pytest.raises(openai.AuthenticationError) as err:
        client.models.list()
    assert err.value.code == "invalid_api_key"
    [entry] = user.get(app_server.url + "/api/keys").json()["data"]
    assert entry["revoked"] is True


def test_another_users_key_is_a_404_and_keeps_working(
    app_server: RunningServer, new_user: Callable[[], requests.Session]
) -> None:
    owner, other = new_user(), new_user()
    created = create_key(owner, app_server.url)
    reply = other.delete(f"{app_server.url}/api/keys/{created['id']}")
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "not_found"
    assert other.get(app_server.url + "/api/keys").json()["data"] == []
    assert key_client(app_server, created["key"]).models.list().data


def test_keys_need_a_login(app_server: RunningServer) -> None:
    reply = requests.post(app_server.url + "/api/keys", json={"name": "x"})
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "not_authenticated"
