"""Conversations and messages in SQLite: every query is scoped to its owner.

Functions take a connection so that the HTTP routes (a request's connection) and the
chat turn (its own thread's connection) share them.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from app_service import message_tree as tree
from app_service.db import new_id, now, snapshot, transaction
from app_service.search import search_messages
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


def message_dict(row: sqlite3.Row, sibling_ids: list[str] | None = None) -> dict[str, Any]:
    """A stored message; `sibling_ids` (its own among them, oldest first) default to its own
    alone — callers that know the conversation pass them (`message_out`)."""
    return {
        "id": row["id"],
        "conversation_id": row["conversation_id"],
        "parent_id": row["parent_id"],
        "sibling_ids": sibling_ids if sibling_ids is not None else [row["id"]],
        "role": row["role"],
        "content": row["content"],
        "status": row["status"],
        "attachments": json.loads(row["attachments"]),
        "sources": json.loads(row["sources"]),
        "usage": json.loads(row["usage"]) if row["usage"] else None,
        "finish_reason": row["finish_reason"],
        "error": row["error"],
        "created_at": row["created_at"],
        "finished_at": row["finished_at"],
        "model": row["model"],
    }


# ---- conversations ----------------------------------------------------------------------


def create_conversation(conn: sqlite3.Connection, user_id: str, fields: dict[str, Any]) -> str:
    conversation_id = new_id("conv")
    stamp = now()
    conn.execute(
        "INSERT INTO conversations (id, user_id, title, title_source, system_prompt, model, "
        "temperature, top_p, max_tokens, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            conversation_id,
            user_id,
            fields.get("title") or DEFAULT_TITLE,
            "user" if fields.get("title") else "auto",
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


def search_conversations(
    conn: sqlite3.Connection, user_id: str, query: str, limit: int = 200
) -> list[dict[str, Any]]:
    """The sidebar's search: conversations whose title contains `query` or whose messages
    match it (search.py), newest first, each with `match` — its best message hit, or null
    when only the title matched."""
    with snapshot(conn):
        by_title = list_conversations(conn, user_id, query, limit)
        hits = search_messages(conn, user_id, query, limit)
        known = {row["id"] for row in by_title}
        more = [cid for cid in hits if cid not in known]
        rows = list(by_title)
        if more:
            marks = ",".join("?" * len(more))
            rows += conn.execute(
                f"SELECT * FROM conversations WHERE user_id = ? AND id IN ({marks})",
                (user_id, *more),
            ).fetchall()
    rows.sort(key=lambda r: r["updated_at"], reverse=True)
    return [{**conversation_dict(r), "match": hits.get(r["id"])} for r in rows[:limit]]


def update_conversation(
    conn: sqlite3.Connection, user_id: str, conversation_id: str, fields: dict[str, Any]
) -> None:
    """Rename or set up. `updated_at` stays: the list is ordered by activity (messages),
    and a rename must not move a chat to the top. A title set here is the user's: the
    model's title never replaces it (titles.py)."""
    get_conversation(conn, user_id, conversation_id)
    allowed = {k: v for k, v in fields.items() if k in ("title", *SETTING_FIELDS)}
    if not allowed:
        return
    if "title" in allowed:
        allowed["title_source"] = "user"
    assignments = ", ".join(f"{name} = ?" for name in allowed)
    conn.execute(
        f"UPDATE conversations SET {assignments} WHERE id = ? AND user_id = ?",
        (*allowed.values(), conversation_id, user_id),
    )


def set_first_words_title(conn: sqlite3.Connection, conversation_id: str, title: str) -> None:
    """A new conversation is called by its first message until the model titles it."""
    conn.execute(
        "UPDATE conversations SET title = ? WHERE id = ? AND title_source = 'auto' AND title = ?",
        (title, conversation_id, DEFAULT_TITLE),
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
    """Every message of the conversation, all branches, oldest first."""
    return conn.execute(
        "SELECT * FROM messages WHERE conversation_id = ? ORDER BY seq", (conversation_id,)
    ).fetchall()


def active_path(conn: sqlite3.Connection, conversation: sqlite3.Row) -> list[sqlite3.Row]:
    return tree.active_path(messages_of(conn, conversation["id"]), conversation["active_leaf_id"])


def path_dicts(rows: list[sqlite3.Row], path: list[sqlite3.Row]) -> list[dict[str, Any]]:
    """The messages of `path`, each with its siblings among `rows` (the whole tree)."""
    return [message_dict(m, tree.sibling_ids(rows, m)) for m in path]


def get_message(conn: sqlite3.Connection, message_id: str) -> sqlite3.Row:
    return conn.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()


def message_out(conn: sqlite3.Connection, row: sqlite3.Row) -> dict[str, Any]:
    """A message as clients get it: with the ids of its siblings (`‹ 2/3 ›`)."""
    siblings = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM messages WHERE conversation_id = ? AND parent_id IS ? ORDER BY seq",
            (row["conversation_id"], row["parent_id"]),
        )
    ]
    return message_dict(row, siblings)


def add_message(
    conn: sqlite3.Connection,
    conversation_id: str,
    role: str,
    content: str,
    status: str,
    attachments: list[dict[str, Any]] | None = None,
    *,
    parent_id: str | None,
    model: str | None = None,
) -> str:
    """Add a message below `parent_id` (None: a first message) and make it the active leaf
    (its own transaction: it is on disk when this returns); an answer names its `model`."""
    message_id = new_id("msg")
    with transaction(conn):
        seq = conn.execute(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE conversation_id = ?",
            (conversation_id,),
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO messages (id, conversation_id, parent_id, seq, role, content, status, "
            "attachments, created_at, model) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                message_id,
                conversation_id,
                parent_id,
                seq,
                role,
                content,
                status,
                json.dumps(attachments or []),
                now(),
                model,
            ),
        )
        set_active_leaf(conn, conversation_id, message_id)
        touch_conversation(conn, conversation_id)
    return message_id


def insert_imported_message(
    conn: sqlite3.Connection,
    conversation_id: str,
    *,
    message_id: str,
    parent_id: str | None,
    seq: int,
    message: Any,
) -> None:
    """One message of an import (importer.py), in the caller's transaction."""
    conn.execute(
        "INSERT INTO messages (id, conversation_id, parent_id, seq, role, content, status, "
        "attachments, sources, usage, finish_reason, error, created_at, finished_at, model) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            message_id,
            conversation_id,
            parent_id,
            seq,
            message.role,
            message.content,
            message.status,
            json.dumps(message.attachments),
            json.dumps(message.sources),
            json.dumps(message.usage) if message.usage else None,
            message.finish_reason,
            message.error,
            message.created_at,
            message.finished_at,
            message.model,
        ),
    )


def set_active_leaf(conn: sqlite3.Connection, conversation_id: str, leaf_id: str | None) -> None:
    """Show the branch ending at `leaf_id`, and remember that it was the last one shown below
    each of its ancestors (message_tree.branch_leaf)."""
    conn.execute(
        "UPDATE conversations SET active_leaf_id = ? WHERE id = ?", (leaf_id, conversation_id)
    )
    if leaf_id is not None:
        conn.execute(
            "UPDATE messages SET shown_seq = (SELECT COALESCE(MAX(shown_seq), 0) + 1 "
            "FROM messages WHERE conversation_id = ?) WHERE id = ?",
            (conversation_id, leaf_id),
        )


def _message_in(rows: list[sqlite3.Row], message_id: str) -> sqlite3.Row:
    for row in rows:
        if row["id"] == message_id:
            return row
    raise APIError(
        404, "No such message in this conversation.", param="message_id", code="message_not_found"
    )


def select_branch(
    conn: sqlite3.Connection, user_id: str, conversation_id: str, message_id: str
) -> None:
    """Show the branch through `message_id`: the continuation last shown below it (else its
    newest) becomes the active leaf (remembered, so a reload and the next turn follow it)."""
    with transaction(conn):
        get_conversation(conn, user_id, conversation_id)
        rows = messages_of(conn, conversation_id)
        _message_in(rows, message_id)
        leaf = tree.branch_leaf(rows, message_id)
        assert leaf is not None
        set_active_leaf(conn, conversation_id, leaf["id"])


def delete_branch(
    conn: sqlite3.Connection, user_id: str, conversation_id: str, message_id: str
) -> int:
    """Delete `message_id` and everything below it. If the active leaf was among them, the
    conversation shows the newest remaining message under the same parent (a sibling's
    branch), else the parent itself. Returns how many messages went."""
    with transaction(conn):
        conversation = get_conversation(conn, user_id, conversation_id)
        rows = messages_of(conn, conversation_id)
        doomed = tree.subtree(rows, _message_in(rows, message_id)["id"])
        doomed_ids = {row["id"] for row in doomed}
        conn.executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in doomed_ids])
        kept = [row for row in rows if row["id"] not in doomed_ids]
        path_ids = {row["id"] for row in tree.active_path(rows, conversation["active_leaf_id"])}
        if path_ids & doomed_ids:
            parent = doomed[0]["parent_id"]
            siblings = tree.children(kept).get(parent, [])
            anchor = siblings[-1]["id"] if siblings else parent
            leaf = tree.newest_leaf(kept, anchor) if anchor is not None else None
            set_active_leaf(conn, conversation_id, leaf["id"] if leaf is not None else None)
        touch_conversation(conn, conversation_id)
    return len(doomed_ids)


@dataclass
class TurnInputs:
    """What a chat turn reads before it asks the model: one consistent read."""

    conversation: sqlite3.Row
    tree: list[sqlite3.Row]  # every message, all branches, oldest first
    messages: list[sqlite3.Row]  # the active path, oldest first
    existing_file_ids: set[str]  # of the ids asked about, the user's files that still exist


def load_for_turn(
    conn: sqlite3.Connection, user_id: str, conversation_id: str, file_ids: list[str]
) -> TurnInputs:
    """The conversation (404 if not the user's), its messages and active path, and which of
    `file_ids` and of the files attached in the conversation still exist."""
    with snapshot(conn):
        conversation = get_conversation(conn, user_id, conversation_id)
        rows = messages_of(conn, conversation_id)
        ids = list(dict.fromkeys(file_ids))
        for message in rows:
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
    path = tree.active_path(rows, conversation["active_leaf_id"])
    return TurnInputs(conversation, rows, path, existing)


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
        "sources = ?, error = ?, finished_at = ? WHERE id = ?",
        (
            content,
            status,
            finish_reason,
            json.dumps(usage) if usage else None,
            json.dumps(sources or []),
            error,
            now(),
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
