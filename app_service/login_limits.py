"""Limits on password guesses (logins and password changes), kept in `login_failures`.

An attempt is *reserved* before the password is checked: counting the recent failures and
recording this attempt happen in one BEGIN IMMEDIATE transaction, so guesses sent in
parallel cannot all see a count under the limit. A right password releases the
reservation; a wrong one leaves it as the failure it was.

The limits for a login (LOGIN_ATTEMPTS per LOGIN_WINDOW_SECONDS by default):
- account + address, LOGIN_ATTEMPTS: the tight one. A guesser elsewhere cannot lock the
  owner out, because the owner's address has a count of its own;
- address, × ADDRESS_ALLOWANCE: one address guessing at many accounts. Many people may
  share one address (an office behind NAT), so it allows more;
- account, × ACCOUNT_ALLOWANCE over ACCOUNT_WINDOWS windows: a ceiling on guesses at one
  account from many addresses at once, high enough that one guesser does not reach it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from app_service.db import now, transaction
from app_service.settings import Settings
from chatstack.errors import APIError

ADDRESS_ALLOWANCE = 5
ACCOUNT_ALLOWANCE = 10
ACCOUNT_WINDOWS = 4
KEEP_SECONDS = 86400  # failures older than this (or than the longest window) are deleted


@dataclass(frozen=True)
class Limit:
    key: str
    attempts: int
    window: float


def login_limits(settings: Settings, username: str, address: str) -> list[Limit]:
    """The limits a login counts against; the first is the account's from this address."""
    attempts, window = settings.login_attempts, settings.login_window_seconds
    account = username.lower()
    return [
        Limit(f"login:{account}|{address}", attempts, window),
        Limit(f"addr:{address}", attempts * ADDRESS_ALLOWANCE, window),
        Limit(f"user:{account}", attempts * ACCOUNT_ALLOWANCE, window * ACCOUNT_WINDOWS),
    ]


def password_change_limits(settings: Settings, user_id: str) -> list[Limit]:
    """A stolen session must not become a way to guess the current password."""
    return [Limit(f"password:{user_id}", settings.login_attempts, settings.login_window_seconds)]


def reserve_attempt(
    conn: sqlite3.Connection, limits: list[Limit], *, message: str, code: str
) -> list[int]:
    """Count this attempt against every limit, or refuse it (429 with Retry-After) when
    one is used up. Returns the reservation for `release_attempt`."""
    with transaction(conn):
        at = now()
        for limit in limits:
            count, oldest = conn.execute(
                "SELECT COUNT(*), MIN(at) FROM login_failures WHERE key = ? AND at > ?",
                (limit.key, at - limit.window),
            ).fetchone()
            if count >= limit.attempts:
                retry = max(int(oldest + limit.window - at) + 1, 1)
                raise APIError(429, message, code=code, headers={"Retry-After": str(retry)})
        keep = max([KEEP_SECONDS, *(limit.window for limit in limits)])
        conn.execute("DELETE FROM login_failures WHERE at < ?", (at - keep,))
        return [
            conn.execute(
                "INSERT INTO login_failures (key, at) VALUES (?, ?)", (limit.key, at)
            ).lastrowid
            for limit in limits
        ]


def release_attempt(
    conn: sqlite3.Connection, reservation: list[int], forgive: tuple[Limit, ...] = ()
) -> None:
    """The password was right: this attempt was no failure, and earlier failures under
    the `forgive` limits (the owner's own, from where they got in) no longer count."""
    with transaction(conn):
        conn.executemany("DELETE FROM login_failures WHERE rowid = ?", [(r,) for r in reservation])
        for limit in forgive:
            conn.execute("DELETE FROM login_failures WHERE key = ?", (limit.key,))
