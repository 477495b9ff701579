"""Migrations: a database made by an older schema is brought up to date without loss."""

from __future__ import annotations

from pathlib import Path

from app_service import db


def test_files_get_their_stored_length_when_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = db.connect(path)
    conn.executescript(f"BEGIN;\n{db.MIGRATIONS[0]}\nPRAGMA user_version = 1;\nCOMMIT;")
    conn.execute(
        "INSERT INTO users (id, username, password_hash, created_at) VALUES ('u', 'u', 'h', 0)"
    )
    conn.execute(
        "INSERT INTO files (id, user_id, name, kind, size, sha256, text, chunk_count, created_at)"
        " VALUES ('f', 'u', 'a.txt', 'text', 5, 'x', 'héllo', 1, 0)"
    )
    conn.close()

    assert db.migrate(path) == len(db.MIGRATIONS)
    conn = db.connect(path)
    row = conn.execute("SELECT text, chars FROM files WHERE id = 'f'").fetchone()
    assert (row["text"], row["chars"]) == ("héllo", 5)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(db.MIGRATIONS)
    conn.close()


def test_flat_conversations_become_one_branch_each_with_nothing_lost(tmp_path: Path) -> None:
    """A database made by schema 2 (before trees): every message gets the one before it as
    its parent, and the conversation's active leaf is its last message."""
    path = tmp_path / "flat.db"
    conn = db.connect(path)
    for number, script in enumerate(db.MIGRATIONS[:2], start=1):
        conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
    conn.execute(
        "INSERT INTO users (id, username, password_hash, created_at) VALUES ('u', 'u', 'h', 0)"
    )
    for cid in ("c1", "c2", "empty"):
        conn.execute(
            "INSERT INTO conversations (id, user_id, title, created_at, updated_at) "
            "VALUES (?, 'u', ?, 0, 0)",
            (cid, cid),
        )
    rows = [("c1", 1, "user", "hi"), ("c1", 2, "assistant", "hello"), ("c1", 3, "user", "bye")]
    rows += [("c2", 1, "user", "q"), ("c2", 2, "assistant", "a")]
    for cid, seq, role, content in rows:
        conn.execute(
            "INSERT INTO messages (id, conversation_id, seq, role, content, status, created_at) "
            "VALUES (?, ?, ?, ?, ?, 'complete', 0)",
            (f"{cid}-{seq}", cid, seq, role, content),
        )
    before = [tuple(r) for r in conn.execute("SELECT id, content FROM messages ORDER BY id")]
    conn.close()

    assert db.migrate(path) == len(db.MIGRATIONS)
    conn = db.connect(path)
    parents = dict(conn.execute("SELECT id, parent_id FROM messages").fetchall())
    assert parents == {
        "c1-1": None,
        "c1-2": "c1-1",
        "c1-3": "c1-2",
        "c2-1": None,
        "c2-2": "c2-1",
    }
    leaves = dict(conn.execute("SELECT id, active_leaf_id FROM conversations").fetchall())
    assert leaves == {"c1": "c1-3", "c2": "c2-2", "empty": None}
    assert [tuple(r) for r in conn.execute("SELECT id, content FROM messages ORDER BY id")] == (
        before
    )
    conn.close()
