"""Accounts and sessions on the real app service."""

from __future__ import annotations

import uuid

import requests

from app_service.accounts import SESSION_COOKIE
from tests.integration.conftest import PASSWORD, register


def name() -> str:
    return f"u_{uuid.uuid4().hex[:12]}"


def test_register_sets_a_strict_http_only_session_cookie(app_server) -> None:
    reply = requests.post(
        app_server.url + "/api/auth/register", json={"username": name(), "password": PASSWORD}
    )
    assert reply.status_code == 201
    cookie = reply.headers["Set-Cookie"]
    # Test servers speak plain HTTP (COOKIE_SECURE=false): no __Host- prefix.
    assert cookie.startswith(SESSION_COOKIE + "=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert reply.json()["user"]["is_admin"] in (True, False)
    assert "password" not in reply.text


def test_me_login_logout_round_trip(app_server) -> None:
    user = register(app_server.url)
    me = user.get(app_server.url + "/api/auth/me")
    assert me.status_code == 200 and me.json()["user"]["username"] == user.username
    assert user.post(app_server.url + "/api/auth/logout").status_code == 204
    assert user.get(app_server.url + "/api/auth/me").status_code == 401

    fresh = requests.Session()
    login = fresh.post(
        app_server.url + "/api/auth/login", json={"username": user.username, "password": PASSWORD}
    )
    assert login.status_code == 200
    assert fresh.get(app_server.url + "/api/auth/me").status_code == 200


def test_a_logged_out_cookie_is_dead_even_if_replayed(app_server) -> None:
    user = register(app_server.url)
    token = user.cookies[SESSION_COOKIE]
    user.post(app_server.url + "/api/auth/logout")
    replay = requests.get(app_server.url + "/api/auth/me", cookies={SESSION_COOKIE: token})
    assert replay.status_code == 401
    assert replay.json()["error"]["code"] == "not_authenticated"


def test_registration_checks(app_server) -> None:
    url = app_server.url + "/api/auth/register"
    taken = register(app_server.url).username
    cases = [
        ({"username": taken.upper(), "password": PASSWORD}, 409, "username"),
        ({"username": "ab", "password": PASSWORD}, 400, "username"),
        ({"username": "../../etc", "password": PASSWORD}, 400, "username"),
        ({"username": name(), "password": "short"}, 400, "password"),
        ({"username": name(), "password": 12345678}, 400, "password"),
        ({"username": name()}, 400, "password"),
        ({"username": name(), "password": PASSWORD, "is_admin": True}, 400, "is_admin"),
    ]
    for body, status, param in cases:
        reply = requests.post(url, json=body)
        assert reply.status_code == status, (body, reply.text)
        assert reply.json()["error"]["param"] == param
    assert (
        requests.post(url, data=b"{oops", headers={"Content-Type": "application/json"}).json()[
            "error"
        ]["code"]
        == "invalid_json"
    )


def test_wrong_password_then_too_many_attempts_is_429(app_server) -> None:
    user = register(app_server.url)
    url = app_server.url + "/api/auth/login"
    wrong = {"username": user.username, "password": "not the password"}
    for _ in range(10):  # LOGIN_ATTEMPTS default
        reply = requests.post(url, json=wrong)
        assert reply.status_code == 401
        assert reply.json()["error"]["code"] == "invalid_credentials"
    limited = requests.post(url, json={"username": user.username, "password": PASSWORD})
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    # Another account from the same address still logs in.
    other = register(app_server.url)
    ok = requests.post(url, json={"username": other.username, "password": PASSWORD})
    assert ok.status_code == 200


def test_change_password_ends_other_sessions(app_server) -> None:
    user = register(app_server.url)
    elsewhere = requests.Session()
    elsewhere.post(
        app_server.url + "/api/auth/login", json={"username": user.username, "password": PASSWORD}
    )
    url = app_server.url + "/api/auth/password"
    wrong = user.post(url, json={"current_password": "nope", "new_password": "new password 1"})
    assert wrong.status_code == 403
    ok = user.post(url, json={"current_password": PASSWORD, "new_password": "new password 1"})
    assert ok.status_code == 204
    assert user.get(app_server.url + "/api/auth/me").status_code == 200
    assert elsewhere.get(app_server.url + "/api/auth/me").status_code == 401
    relog = requests.post(
        app_server.url + "/api/auth/login",
        json={"username": user.username, "password": "new password 1"},
    )
    assert relog.status_code == 200


def test_everything_private_needs_a_session(app_server) -> None:
    for method, path in [
        ("get", "/api/conversations"),
        ("post", "/api/conversations"),
        ("get", "/api/files"),
        ("get", "/api/keys"),
        ("post", "/api/auth/password"),
    ]:
        reply = getattr(requests, method)(app_server.url + path, json={})
        assert reply.status_code == 401, path
        assert reply.json()["error"]["code"] == "not_authenticated"


def test_health_reports_the_model_api(app_server) -> None:
    health = requests.get(app_server.url + "/api/health").json()
    assert health["status"] == "ok"
    assert health["model_api"]["reachable"] is True
