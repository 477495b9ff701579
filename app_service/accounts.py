"""Accounts and browser sessions: register, log in, log out, change password.

A session is a random token in a `Secure; HttpOnly; SameSite=Strict` cookie; the
database keeps only its hash, so a leaked database does not leak live sessions. Password
guesses are limited in login_limits.py; hashing is passwords.py's.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, Response, current_app, g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from app_service import login_limits, passwords
from app_service.bodies import json_body
from app_service.db import db, new_id, now, transaction
from app_service.proxies import client_address as _client_address
from app_service.settings import Settings
from app_service.user_activity import user_activity
from chatstack.errors import APIError
from chatstack.validation import parse_body

bp = Blueprint("accounts", __name__, url_prefix="/api/auth")

# The cookie's name over plain HTTP (COOKIE_SECURE=false); use session_cookie_name().
SESSION_COOKIE = "chatstack_session"
F = TypeVar("F", bound=Callable[..., Any])


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    username: str = Field(min_length=3, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")
    password: str = Field(min_length=8, max_length=256)


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=8, max_length=256)


def settings() -> Settings:
    return current_app.extensions["chatstack_settings"]


def session_cookie_name() -> str:
    """`__Host-chatstack_session` when the cookie is Secure: browsers then refuse it unless
    it was set over HTTPS by this very host (no Domain, Path=/), so a sibling subdomain or
    a plain-HTTP page cannot plant a session of its choosing."""
    return f"__Host-{SESSION_COOKIE}" if settings().cookie_secure else SESSION_COOKIE


def session_token() -> str:
    """The session token this request's cookie carries, or ""."""
    return request.cookies.get(session_cookie_name(), "")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def public_user(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "username": row["username"],
        "is_admin": bool(row["is_admin"]),
        "created_at": row["created_at"],
    }


# ---- who is asking -----------------------------------------------------------------------


def session_user(token: str | None) -> sqlite3.Row | None:
    """The user a session cookie belongs to, if the session is live."""
    if not token:
        return None
    return (
        db()
        .execute(
            "SELECT users.* FROM sessions JOIN users ON users.id = sessions.user_id "
            "WHERE sessions.token_hash = ? AND sessions.expires_at > ?",
            (token_hash(token), now()),
        )
        .fetchone()
    )


def current_user() -> sqlite3.Row:
    """The logged-in user, or a 401."""
    if "user" not in g:
        g.user = session_user(session_token())
    if g.user is None:
        raise APIError(401, "You are not logged in.", code="not_authenticated")
    return g.user


def login_required(view: F) -> F:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        current_user()
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


# ---- sessions ------------------------------------------------------------------------------


def start_session(response: Response, user_id: str) -> Response:
    token = secrets.token_urlsafe(32)
    lifetime = settings().session_days * 86400
    db().execute(
        "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
        (token_hash(token), user_id, now(), now() + lifetime),
    )
    response.set_cookie(
        session_cookie_name(),
        token,
        max_age=lifetime,
        secure=settings().cookie_secure,
        httponly=True,
        samesite="Strict",
        path="/",
    )
    return response


def end_session(response: Response) -> Response:
    token = session_token()
    if token:
        db().execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash(token),))
    response.delete_cookie(
        session_cookie_name(),
        path="/",
        secure=settings().cookie_secure,
        httponly=True,
        samesite="Strict",
    )
    return response


def client_address() -> str:
    """The client's address: the peer, or what a proxy in TRUSTED_PROXIES forwarded for."""
    return _client_address(request.remote_addr, request.headers, settings().trusted_proxies)


# ---- routes --------------------------------------------------------------------------------


@bp.post("/register")
def register() -> Response:
    creds = parse_body(json_body(), Credentials)
    password_hash = passwords.hash_password(creds.password)  # slow: not inside the write lock
    with transaction() as conn:
        has_users = conn.execute("SELECT 1 FROM users LIMIT 1").fetchone() is not None
        if has_users and settings().registration == "closed":
            raise APIError(
                403, "Registration is closed on this server.", code="registration_closed"
            )
        if conn.execute("SELECT 1 FROM users WHERE username = ?", (creds.username,)).fetchone():
            raise APIError(409, "That username is taken.", param="username", code="username_taken")
        user_id = new_id("usr")
        conn.execute(
            "INSERT INTO users (id, username, password_hash, is_admin, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (user_id, creds.username, password_hash, not has_users, now()),
        )
    row = db().execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
    response = jsonify({"user": public_user(row)})
    response.status_code = 201
    return start_session(response, user_id)


@bp.post("/login")
def login() -> Response:
    creds = parse_body(json_body(), LoginRequest)
    limits = login_limits.login_limits(settings(), creds.username, client_address())
    reservation = login_limits.reserve_attempt(
        db(),
        limits,
        message="Too many failed login attempts. Try again later.",
        code="too_many_login_attempts",
    )
    row = db().execute("SELECT * FROM users WHERE username = ?", (creds.username,)).fetchone()
    # An unknown name is checked against a dummy hash: it costs what a known one does.
    stored = row["password_hash"] if row is not None else None
    if not passwords.check_password(stored, creds.password):
        raise APIError(401, "Wrong username or password.", code="invalid_credentials")
    # The owner got in from here: their earlier typos here no longer count against them.
    # The address's and the account's own counts stay: a guesser's failures are not undone
    # by logging in to an account of their own.
    login_limits.release_attempt(db(), reservation, forgive=(limits[0],))
    with transaction() as conn:
        conn.execute("DELETE FROM sessions WHERE expires_at < ?", (now(),))
    return start_session(jsonify({"user": public_user(row)}), row["id"])


@bp.post("/logout")
def logout() -> Response:
    token = session_token()
    user = session_user(token)
    response = end_session(Response(status=204))
    if user is not None:  # this session's open chat sockets end with it
        user_activity().end_sockets(user["id"], session=token_hash(token))
    return response


@bp.get("/me")
@login_required
def me() -> Response:
    return jsonify({"user": public_user(current_user()), "registration": settings().registration})


@bp.post("/password")
@login_required
def change_password() -> Response:
    change = parse_body(json_body(), PasswordChange)
    user = current_user()
    reservation = login_limits.reserve_attempt(
        db(),
        login_limits.password_change_limits(settings(), user["id"]),
        message="Too many wrong current passwords. Try again later.",
        code="too_many_password_attempts",
    )
    if not passwords.check_password(user["password_hash"], change.current_password):
        raise APIError(
            403,
            "The current password is wrong.",
            param="current_password",
            code="invalid_credentials",
        )
    login_limits.release_attempt(db(), reservation)
    keep = token_hash(session_token())
    new_hash = passwords.hash_password(change.new_password)
    with transaction() as conn:
        conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (new_hash, user["id"]))
        # Every other session of this user ends: a changed password locks out old devices.
        conn.execute(
            "DELETE FROM sessions WHERE user_id = ? AND token_hash != ?", (user["id"], keep)
        )
    # Every open chat socket of the user closes, this session's too (its tab reconnects):
    # none outlives the password it was opened under.
    user_activity().end_sockets(user["id"])
    return Response(status=204)
