"""Conversations and messages in SQLite: every query is scoped to its owner.

Functions take a connection so that the HTTP routes (a request's connection) and the
chat turn (its own thread's connection) share them.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from app_service.db import new_id, now, snapshot, transaction
from chatstack.errors import APIError

DEFAULT_TITLE = "New chat"
SETTING_FIELDS = ("system_prompt", "model", "temperature", "top_p", "max_tokens")


def conversation_dict(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "title": row["title"],
        "system_prompt": row["system_prompt"],
        "model": row["model"],
        "temperature": row["temperature"],
        "top_p": row["top_p"],
        "max_tokens": row["max_tokens"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def message_dict(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "conversation_id": row["conversation_id"],
        "role": row["role"],
        "content": row["content"],
        "status": row["status"],
        "attachments": json.loads(row["attachments"]),
        "sources": json.loads(row["sources"]),
        "usage": json.loads(row["usage"]) if row["usage"] else None,
        "finish_reason": row["finish_reason"],
        "error": row["error"],
        "created_at": row["created_at"],
    }


# ---- conversations ----------------------------------------------------------------------


def create_conversation(conn: sqlite3.Connection, user_id: str, fields: dict[str, Any]) -> str:
    conversation_id = new_id("conv")
    stamp = now()
    conn.execute(
        "INSERT INTO conversations (id, user_id, title, system_prompt, model, temperature, "
        "top_p, max_tokens, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            conversation_id,
            user_id,
            fields.get("title") or DEFAULT_TITLE,
            fields.get("system_prompt") or "",
            fields.get("model") or "",
            fields.get("temperature"),
            fields.get("top_p"),
            fields.get("max_tokens"),
            stamp,
            stamp,
        ),
    )
    return conversation_id


def get_conversation(conn: sqlite3.Connection, user_id: str, conversation_id: str) -> sqlite3.Row:
    """The user's conversation; another user's, like a missing one, is a 404."""
    row = conn.execute(
        "SELECT * FROM conversations WHERE id = ? AND user_id = ?", (conversation_id, user_id)
    ).fetchone()
    if row is None:
        raise APIError(
            404, "No such conversation.", param="conversation_id", code="conversation_not_found"
        )
    return row


def list_conversations(
    conn: sqlite3.Connection, user_id: str, query: str = "", limit: int = 200
) -> list[sqlite3.Row]:
    """Newest first; `query` filters by title, case-insensitively."""
    pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return conn.execute(
        "SELECT * FROM conversations WHERE user_id = ? AND title LIKE ? ESCAPE '\\' "
        "ORDER BY updated_at DESC LIMIT ?",
        (user_id, pattern, limit),
    ).fetchall()


def update_conversation(
    conn: sqlite3.Connection, user_id: str, conversation_id: str, fields: dict[str, Any]
) -> None:
    get_conversation(conn, user_id, conversation_id)
    allowed = {k: v for k, v in fields.items() if k in ("title", *SETTING_FIELDS)}
    if not allowed:
        return
    assignments = ", ".join(f"{name} = ?" for name in allowed)
    conn.execute(
        f"UPDATE conversations SET {assignments}, updated_at = ? WHERE id = ? AND user_id = ?",
        (*allowed.values(), now(), conversation_id, user_id),
    )


def delete_conversation(conn: sqlite3.Connection, user_id: str, conversation_id: str) -> None:
    get_conversation(conn, user_id, conversation_id)
    conn.execute(
        "DELETE FROM conversations WHERE id = ? AND user_id = ?", (conversation_id, user_id)
    )


def touch_conversation(conn: sqlite3.Connection, conversation_id: str) -> None:
    conn.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now(), conversation_id))


# ---- messages ---------------------------------------------------------------------------


def messages_of(conn: sqlite3.Connection, conversation_id: str) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT * FROM messages WHERE conversation_id = ? ORDER BY seq", (conversation_id,)
    ).fetchall()


def get_message(conn: sqlite3.Connection, message_id: str) -> sqlite3.Row:
    return conn.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()


def add_message(
    conn: sqlite3.Connection,
    conversation_id: str,
    role: str,
    content: str,
    status: str,
    attachments: list[dict[str, Any]] | None = None,
) -> str:
    """Append a message (its own transaction: it is on disk when this returns)."""
    message_id = new_id("msg")
    with transaction(conn):
        seq = conn.execute(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE conversation_id = ?",
            (conversation_id,),
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO messages (id, conversation_id, seq, role, content, status, attachments, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                message_id,
                conversation_id,
                seq,
                role,
                content,
                status,
                json.dumps(attachments or []),
                now(),
            ),
        )
        touch_conversation(conn, conversation_id)
    return message_id


@dataclass
class TurnInputs:
    """What a chat turn reads before it asks the model: one consistent read."""

    conversation: sqlite3.Row
    messages: list[sqlite3.Row]  # oldest first
    existing_file_ids: set[str]  # of the ids asked about, the user's files that still exist


def load_for_turn(
    conn: sqlite3.Connection, user_id: str, conversation_id: str, file_ids: list[str]
) -> TurnInputs:
    """The conversation (404 if not the user's), its messages, and which of `file_ids` and
    of the files attached in the conversation still exist."""
    with snapshot(conn):
        conversation = get_conversation(conn, user_id, conversation_id)
        messages = messages_of(conn, conversation_id)
        ids = list(dict.fromkeys(file_ids))
        for message in messages:
            ids += [a["id"] for a in json.loads(message["attachments"]) if a["id"] not in ids]
        existing: set[str] = set()
        if ids:
            marks = ",".join("?" * len(ids))
            existing = {
                row[0]
                for row in conn.execute(
                    f"SELECT id FROM files WHERE user_id = ? AND id IN ({marks})", (user_id, *ids)
                )
            }
    return TurnInputs(conversation, messages, existing)


def save_partial(conn: sqlite3.Connection, message_id: str, content: str) -> None:
    """What has streamed so far, so a crash loses at most the last moments of an answer."""
    conn.execute("UPDATE messages SET content = ? WHERE id = ?", (content, message_id))


def reopen_message(conn: sqlite3.Connection, message_id: str) -> None:
    """A continue: the answer streams again; its text, usage and sources stay until the end."""
    conn.execute(
        "UPDATE messages SET status = 'streaming', error = NULL WHERE id = ?", (message_id,)
    )


def finish_message(
    conn: sqlite3.Connection,
    message_id: str,
    *,
    content: str,
    status: str,
    finish_reason: str | None = None,
    usage: dict[str, Any] | None = None,
    sources: list[dict[str, Any]] | None = None,
    error: str | None = None,
) -> None:
    conn.execute(
        "UPDATE messages SET content = ?, status = ?, finish_reason = ?, usage = ?, "
        "sources = ?, error = ? WHERE id = ?",
        (
            content,
            status,
            finish_reason,
            json.dumps(usage) if usage else None,
            json.dumps(sources or []),
            error,
            message_id,
        ),
    )


def delete_message(conn: sqlite3.Connection, message_id: str) -> None:
    conn.execute("DELETE FROM messages WHERE id = ?", (message_id,))


def recover_interrupted(conn: sqlite3.Connection) -> int:
    """Answers cut off by a restart keep their text and are marked failed."""
    cursor = conn.execute(
        "UPDATE messages SET status = 'failed', error = ? WHERE status = 'streaming'",
        ("The app service restarted while this answer was being generated.",),
    )
    return cursor.rowcount
