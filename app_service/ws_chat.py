"""The chat WebSocket (/ws): session-cookie auth, Origin check, JSON frames.

The socket's greenlet reads client frames and hands turns to the registry
(turn_registry.py), which runs each on a greenlet of its own to its end, socket or not;
a writer greenlet sends the frames of all the user's turns. Frames: frames.py,
docs/protocol.md. The socket's request id (the handshake's) names the connection; the n-th
turn it starts is `<id>.<n>`. Every socket is registered in the user's activity
(user_activity.py), which bounds a user's sockets and closes them when their session ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
from typing import Any

import simple_websocket.ws
from flask import Blueprint, Flask, current_app, request
from flask_sock import Sock
from wsproto.extensions import PerMessageDeflate

from app_service import db, frames
from app_service.accounts import current_user, session_token, token_hash
from app_service.frames import (
    ClientFrame,
    ContinueFrame,
    EditFrame,
    PingFrame,
    RegenerateFrame,
    ResumeFrame,
    SendFrame,
    StopFrame,
    TurnFrame,
    parse_frame,
)
from app_service.metrics import app_metrics
from app_service.settings import Settings
from app_service.turn import TurnRequest
from app_service.turn_registry import TurnRegistry, turn_registry
from app_service.user_activity import user_activity
from chatstack.errors import APIError
from chatstack.logs import current_request_id

log = logging.getLogger(__name__)

bp = Blueprint("ws_chat", __name__)
sock = Sock()

# Room for `.<n>` within the 128 characters a request id may have (chatstack/logs.py).
CONNECTION_ID_CHARS = 100
# Frames a socket may have waiting to be sent before it counts as too slow (about 1 MB).
OUTBOX_FRAMES = 4096
CLOSE_TOO_SLOW = 1013  # "try again later": the client reconnects and resumes


class _NoCompression(PerMessageDeflate):
    """Declines permessage-deflate. Chat frames are small JSON (a delta is a few words), and
    with compression every socket keeps a zlib compressor of ~256 KB once it has sent one
    frame: most of an idle socket's memory, for no gain."""

    def accept(self, offer: str) -> bool:
        return False


def init_app(app: Flask) -> None:
    # simple_websocket offers no setting for it: its handshake builds `PerMessageDeflate()`
    # from its module's namespace, so the declining kind goes there.
    simple_websocket.ws.PerMessageDeflate = _NoCompression  # type: ignore[misc]
    settings: Settings = app.extensions["chatstack_settings"]
    app.config["SOCK_SERVER_OPTIONS"] = {
        "ping_interval": settings.ws_ping_seconds,  # keeps proxies from closing idle sockets
        "max_message_size": settings.ws_max_message_bytes,
    }
    sock.init_app(app)


@bp.before_request
def check_handshake() -> None:
    """Before the upgrade: a page of another site may not open a socket as our user."""
    settings: Settings = current_app.extensions["chatstack_settings"]
    origin = request.headers.get("Origin", "").rstrip("/")
    if origin not in settings.site_origins:
        raise APIError(403, "This origin may not open the chat socket.", code="origin_not_allowed")
    current_user()  # 401 without a live session


class ChatSocket:
    """One browser tab's socket: it starts and stops the user's turns and carries the
    frames of all of them (turn_registry.py). It owns no turn: closing it stops nothing.

    Frames go out through a queue and a writer thread of their own, so a turn publishing to
    the account's sockets never waits on a slow one; a socket that falls OUTBOX_FRAMES behind
    is closed (1013) and its client reconnects and resumes."""

    def __init__(
        self,
        ws: Any,
        registry: TurnRegistry,
        user_id: str,
        *,
        connection_id: str,
    ) -> None:
        self.ws = ws
        self.registry = registry
        self.user_id = user_id
        self.connection_id = connection_id[:CONNECTION_ID_CHARS]
        self.turns = 0
        self.last_conversation: str | None = None  # of the last turn this socket started
        self.outbox: queue.Queue[dict[str, Any] | None] = queue.Queue(OUTBOX_FRAMES)
        self._overflowed = False
        self._writer: threading.Thread | None = None

    def deliver(self, frame: dict[str, Any]) -> None:
        """Queue a frame for this socket; never blocks (turns call it under their lock)."""
        try:
            self.outbox.put_nowait(frame)
        except queue.Full:
            if not self._overflowed:
                self._overflowed = True
                log.warning("a chat socket fell %d frames behind: closing it", OUTBOX_FRAMES)
                threading.Thread(
                    target=self.end,
                    args=(CLOSE_TOO_SLOW, "Too slow to read its frames."),
                    daemon=True,
                ).start()

    def _write(self) -> None:
        while True:
            frame = self.outbox.get()
            if frame is None:
                return
            try:
                self.ws.send(json.dumps(frame, ensure_ascii=False))
            except Exception:  # the client is gone: the reader sees it and closes
                log.debug("socket closed while sending", exc_info=True)
                return

    def serve(self) -> None:
        self._writer = threading.Thread(target=self._write, name="ws-writer", daemon=True)
        self._writer.start()
        self.deliver(frames.Ready().wire())
        # After `ready`: a `resume` for each turn running, then every frame of the user's turns.
        self.registry.subscribe(self.user_id, self.deliver)
        try:
            while True:
                raw = self.ws.receive()
                if raw is None:
                    continue
                try:
                    self.handle(parse_frame(raw))
                except APIError as exc:  # an invalid frame
                    self.deliver(frames.error_frame(exc))
        finally:
            self.close()

    def handle(self, frame: ClientFrame) -> None:
        if isinstance(frame, PingFrame):
            self.deliver(frames.Pong().wire())
        elif isinstance(frame, StopFrame):
            conversation_id = frame.conversation_id or self.last_conversation
            if conversation_id:
                self.registry.stop(self.user_id, conversation_id)
        elif isinstance(frame, ResumeFrame):
            if not self.registry.resume(self.user_id, frame.conversation_id, self.deliver):
                self.deliver(frames.Idle(conversation_id=frame.conversation_id).wire())
        elif isinstance(frame, SendFrame | EditFrame | RegenerateFrame | ContinueFrame):
            self.start(frame)

    def start(self, frame: TurnFrame) -> None:
        overrides = frame.settings.model_dump(exclude_none=True) if frame.settings else {}
        if isinstance(frame, SendFrame):
            request_ = TurnRequest(
                "send", frame.conversation_id, frame.content, frame.file_ids, overrides
            )
        elif isinstance(frame, EditFrame):
            request_ = TurnRequest(
                "edit",
                frame.conversation_id,
                frame.content,
                frame.file_ids,
                overrides,
                message_id=frame.message_id,
            )
        else:
            request_ = TurnRequest(frame.type, frame.conversation_id, overrides=overrides)
        try:
            self.registry.start(
                self.user_id, request_, request_id=f"{self.connection_id}.{self.turns + 1}"
            )
        except APIError as exc:  # busy, too many turns: nothing was stored
            self.deliver(frames.error_frame(exc, frame.conversation_id))
            return
        self.turns += 1
        self.last_conversation = frame.conversation_id

    def close(self) -> None:
        """The socket is gone: it stops listening; the user's answers go on."""
        self.registry.unsubscribe(self.user_id, self.deliver)
        # Full: the writer still has frames, and its next send fails on the closed socket.
        with contextlib.suppress(queue.Full):
            self.outbox.put_nowait(None)

    def end(self, code: int, reason: str) -> None:
        """Close from the server's side (a logout, too many tabs, too slow): the close frame
        tells the client why. The user's answers go on."""
        try:
            self.ws.close(reason=code, message=reason)
        except Exception:  # already closed by the client: nothing to tell it
            log.debug("socket already closed", exc_info=True)
        # Wake serve(), which waits for the next frame; without this it would wait for
        # the client's close reply, which a vanished client never sends.
        event = getattr(self.ws, "event", None)
        if event is not None:
            event.set()


@sock.route("/ws", bp=bp)
def chat_socket(ws: Any) -> None:
    metrics = app_metrics()
    activity = user_activity()
    user_id = current_user()["id"]
    chat = ChatSocket(ws, turn_registry(), user_id, connection_id=current_request_id())
    session = token_hash(session_token())
    db.release()  # the socket may stay open for days: it needs no connection meanwhile
    activity.add_socket(user_id, session, chat)
    try:
        with metrics.open_websockets.track_inprogress():
            chat.serve()
    finally:
        activity.remove_socket(user_id, chat)
