"""Password hashes: making one and checking one, in one place.

Both are deliberately slow (scrypt, werkzeug's default: tens of milliseconds of CPU). Under
the app service's gevent worker they run in gevent's pool of native threads: scrypt releases
the GIL, so the event loop keeps serving every other socket meanwhile. Never call them
inside a database transaction: the caller waits there, holding the write lock.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

from werkzeug.security import check_password_hash, generate_password_hash

T = TypeVar("T")


def hash_password(password: str) -> str:
    """A salted scrypt hash of `password`, as stored in users.password_hash."""
    return _off_loop(generate_password_hash, password)


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
    return _off_loop(check_password_hash, stored_hash, password)


def _off_loop(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` on one of gevent's native threads when the standard library is
    patched (the gunicorn gevent worker), else right here (tests, scripts)."""
    try:
        from gevent import get_hub, monkey
    except ImportError:  # the model API's image has no gevent; nothing to move off
        return function(*args)
    if not monkey.is_module_patched("threading"):
        return function(*args)
    return get_hub().threadpool.apply(function, args)
