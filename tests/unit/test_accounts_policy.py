"""Registration policy and cookie flags, with the Flask test client (no servers)."""

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
