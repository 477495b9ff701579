"""What each user has open right now: chat sockets and answers generating, with the
per-user limits on both (USER_MAX_SOCKETS, USER_MAX_ACTIVE_TURNS).

One gunicorn worker holds every socket, so this is process state: a registry the chat
socket, the /v1 pass-through and the account routes share. It lets one user's tabs or
scripts use their share without taking the service from everyone else, and lets a
logout or a password change close the sockets of the sessions it ends.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from flask import current_app

from chatstack.errors import APIError

log = logging.getLogger(__name__)

# WebSocket close codes (4000-4999 are the application's; docs/protocol.md). A client
# must not reconnect by itself after either: the server ended the socket on purpose.
CLOSE_SESSION_ENDED = 4001
CLOSE_REPLACED = 4008


class LiveSocket(Protocol):
    """What the registry needs of an open chat socket."""

    def end(self, code: int, reason: str) -> None:
        """Close from the server's side; the user's answers go on (turn_registry.py)."""


@dataclass
class _Entry:
    socket: LiveSocket
    session: str  # the hash of the session token the socket was opened with


@dataclass
class _User:
    sockets: list[_Entry] = field(default_factory=list)  # oldest first
    active_turns: int = 0


class UserActivity:
    """Per-user open sockets and generating answers; every method is thread-safe."""

    def __init__(self, max_sockets: int, max_active_turns: int) -> None:
        self.max_sockets = max_sockets
        self.max_active_turns = max_active_turns
        self._users: dict[str, _User] = {}
        self._lock = threading.Lock()

    # ---- sockets -------------------------------------------------------------------------

    def add_socket(self, user_id: str, session: str, socket: LiveSocket) -> None:
        """Register an open socket; past USER_MAX_SOCKETS the user's oldest one is closed
        (a forgotten tab, most often), so the tab just opened always works."""
        with self._lock:
            user = self._users.setdefault(user_id, _User())
            user.sockets.append(_Entry(socket, session))
            evicted = user.sockets[: max(len(user.sockets) - self.max_sockets, 0)]
        for entry in evicted:
            log.info("user %s has over %d sockets: closing the oldest", user_id, self.max_sockets)
            entry.socket.end(
                CLOSE_REPLACED,
                f"Closed: this account has more than {self.max_sockets} chat tabs open.",
            )
            self.remove_socket(user_id, entry.socket)

    def remove_socket(self, user_id: str, socket: LiveSocket) -> None:
        with self._lock:
            user = self._users.get(user_id)
            if user is None:
                return
            user.sockets = [e for e in user.sockets if e.socket is not socket]
            self._forget_if_idle(user_id, user)

    def end_sockets(self, user_id: str, *, session: str | None = None) -> int:
        """Close the user's sockets — only those of `session` when given (a logout), else
        all of them (a password change). Returns how many were closed."""
        with self._lock:
            user = self._users.get(user_id)
            entries = [
                e for e in (user.sockets if user else []) if session is None or e.session == session
            ]
        for entry in entries:
            entry.socket.end(CLOSE_SESSION_ENDED, "Signed out: the session ended.")
            self.remove_socket(user_id, entry.socket)
        return len(entries)

    # ---- answers generating --------------------------------------------------------------

    def try_start_turn(self, user_id: str) -> bool:
        """Count one more answer generating for the user, unless at the limit."""
        with self._lock:
            user = self._users.setdefault(user_id, _User())
            if user.active_turns >= self.max_active_turns:
                return False
            user.active_turns += 1
            return True

    def end_turn(self, user_id: str) -> None:
        with self._lock:
            user = self._users.get(user_id)
            if user is None:
                return
            user.active_turns = max(user.active_turns - 1, 0)
            self._forget_if_idle(user_id, user)

    def start_turn(self, user_id: str) -> None:
        """try_start_turn, or the 429 that names the limit."""
        if not self.try_start_turn(user_id):
            raise too_many_turns(self.max_active_turns)

    @contextmanager
    def turn(self, user_id: str) -> Iterator[None]:
        self.start_turn(user_id)
        try:
            yield
        finally:
            self.end_turn(user_id)

    def _forget_if_idle(self, user_id: str, user: _User) -> None:
        if not user.sockets and not user.active_turns:
            self._users.pop(user_id, None)


def too_many_turns(limit: int) -> APIError:
    return APIError(
        429,
        f"You already have {limit} answers being generated, the most one account may have at "
        "once (USER_MAX_ACTIVE_TURNS). Wait for one to finish or stop it.",
        code="too_many_active_turns",
        headers={"Retry-After": "5"},
    )


def user_activity() -> UserActivity:
    return current_app.extensions["chatstack_user_activity"]
