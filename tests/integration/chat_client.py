"""A WebSocket chat client for tests: the browser's side of docs/protocol.md."""

from __future__ import annotations

import json
from typing import Any

import requests
import simple_websocket

# A prompt that, at temperature 0, runs to the 1500-token limit on fp32 and int4 weights,
# alone and after another turn: long enough for a test to act mid-answer.
LONG_ANSWER = "Write a very long story about a dragon who learns to cook, with many chapters."
LONG_TOKENS = 1500
LONG = {"temperature": 0, "max_tokens": LONG_TOKENS}


def ws_url(app_url: str) -> str:
    return app_url.replace("http://", "ws://", 1) + "/ws"


class ChatClient:
    def __init__(self, app_url: str, session: requests.Session, origin: str | None = None):
        cookies = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
        headers = {"Origin": origin or app_url}
        if cookies:
            headers["Cookie"] = cookies
        self.ws = simple_websocket.Client.connect(ws_url(app_url), headers=headers)
        assert self.recv()["type"] == "ready"

    def send(self, **frame: Any) -> None:
        self.ws.send(json.dumps(frame))

    def recv(self, timeout: float = 60) -> dict[str, Any]:
        raw = self.ws.receive(timeout=timeout)
        assert raw is not None, "no frame within the timeout"
        return json.loads(raw)

    def until(self, *types: str, timeout: float = 120) -> tuple[dict[str, Any], list[dict]]:
        """Frames until one of `types` arrives: (that frame, every frame before it)."""
        seen = []
        while True:
            frame = self.recv(timeout)
            if frame["type"] in types:
                return frame, seen
            seen.append(frame)

    def close(self) -> None:
        close_websocket(self.ws)


def new_conversation(app_url: str, session: requests.Session, **fields: Any) -> str:
    reply = session.post(app_url + "/api/conversations", json=fields)
    assert reply.status_code == 201, reply.text
    return reply.json()["id"]


def close_websocket(ws: simple_websocket.Client) -> None:
    """Close and let the reader thread close the socket. Client.close() closes it under the
    thread's pending recv(), which can then read the first bytes of the next socket given
    the same descriptor (the next TLS handshake fails with WRONG_VERSION_NUMBER)."""
    simple_websocket.ws.Base.close(ws)  # the close frame; the server answers and hangs up
    ws.thread.join(timeout=10)
    if ws.thread.is_alive():
        ws.sock.close()
