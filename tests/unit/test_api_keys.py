"""API keys through the app's own routes (Flask test client; the upstream is a loopback fake)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from app_service.app import create_app
from app_service.settings import Settings
from tests.unit.test_upstream import FakeUpstream

PASSWORD = "correct horse battery"


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    yield fake
    fake.stop()


@pytest.fixture
def app(tmp_path: Path, upstream: FakeUpstream):
    settings = Settings(
        data_dir=tmp_path, model_api_urls=(upstream.url,), cookie_secure=False, max_connections=64
    )
    app = create_app(settings)
    yield app
    app.extensions["chatstack_upstreams"].stop()


def login(app, username: str) -> FlaskClient:
    client = app.test_client()
    reply = client.post("/api/auth/register", json={"username": username, "password": PASSWORD})
    assert reply.status_code == 201, reply.json
    return client


def create_key(client: FlaskClient, name: str = "laptop") -> dict:
    reply = client.post("/api/keys", json={"name": name})
    assert reply.status_code == 201, reply.json
    return reply.json


def test_a_key_is_shown_once_and_stored_only_as_a_hash(app, tmp_path: Path) -> None:
    alice = login(app, "alice")
    created = create_key(alice, "  laptop  ")
    assert set(created) == {"id", "name", "prefix", "created_at", "key"}
    assert created["name"] == "laptop"
    assert created["key"].startswith("cs-") and len(created["key"]) > 40
    assert created["key"].startswith(created["prefix"])
    listed = alice.get("/api/keys").json["data"]
    assert listed == [
        {
            "id": created["id"],
            "name": "laptop",
            "prefix": created["prefix"],
            "created_at": created["created_at"],
            "last_used_at": None,
            "revoked_at": None,
            "revoked": False,
        }
    ]
    stored = sqlite3.connect(tmp_path / "chatstack.db").execute("SELECT * FROM api_keys").fetchall()
    assert created["key"] not in repr(stored)
    for name in ("chatstack.db", "chatstack.db-wal"):
        path = tmp_path / name
        if path.exists():
            assert created["key"].encode() not in path.read_bytes()


def test_keys_are_listed_newest_first_and_only_to_their_owner(app) -> None:
    alice, bob = login(app, "alice"), login(app, "bob")
    first, second = create_key(alice, "one"), create_key(alice, "two")
    create_key(bob, "bobs")
    assert [k["id"] for k in alice.get("/api/keys").json["data"]] == [second["id"], first["id"]]
    assert [k["name"] for k in bob.get("/api/keys").json["data"]] == ["bobs"]


def test_revoking_marks_the_key_and_refuses_it(app) -> None:
    alice = login(app, "alice")
    key = create_key(alice)
    auth = {"Authorization": f"Bearer {key['key']}"}
    assert alice.get("/v1/models", headers=auth).status_code == 200
    assert alice.delete(f"/api/keys/{key['id']}").status_code == 204
    assert alice.delete(f"/api/keys/{key['id']}").status_code == 204  # idempotent
    listed = alice.get("/api/keys").json["data"][0]
    assert listed["revoked"] is True and listed["revoked_at"] is not None
    assert listed["last_used_at"] is not None
    refused = app.test_client().get("/v1/models", headers=auth)
    assert refused.status_code == 401
    assert refused.json["error"]["code"] == "invalid_api_key"
    assert "revoked" in refused.json["error"]["message"]


def test_another_users_key_is_a_404_and_stays_alive(app) -> None:
    alice, bob = login(app, "alice"), login(app, "bob")
    key = create_key(alice)
    reply = bob.delete(f"/api/keys/{key['id']}")
    assert reply.status_code == 404
    assert reply.json["error"]["code"] == "not_found"
    assert bob.delete("/api/keys/key_nothing").status_code == 404
    auth = {"Authorization": f"Bearer {key['key']}"}
    assert app.test_client().get("/v1/models", headers=auth).status_code == 200


@pytest.mark.parametrize(
    ("body", "param"),
    [({"name": ""}, "name"), ({"name": " "}, "name"), ({}, "name"), ({"name": 3}, "name")],
)
def test_a_bad_name_is_a_400(app, body: dict, param: str) -> None:
    reply = login(app, "alice").post("/api/keys", json=body)
    assert reply.status_code == 400
    assert reply.json["error"]["param"] == param


def test_keys_need_a_logged_in_user(app) -> None:
    anonymous = app.test_client()
    assert anonymous.get("/api/keys").status_code == 401
    assert anonymous.post("/api/keys", json={"name": "x"}).status_code == 401
    assert anonymous.delete("/api/keys/key_x").status_code == 401


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "missing_api_key"),
        ("Bearer ", "missing_api_key"),
        ("Basic dXNlcjpwYXNz", "missing_api_key"),
        ("Bearer cs-not-a-real-key", "invalid_api_key"),
    ],
)
def test_v1_needs_a_live_key(app, upstream: FakeUpstream, header: str | None, code: str) -> None:
    headers = {"Authorization": header} if header is not None else {}
    reply = app.test_client().post(
        "/v1/chat/completions", json={"model": "m", "messages": []}, headers=headers
    )
    assert reply.status_code == 401
    assert reply.json["error"]["code"] == code
    assert reply.json["error"]["type"] == "invalid_request_error"
    assert upstream.chat_requests() == []


def test_a_session_cookie_is_not_an_api_key(app) -> None:
    alice = login(app, "alice")
    assert alice.get("/v1/models").status_code == 401
