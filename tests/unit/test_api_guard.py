"""The rules every /api request meets before a route sees it (JSON content type, no
cross-site caller) and `Cache-Control: no-store` on its answers; with the Flask test client."""

from __future__ import annotations

import io

import pytest

from app_service.app import create_app
from app_service.settings import Settings

SITE = "https://chat.example"
PASSWORD = "long enough password"
CREDENTIALS = f'{{"username": "alice", "password": "{PASSWORD}"}}'


@pytest.fixture
def client(tmp_path):
    # An unroutable upstream: these tests never reach a model API.
    settings = Settings(
        data_dir=tmp_path,
        model_api_urls=("http://127.0.0.1:9",),
        site_origins=(SITE,),
        cookie_secure=False,
    )
    return create_app(settings).test_client()


def assert_error(reply, status: int, code: str) -> None:
    assert reply.status_code == status, reply.get_data(as_text=True)
    assert reply.json["error"]["code"] == code
    assert set(reply.json["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_a_body_a_cross_site_form_can_send_is_refused_with_415(client, content_type) -> None:
    # A form on another site posting the attacker's credentials must not log the victim in.
    for path in ("/api/auth/login", "/api/auth/register"):
        reply = client.post(path, data=CREDENTIALS, headers={"Content-Type": content_type})
        assert_error(reply, 415, "unsupported_media_type")
        assert "set-cookie" not in reply.headers


def test_a_body_without_a_content_type_is_refused(client) -> None:
    reply = client.post("/api/auth/register", data=CREDENTIALS, content_type="")
    assert_error(reply, 415, "unsupported_media_type")


def test_json_with_parameters_is_accepted(client) -> None:
    reply = client.post(
        "/api/auth/register",
        data=CREDENTIALS,
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert reply.status_code == 201


def test_requests_without_a_body_need_no_content_type(client) -> None:
    client.post("/api/auth/register", json={"username": "alice", "password": PASSWORD})
    conversation = client.post("/api/conversations").json  # an empty body counts as {}
    assert client.delete(f"/api/conversations/{conversation['id']}").status_code == 204
    assert client.post("/api/auth/logout").status_code == 204


def test_uploads_keep_multipart_and_v1_is_left_to_its_api_key(client) -> None:
    upload = client.post("/api/files", data={"file": (io.BytesIO(b"x"), "a.txt")})
    assert_error(upload, 401, "not_authenticated")  # past the guard, to the route
    v1 = client.post("/v1/chat/completions", data="{}", headers={"Content-Type": "text/plain"})
    assert v1.status_code == 401


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": SITE + ".evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": SITE, "Sec-Fetch-Site": "cross-site"},
    ],
)
def test_a_cross_site_caller_cannot_change_state(client, headers) -> None:
    for method, path in [
        ("post", "/api/auth/login"),
        ("post", "/api/auth/register"),
        ("post", "/api/auth/logout"),
        ("patch", "/api/conversations/conv_x"),
        ("delete", "/api/keys/key_x"),
    ]:
        reply = getattr(client, method)(
            path, json={"username": "alice", "password": PASSWORD}, headers=headers
        )
        assert_error(reply, 403, "cross_site_request")


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, scripts, the tests' requests
        {"Origin": SITE},
        {"Origin": SITE + "/"},
        {"Origin": SITE, "Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},
    ],
)
def test_the_site_itself_and_non_browser_clients_are_let_through(client, headers) -> None:
    reply = client.post(
        "/api/auth/register", json={"username": "alice", "password": PASSWORD}, headers=headers
    )
    assert reply.status_code == 201


def test_reading_is_not_refused_for_the_origin(client) -> None:
    reply = client.get("/api/health", headers={"Origin": "https://evil.example"})
    assert reply.status_code == 200


def test_api_answers_are_never_cached_errors_included(client) -> None:
    replies = [
        client.get("/api/health"),
        client.get("/api/auth/me"),  # 401
        client.get("/api/no/such/route"),  # 404
        client.post("/api/auth/login", data="x", headers={"Content-Type": "text/plain"}),
        client.post("/api/auth/login", json={"username": "nobody", "password": "x"}),
    ]
    for reply in replies:
        assert reply.headers.get("Cache-Control") == "no-store", reply.status_code
