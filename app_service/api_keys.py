"""Per-user API keys for the /v1 pass-through: create (shown once), list, revoke.

A key is `cs-` + 43 random URL-safe characters. The database keeps its SHA-256 and a short
prefix to recognise it by, so a leaked database does not leak usable keys.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from typing import Any

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel, ConfigDict, Field

from app_service.accounts import current_user, login_required
from app_service.bodies import json_body
from app_service.db import db, new_id, now, transaction
from chatstack.errors import APIError
from chatstack.validation import parse_body

bp = Blueprint("api_keys", __name__, url_prefix="/api/keys")

KEY_PREFIX = "cs-"
SHOWN_PREFIX_CHARS = 10  # "cs-" + 7 random characters: enough to tell keys apart
MAX_ACTIVE_KEYS = 50
# last_used_at is for people ("used today?"): one write a minute per key is plenty.
LAST_USED_RESOLUTION_SECONDS = 60.0


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)
    name: str = Field(min_length=1, max_length=100)


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def public_key(row: sqlite3.Row) -> dict[str, Any]:
    """A key as its owner may see it again: never the secret, nor its hash."""
    return {
        "id": row["id"],
        "name": row["name"],
        "prefix": row["prefix"],
        "created_at": row["created_at"],
        "last_used_at": row["last_used_at"],
        "revoked_at": row["revoked_at"],
        "revoked": row["revoked_at"] is not None,
    }


# ---- who is calling /v1 -------------------------------------------------------------------


def user_for_api_key(authorization: str | None) -> sqlite3.Row:
    """The user whose live key is in `Authorization: Bearer <key>`, or an OpenAI-shaped 401."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise APIError(
            401,
            "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'; "
            "create one under /api/keys.",
            code="missing_api_key",
            error_type="invalid_request_error",
        )
    row = (
        db()
        .execute(
            "SELECT api_keys.id AS key_id, api_keys.revoked_at, api_keys.last_used_at, users.* "
            "FROM api_keys JOIN users ON users.id = api_keys.user_id WHERE key_hash = ?",
            (key_hash(token),),
        )
        .fetchone()
    )
    if row is None or row["revoked_at"] is not None:
        shown = token[:SHOWN_PREFIX_CHARS] + "…" if len(token) > SHOWN_PREFIX_CHARS else "…"
        reason = "has been revoked" if row is not None else "is not valid"
        raise APIError(
            401,
            f"Incorrect API key provided: {shown} {reason}.",
            code="invalid_api_key",
            error_type="invalid_request_error",
        )
    used = now()
    if row["last_used_at"] is None or used - row["last_used_at"] > LAST_USED_RESOLUTION_SECONDS:
        with transaction() as conn:
            conn.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (used, row["key_id"]))
    return row


# ---- routes --------------------------------------------------------------------------------


@bp.post("")
@login_required
def create_key() -> tuple[Response, int]:
    spec = parse_body(json_body(), KeyCreate)
    user = current_user()
    key = new_key()
    key_id = new_id("key")
    with transaction() as conn:
        active = conn.execute(
            "SELECT COUNT(*) FROM api_keys WHERE user_id = ? AND revoked_at IS NULL",
            (user["id"],),
        ).fetchone()[0]
        if active >= MAX_ACTIVE_KEYS:
            raise APIError(
                409,
                f"You have {MAX_ACTIVE_KEYS} active API keys. Revoke one to create another.",
                code="too_many_api_keys",
            )
        conn.execute(
            "INSERT INTO api_keys (id, user_id, name, key_hash, prefix, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (key_id, user["id"], spec.name, key_hash(key), key[:SHOWN_PREFIX_CHARS], now()),
        )
    row = db().execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    body = {
        "id": row["id"],
        "name": row["name"],
        "prefix": row["prefix"],
        "created_at": row["created_at"],
        # The only time the key leaves the server: it cannot be recovered from its hash.
        "key": key,
    }
    return jsonify(body), 201


@bp.get("")
@login_required
def list_keys() -> Response:
    rows = (
        db()
        .execute(
            "SELECT * FROM api_keys WHERE user_id = ? ORDER BY created_at DESC, id",
            (current_user()["id"],),
        )
        .fetchall()
    )
    return jsonify({"object": "list", "data": [public_key(row) for row in rows]})


@bp.delete("/<key_id>")
@login_required
def revoke_key(key_id: str) -> Response:
    with transaction() as conn:
        row = conn.execute(
            "SELECT revoked_at FROM api_keys WHERE id = ? AND user_id = ?",
            (key_id, current_user()["id"]),
        ).fetchone()
        if row is None:
            raise APIError(404, "No such API key.", param="id", code="not_found")
        if row["revoked_at"] is None:
            conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (now(), key_id))
    return Response(status=204)
