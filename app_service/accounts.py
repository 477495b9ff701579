"""Accounts and browser sessions: register, log in, log out, change password.

A session is a random token in a `Secure; HttpOnly; SameSite=Strict` cookie; the
database keeps only its hash, so a leaked database does not leak live sessions.
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
from werkzeug.security import check_password_hash, generate_password_hash

from app_service.bodies import json_body
from app_service.db import db, new_id, now, transaction
from app_service.settings import Settings
from chatstack.errors import APIError
from chatstack.validation import parse_body

bp = Blueprint("accounts", __name__, url_prefix="/api/auth")

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
        g.user = session_user(request.cookies.get(SESSION_COOKIE))
    if g.user is None:
        raise APIError(401, "You are not logged in.", code="not_authenticated")
    return g.user


def login_required(view: F) -> F:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        current_user()
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


# ---- sessions and rate limits --------------------------------------------------------------


def start_session(response: Response, user_id: str) -> Response:
    token = secrets.token_urlsafe(32)
    lifetime = settings().session_days * 86400
    db().execute(
        "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
        (token_hash(token), user_id, now(), now() + lifetime),
    )
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=lifetime,
        secure=settings().cookie_secure,
        httponly=True,
        samesite="Strict",
        path="/",
    )
    return response


def end_session(response: Response) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        db().execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash(token),))
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        secure=settings().cookie_secure,
        httponly=True,
        samesite="Strict",
    )
    return response


def client_address() -> str:
    # nginx puts the peer's address in X-Real-IP; directly, the socket's peer is it.
    return request.headers.get("X-Real-IP") or request.remote_addr or "unknown"


# Many people may share one address (an office behind NAT): the address gets more tries
# than one account does, so a guesser cannot lock a whole office out.
ADDRESS_ALLOWANCE = 5


def login_limits(username: str) -> list[tuple[str, int]]:
    attempts = settings().login_attempts
    return [
        (f"user:{username.lower()}", attempts),
        (f"addr:{client_address()}", attempts * ADDRESS_ALLOWANCE),
    ]


def check_login_rate(username: str) -> None:
    """Too many failed logins for this name or from this address → 429."""
    window = settings().login_window_seconds
    since = now() - window
    for key, limit in login_limits(username):
        count, oldest = (
            db()
            .execute(
                "SELECT COUNT(*), MIN(at) FROM login_failures WHERE key = ? AND at > ?",
                (key, since),
            )
            .fetchone()
        )
        if count >= limit:
            retry = max(int(oldest + window - now()) + 1, 1)
            raise APIError(
                429,
                "Too many failed login attempts. Try again later.",
                code="too_many_login_attempts",
                headers={"Retry-After": str(retry)},
            )


def record_login_failure(username: str) -> None:
    with transaction() as conn:
        conn.execute("DELETE FROM login_failures WHERE at < ?", (now() - 86400,))
        for key, _limit in login_limits(username):
            conn.execute("INSERT INTO login_failures (key, at) VALUES (?, ?)", (key, now()))


# ---- routes --------------------------------------------------------------------------------


@bp.post("/register")
def register() -> Response:
    creds = parse_body(json_body(), Credentials)
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
            (user_id, creds.username, generate_password_hash(creds.password), not has_users, now()),
        )
    row = db().execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
    response = jsonify({"user": public_user(row)})
    response.status_code = 201
    return start_session(response, user_id)


@bp.post("/login")
def login() -> Response:
    creds = parse_body(json_body(), LoginRequest)
    check_login_rate(creds.username)
    row = db().execute("SELECT * FROM users WHERE username = ?", (creds.username,)).fetchone()
    if row is None or not check_password_hash(row["password_hash"], creds.password):
        record_login_failure(creds.username)
        raise APIError(401, "Wrong username or password.", code="invalid_credentials")
    with transaction() as conn:
        # The owner got in: earlier guesses at this account no longer count against them.
        conn.execute(
            "DELETE FROM login_failures WHERE key = ?", (login_limits(row["username"])[0][0],)
        )
        conn.execute("DELETE FROM sessions WHERE expires_at < ?", (now(),))
    return start_session(jsonify({"user": public_user(row)}), row["id"])


@bp.post("/logout")
def logout() -> Response:
    return end_session(Response(status=204))


@bp.get("/me")
@login_required
def me() -> Response:
    return jsonify({"user": public_user(current_user()), "registration": settings().registration})


@bp.post("/password")
@login_required
def change_password() -> Response:
    change = parse_body(json_body(), PasswordChange)
    user = current_user()
    if not check_password_hash(user["password_hash"], change.current_password):
        raise APIError(
            403,
            "The current password is wrong.",
            param="current_password",
            code="invalid_credentials",
        )
    keep = token_hash(request.cookies.get(SESSION_COOKIE, ""))
    with transaction() as conn:
        conn.execute(
            "UPDATE users SET password_hash = ? WHERE id = ?",
            (generate_password_hash(change.new_password), user["id"]),
        )
        # Every other session of this user ends: a changed password locks out old devices.
        conn.execute(
            "DELETE FROM sessions WHERE user_id = ? AND token_hash != ?", (user["id"], keep)
        )
    return Response(status=204)
