"""Noticing a client that went away while its non-streamed answer is generated."""

from __future__ import annotations

import select
import socket
from collections.abc import Callable
from typing import Any


def client_gone_checker(environ: dict[str, Any]) -> Callable[[], bool]:
    """A check that is True once the client closed its connection.

    gunicorn hands the request's socket to the app; a closed peer makes it readable with
    nothing to read. Without that socket (another server) the check never fires.
    """
    sock = environ.get("gunicorn.socket")
    if not isinstance(sock, socket.socket):
        return lambda: False

    def gone() -> bool:
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    return gone
