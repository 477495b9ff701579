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
