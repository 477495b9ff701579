"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app_service import db


@pytest.fixture
def conn(tmp_path: Path) -> Iterator:
    """A migrated app database with two users, `u` and `other`."""
    path = tmp_path / "app.db"
    db.migrate(path)
    connection = db.connect(path)
    for user in ("u", "other"):
        connection.execute(
            "INSERT INTO users (id, username, password_hash, created_at) VALUES (?, ?, 'h', 0)",
            (user, user),
        )
    yield connection
    connection.close()
