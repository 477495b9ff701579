"""What the chat code reads of a user's files: their sizes, a prefix of a text, or the best
chunks for a question. Nothing here reads a whole file unless asked for that many characters.

Every function takes the user's id and answers 404 (`file_not_found`, param `file_ids`) for
any id that is missing or belongs to someone else, exactly alike.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass

from chatstack.errors import APIError

# FTS5's unicode61 tokenizer splits on everything that is not a letter or a number, so
# these are the only words a query can usefully carry. Quoting each one leaves no FTS5
# syntax (AND, NOT, NEAR, *, ^, column:, parentheses) for user text to trigger.
_WORD = re.compile(r"[^\W_]+")
MAX_QUERY_WORDS = 64
# Dropped from a query when it has other words: they match nearly every chunk.
_STOP_WORDS = (
    "a an and are as at be but by can could do does for from had has have how i if in is it "
    "its me my of on or our so that the their them then there these this to was we were what "
    "when where which who why will with would you your"
)
STOP_WORDS = frozenset(_STOP_WORDS.split())


@dataclass(frozen=True)
class FileInfo:
    id: str
    name: str
    chars: int  # the extracted text's length in characters


@dataclass(frozen=True)
class Chunk:
    file_id: str
    file_name: str
    ordinal: int
    text: str
    # -bm25(chunks): higher is better; 0.0 for the fallback chunks of a query with no match.
    score: float


def files_for_user(conn: sqlite3.Connection, user_id: str, file_ids: list[str]) -> list[FileInfo]:
    """The user's files (id, name, length of the text), in the order given (repeats dropped).

    The texts stay in SQLite: a turn asks `file_text` for the ones whose length fits."""
    ids = _unique(file_ids)
    if not ids:
        return []
    rows = conn.execute(
        f"SELECT id, name, COALESCE(chars, length(text)) FROM files "
        f"WHERE user_id = ? AND id IN ({_marks(ids)})",
        (user_id, *ids),
    ).fetchall()
    found = {row[0]: FileInfo(row[0], row[1], int(row[2])) for row in rows}
    _require_all(ids, found)
    return [found[i] for i in ids]


def file_text(conn: sqlite3.Connection, user_id: str, file_id: str, max_chars: int) -> str:
    """The first `max_chars` characters of one of the user's files (SQLite cuts it, so a
    20 MB text never reaches Python for a prompt that has room for a page)."""
    row = conn.execute(
        "SELECT substr(text, 1, ?) FROM files WHERE user_id = ? AND id = ?",
        (max(0, max_chars), user_id, file_id),
    ).fetchone()
    if row is None:
        raise _not_found(file_id)
    return row[0]


def best_chunks(
    conn: sqlite3.Connection, user_id: str, file_ids: list[str], query: str, limit: int
) -> list[Chunk]:
    """Up to `limit` chunks of these files that best match `query` (BM25), best first.

    A query with no usable words, or whose words match nothing, gives the files' opening
    chunks instead: every file's first chunk (in the order given), then every second, …
    """
    ids = _unique(file_ids)
    names = _file_names(conn, user_id, ids)
    if not ids or limit <= 0:
        return []
    match = fts_query(query)
    if match is not None:
        rows = conn.execute(
            "SELECT file_id, ordinal, text, bm25(chunks) AS badness FROM chunks "
            f"WHERE chunks MATCH ? AND file_id IN ({_marks(ids)}) ORDER BY badness LIMIT ?",
            (match, *ids, limit),
        ).fetchall()
        if rows:
            return [Chunk(r[0], names[r[0]], int(r[1]), r[2], -float(r[3])) for r in rows]
    return _opening_chunks(conn, ids, names, limit)


def fts_query(text: str) -> str | None:
    """User text → a safe FTS5 query: each word quoted, ORed; None when no word is left."""
    words: list[str] = []
    for word in _WORD.findall(text.lower()):
        if word not in words:
            words.append(word)
    meaningful = [w for w in words if w not in STOP_WORDS] or words
    if not meaningful:
        return None
    return " OR ".join(f'"{w}"' for w in meaningful[:MAX_QUERY_WORDS])


def _opening_chunks(
    conn: sqlite3.Connection, ids: list[str], names: dict[str, str], limit: int
) -> list[Chunk]:
    position = {file_id: i for i, file_id in enumerate(ids)}
    rows = conn.execute(
        f"SELECT file_id, ordinal, text FROM chunks WHERE file_id IN ({_marks(ids)}) "
        "AND ordinal < ?",
        (*ids, limit),
    ).fetchall()
    rows.sort(key=lambda r: (int(r[1]), position[r[0]]))
    return [Chunk(r[0], names[r[0]], int(r[1]), r[2], 0.0) for r in rows[:limit]]


def _file_names(conn: sqlite3.Connection, user_id: str, ids: list[str]) -> dict[str, str]:
    if not ids:
        return {}
    rows = conn.execute(
        f"SELECT id, name FROM files WHERE user_id = ? AND id IN ({_marks(ids)})",
        (user_id, *ids),
    ).fetchall()
    names = {row[0]: row[1] for row in rows}
    _require_all(ids, names)
    return names


def _require_all(ids: list[str], found: dict[str, object]) -> None:
    missing = [i for i in ids if i not in found]
    if missing:
        raise _not_found(missing[0])


def _not_found(file_id: str) -> APIError:
    return APIError(404, f"No such file: '{file_id}'.", param="file_ids", code="file_not_found")


def _unique(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def _marks(ids: list[str]) -> str:
    return ", ".join("?" * len(ids))
