"""Password hashes: making one and checking one, in one place.

Both are deliberately slow (scrypt, werkzeug's default). They are plain functions so that
they can be moved off the event loop (a thread pool) here, without touching a caller.
"""

from __future__ import annotations

import functools
import secrets

from werkzeug.security import check_password_hash, generate_password_hash


def hash_password(password: str) -> str:
    """A salted scrypt hash of `password`, as stored in users.password_hash."""
    return generate_password_hash(password)


def check_password(stored_hash: str | None, password: str) -> bool:
    """Whether `password` matches `stored_hash`, compared in constant time.

    `None` (no such user) checks against a dummy hash of the same cost and is never a
    match: an unknown username takes as long to refuse as a wrong password, so timing does
    not tell a guesser which names exist.
    """
    if stored_hash is None:
        _verify(dummy_hash(), password)
        return False
    return _verify(stored_hash, password)


@functools.cache
def dummy_hash() -> str:
    """A hash nobody knows the password of, made once per process with today's parameters."""
    return hash_password(secrets.token_urlsafe(32))


def _verify(stored_hash: str, password: str) -> bool:
    # werkzeug recomputes the hash and compares with hmac.compare_digest.
    return check_password_hash(stored_hash, password)
