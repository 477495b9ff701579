"""SQLite: one connection per request, WAL mode, migrations applied at start-up."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import Flask, current_app, g

# Each entry upgrades the schema by one version (PRAGMA user_version); never edit one
# that has shipped — append a new one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        username TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        is_admin INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    );
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE TABLE login_failures (
        key TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX login_failures_key ON login_failures(key, at);
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        key_hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        created_at REAL NOT NULL,
        last_used_at REAL,
        revoked_at REAL
    );
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        title TEXT NOT NULL,
        system_prompt TEXT NOT NULL DEFAULT '',
        model TEXT NOT NULL DEFAULT '',
        temperature REAL,
        top_p REAL,
        max_tokens INTEGER,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX conversations_user ON conversations(user_id, updated_at DESC);
    CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
        content TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('complete', 'stopped', 'failed', 'streaming')),
        attachments TEXT NOT NULL DEFAULT '[]',
        sources TEXT NOT NULL DEFAULT '[]',
        usage TEXT,
        finish_reason TEXT,
        error TEXT,
        created_at REAL NOT NULL,
        UNIQUE (conversation_id, seq)
    );
    CREATE TABLE files (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        text TEXT NOT NULL,
        chunk_count INTEGER NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX files_user ON files(user_id, created_at DESC);
    CREATE VIRTUAL TABLE chunks USING fts5(
        text, file_id UNINDEXED, ordinal UNINDEXED, tokenize = 'unicode61'
    );
    """,
    # The extracted text's length, stored: a chat turn decides whether a file fits without
    # SQLite reading the whole text to count it (length() does).
    """
    ALTER TABLE files ADD COLUMN chars INTEGER;
    UPDATE files SET chars = length(text);
    """,
    # Conversations become trees (message_tree.py): each message's parent, and the leaf the
    # conversation shows. The flat conversations so far become one branch each, in order.
    # No foreign key on parent_id: a branch is deleted as a whole by the store, and SQLite's
    # cascades would recurse once per message of a long conversation.
    """
    ALTER TABLE messages ADD COLUMN parent_id TEXT;
    ALTER TABLE conversations ADD COLUMN active_leaf_id TEXT;
    UPDATE messages SET parent_id = (
        SELECT before.id FROM messages AS before
        WHERE before.conversation_id = messages.conversation_id AND before.seq < messages.seq
        ORDER BY before.seq DESC LIMIT 1
    );
    UPDATE conversations SET active_leaf_id = (
        SELECT id FROM messages WHERE conversation_id = conversations.id
        ORDER BY seq DESC LIMIT 1
    );
    CREATE INDEX messages_parent ON messages(conversation_id, parent_id, seq);
    """,
    # Search in what was said (conversation_store.search_messages): an FTS5 index over the
    # messages' text, kept by triggers, so every write path (a turn, a branch deleted, a
    # conversation's cascade) keeps it true. An answer is indexed once it has ended, not at
    # each of its once-a-second saves while it streams. External content (the text is not
    # stored twice) keyed on messages' rowid: a VACUUM may renumber those, so after one the
    # index is built again (docs/operators.md, "After a VACUUM").
    """
    CREATE VIRTUAL TABLE messages_fts USING fts5(
        content, content = 'messages', content_rowid = 'rowid',
        tokenize = 'unicode61 remove_diacritics 2'
    );
    INSERT INTO messages_fts (rowid, content)
        SELECT rowid, content FROM messages WHERE status != 'streaming';
    CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages
    WHEN new.status != 'streaming' BEGIN
        INSERT INTO messages_fts (rowid, content) VALUES (new.rowid, new.content);
    END;
    -- One trigger, two statements in this order: the old text's postings go before the new
    -- text's come (two triggers would fire in an order SQLite does not promise).
    CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, status ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, content)
            SELECT 'delete', old.rowid, old.content WHERE old.status != 'streaming';
        INSERT INTO messages_fts (rowid, content)
            SELECT new.rowid, new.content WHERE new.status != 'streaming';
    END;
    CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
    WHEN old.status != 'streaming' BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, content)
            VALUES ('delete', old.rowid, old.content);
    END;
    """,
    # Who titled a conversation (titles.py): `auto` (its first words), `model` or `user`.
    # Existing ones keep their titles: only one still called "New chat" may get the model's.
    """
    ALTER TABLE conversations ADD COLUMN title_source TEXT NOT NULL DEFAULT 'user';
    UPDATE conversations SET title_source = 'auto' WHERE title = 'New chat';
    """,
    # When an answer ended: with created_at (its start) and its usage, the page shows how
    # long it took and how fast it came. Answers stored before have none.
    """
    ALTER TABLE messages ADD COLUMN finished_at REAL;
    """,
    # Which model wrote an answer: a conversation may switch models between turns, and the
    # page says who answered. Answers stored before (and questions) have none.
    """
    ALTER TABLE messages ADD COLUMN model TEXT;
    """,
    # When a message was last the active leaf, as a counter per conversation: switching back
    # to a branch opens the continuation the user last looked at below it, not the newest.
    """
    ALTER TABLE messages ADD COLUMN shown_seq INTEGER;
    """,
]


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def now() -> float:
    return time.time()


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode = WAL")  # readers never wait for the writer
    conn.execute("PRAGMA busy_timeout = 10000")  # writers queue instead of failing
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = NORMAL")  # durable at checkpoints; safe with WAL
    return conn


def migrate(path: Path) -> int:
    """Bring the schema to the newest version; return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            upgrade = f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;"
            conn.executescript(upgrade)
        return len(MIGRATIONS)
    finally:
        conn.close()


def db() -> sqlite3.Connection:
    """This request's connection, opened on first use and closed at teardown."""
    if "db" not in g:
        g.db = connect(current_app.extensions["chatstack_settings"].db_path)
    return g.db


# One writer at a time inside the process, waited for cooperatively. Under the gevent
# worker every request and turn is a greenlet of one thread: were two to meet at SQLite's
# own lock, the second would sleep in SQLite's busy handler and stall the whole event loop
# (the first could not even run to COMMIT). SQLite's busy_timeout is left for other
# processes (a backup, the sqlite3 shell).
_WRITE_LOCK = threading.RLock()


@contextmanager
def transaction(conn: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT, rolled back on error: a write is all or nothing. Keep
    slow work (a password hash, a call to the model API) out of the block."""
    conn = conn or db()
    with _WRITE_LOCK:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


@contextmanager
def snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN … COMMIT around reads: they all see one state of the database (WAL: a reader
    takes no lock a writer waits for)."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")


def release() -> None:
    """Close this request's connection now, not at teardown: a WebSocket's request lives as
    long as the socket, and thousands of idle sockets must not hold a connection each (its
    page cache and three descriptors)."""
    conn = g.pop("db", None)
    if conn is not None:
        conn.close()


def init_app(app: Flask) -> None:
    @app.teardown_appcontext
    def _close(_exc: BaseException | None) -> None:
        release()
