"""Per-user upload limits: how many uploads one user has in progress, and their storage.

Counted in this process (the app service runs one worker process), under one lock: each
user's uploads in progress, and the bytes of those received but not yet stored. A stored
file counts through its row's `size`; an upload in flight counts through its reservation
until its row is committed, so parallel uploads cannot overshoot the quota together.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from chatstack.errors import APIError

MiB = 1024 * 1024
#: What a 429 tells the client to wait: an upload's extraction usually takes seconds.
RETRY_AFTER_SECONDS = 5


def mib(size: int) -> str:
    """A size for people: `0.6 MiB`, `12 MiB`, `199.5 MiB`."""
    return f"{size / MiB:.1f}".removesuffix(".0") + " MiB"


class UploadLimits:
    """At most `max_in_progress` uploads per user at once, and `storage_bytes` stored."""

    def __init__(self, max_in_progress: int, storage_bytes: int) -> None:
        self.max_in_progress = max_in_progress
        self.storage_bytes = storage_bytes
        self._lock = threading.Lock()
        self._in_progress: Counter[str] = Counter()
        self._reserved: Counter[str] = Counter()

    @contextmanager
    def slot(self, user_id: str) -> Iterator[None]:
        """Hold one of the user's upload slots for the block; none free → 429."""
        with self._lock:
            if self._in_progress[user_id] >= self.max_in_progress:
                raise APIError(
                    429,
                    f"You already have {self._in_progress[user_id]} uploads in progress, the "
                    "most at once. Wait for one to finish, then upload again.",
                    param="file",
                    code="too_many_uploads",
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                )
            self._in_progress[user_id] += 1
        try:
            yield
        finally:
            with self._lock:
                _decrement(self._in_progress, user_id, 1)

    @contextmanager
    def room(self, user_id: str, size: int, stored_bytes: Callable[[], int]) -> Iterator[None]:
        """Reserve `size` bytes of the user's quota while the block stores the file; → 413.

        `stored_bytes()` (the sum of the user's stored files) is read under the lock, so a
        file whose row was just committed counts at least once: by its row, its
        reservation, or briefly both — never neither.
        """
        with self._lock:
            used = stored_bytes() + self._reserved[user_id]
            if used + size > self.storage_bytes:
                raise APIError(
                    413,
                    f"This file ({mib(size)}) does not fit in your storage: you are using "
                    f"{mib(used)} of your {mib(self.storage_bytes)}. Delete files you no "
                    "longer need to make room.",
                    param="file",
                    code="quota_exceeded",
                )
            self._reserved[user_id] += size
        try:
            yield
        finally:
            with self._lock:
                _decrement(self._reserved, user_id, size)


def _decrement(counts: Counter[str], key: str, by: int) -> None:
    counts[key] -= by
    if counts[key] <= 0:
        del counts[key]
