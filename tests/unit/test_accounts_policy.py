"""Registration policy, the session cookie and password checks, with the Flask test client."""

import pytest

from app_service.app import create_app
from app_service.settings import Settings

PASSWORD = "long enough password"


def client(tmp_path, **settings):
    # An unroutable upstream: these tests never reach a model API.
    app = create_app(
        Settings(data_dir=tmp_path, model_api_urls=("http://127.0.0.1:9",), **settings)
    )
    return app.test_client()


def register(c, name):
    return c.post("/api/auth/register", json={"username": name, "password": PASSWORD})


def test_first_account_is_admin_and_later_ones_are_not(tmp_path):
    c = client(tmp_path)
    assert register(c, "first").json["user"]["is_admin"] is True
    assert register(c, "second").json["user"]["is_admin"] is False


def test_closed_registration_still_lets_the_first_account_in(tmp_path):
    c = client(tmp_path, registration="closed")
    assert register(c, "owner").status_code == 201
    refused = register(c, "stranger")
    assert refused.status_code == 403
    assert refused.json["error"]["code"] == "registration_closed"


def test_session_cookie_is_secure_http_only_and_strict_by_default(tmp_path):
    cookie = register(client(tmp_path), "alice").headers["Set-Cookie"]
    for flag in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
        assert flag in cookie


def test_passwords_are_stored_hashed(tmp_path):
    import sqlite3

    register(client(tmp_path), "bob")
    stored = (
        sqlite3.connect(tmp_path / "chatstack.db")
        .execute("SELECT password_hash FROM users")
        .fetchone()[0]
    )
    assert PASSWORD not in stored
    assert stored.startswith(("scrypt:", "pbkdf2:"))


def test_site_origin_follows_the_server_name_and_port():
    assert Settings.from_env({}).site_origins == ("https://localhost:8443",)
    env = {"SERVER_NAME": "chat.example.com", "HTTPS_PORT": "443"}
    assert Settings.from_env(env).site_origins == ("https://chat.example.com",)
    both = {"SITE_ORIGINS": "https://a.example, https://b.example:8443/"}
    assert Settings.from_env(both).site_origins == ("https://a.example", "https://b.example:8443")


def test_an_unknown_username_costs_the_same_password_check_as_a_known_one(tmp_path, monkeypatch):
    from app_service import passwords

    c = client(tmp_path)
    register(c, "carol")
    checked: list[str] = []
    real_verify = passwords._verify

    def recording_verify(stored_hash: str, password: str) -> bool:
        checked.append(stored_hash)
        return real_verify(stored_hash, password)

    monkeypatch.setattr(passwords, "_verify", recording_verify)
    for name in ("carol", "nobody"):
        reply = c.post("/api/auth/login", json={"username": name, "password": "wrong password"})
        assert reply.status_code == 401
    known, unknown = checked
    assert unknown == passwords.dummy_hash() and known != unknown
    # Same algorithm and cost: scrypt:32768:8:1 on both sides of the '$'.
    assert unknown.split("$")[0] == known.split("$")[0]


@pytest.mark.parametrize(
    ("secure", "name"), [(True, "__Host-chatstack_session"), (False, "chatstack_session")]
)
def test_the_session_cookie_is_host_prefixed_when_secure(tmp_path, secure, name):
    c = client(tmp_path, cookie_secure=secure)
    reply = c.post("/api/auth/register", json={"username": "alice", "password": PASSWORD})
    cookie = reply.headers["Set-Cookie"]
    assert cookie.startswith(name + "=")
    # What browsers require of a __Host- cookie: Secure, Path=/ and no Domain.
    assert "Path=/" in cookie and "Domain" not in cookie
    assert ("Secure" in cookie) is secure
    assert c.get("/api/auth/me").status_code == 200
    assert c.post("/api/auth/logout").status_code == 204
    assert c.get("/api/auth/me").status_code == 401
