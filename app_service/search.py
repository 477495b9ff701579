"""Search in what was said: the sidebar's query against the FTS5 index of messages
(db.py, migration 4), scoped to one user, each hit with a snippet and where it matched.

What a person types is never FTS5 syntax: every word becomes a quoted phrase (so `AND`,
`NEAR(`, `col:` or a stray `"` are just words), all of them must match, and the last one
matches as a prefix, so results come while the word is still being typed.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

# Marks around a match inside a snippet: characters of Unicode's private use area, which no
# keyboard types; the API sends offsets instead, so no client parses markup out of text.
OPEN, CLOSE = "\ue000", "\ue001"
SNIPPET_TOKENS = 16
MAX_WORDS = 12
WORD = re.compile(r"\w+", re.UNICODE)


def fts_query(text: str) -> str | None:
    """A user's words as an FTS5 query, or None when there is no word to look for."""
    words = WORD.findall(text.replace(OPEN, " ").replace(CLOSE, " "))[:MAX_WORDS]
    if not words:
        return None
    phrases = [f'"{word}"' for word in words]
    phrases[-1] += "*"
    return " ".join(phrases)


def highlighted(snippet: str) -> tuple[str, list[list[int]]]:
    """The snippet's text without the marks, and the [start, end) offsets they enclosed."""
    text: list[str] = []
    spans: list[list[int]] = []
    length = 0
    start: int | None = None
    for part in re.split(f"([{OPEN}{CLOSE}])", snippet):
        if part == OPEN:
            start = length
        elif part == CLOSE:
            if start is not None and length > start:
                spans.append([start, length])
            start = None
        else:
            text.append(part)
            length += len(part)
    return "".join(text), spans


def search_messages(
    conn: sqlite3.Connection, user_id: str, query: str, limit: int = 200
) -> dict[str, dict[str, Any]]:
    """conversation id → its best-matching message (`message_id`, `role`, `snippet`,
    `highlights`), for the user's conversations whose messages match `query`."""
    match = fts_query(query)
    if match is None:
        return {}
    rows = conn.execute(
        "SELECT m.id, m.conversation_id, m.role, "
        f"snippet(messages_fts, 0, ?, ?, '…', {SNIPPET_TOKENS}) AS snippet "
        "FROM messages_fts JOIN messages AS m ON m.rowid = messages_fts.rowid "
        "JOIN conversations AS c ON c.id = m.conversation_id "
        "WHERE messages_fts MATCH ? AND c.user_id = ? ORDER BY rank LIMIT ?",
        (OPEN, CLOSE, match, user_id, limit * 5),
    ).fetchall()
    best: dict[str, dict[str, Any]] = {}
    for row in rows:  # best rank first: the first hit of each conversation is its best
        if row["conversation_id"] in best:
            continue
        text, spans = highlighted(row["snippet"])
        best[row["conversation_id"]] = {
            "message_id": row["id"],
            "role": row["role"],
            "snippet": text,
            "highlights": spans,
        }
        if len(best) == limit:
            break
    return best
