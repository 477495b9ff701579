"""The chat WebSocket (/ws): session-cookie auth, Origin check, JSON frames.

The socket's greenlet reads client frames; each chat turn streams on a greenlet of its
own, so a `stop` frame is read while the answer is still arriving. Frames:
docs/protocol.md. The socket's request id (the handshake's) names the connection; turn n
is `<id>.<n>`. Every socket is registered in the user's activity (user_activity.py),
which bounds a user's sockets and answers and closes them when their session ends.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Literal

import simple_websocket.ws
from flask import Blueprint, Flask, current_app, request
from flask_sock import Sock
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from wsproto.extensions import PerMessageDeflate

from app_service import db
from app_service.accounts import current_user, session_token, token_hash
from app_service.chat import ChatTurn, TurnRequest
from app_service.metrics import AppMetrics, app_metrics
from app_service.settings import Settings
from app_service.user_activity import UserActivity, user_activity
from chatstack.errors import APIError
from chatstack.logs import current_request_id
from chatstack.validation import load_json, param_path

log = logging.getLogger(__name__)

bp = Blueprint("ws_chat", __name__)
sock = Sock()

# Room for `.<n>` within the 128 characters a request id may have (chatstack/logs.py).
CONNECTION_ID_CHARS = 100


class TurnSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    model: str | None = Field(None, max_length=200)
    system_prompt: str | None = Field(None, max_length=20_000)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1, le=131_072)


class SendFrame(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["send"]
    conversation_id: str = Field(max_length=100)
    content: str = Field(min_length=1, max_length=100_000)
    file_ids: list[str] = Field(default_factory=list, max_length=20)
    settings: TurnSettings | None = None


class RegenerateFrame(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["regenerate"]
    conversation_id: str = Field(max_length=100)
    settings: TurnSettings | None = None


class ControlFrame(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["stop", "ping"]
    conversation_id: str | None = None


FRAMES: dict[str, type[BaseModel]] = {
    "send": SendFrame,
    "regenerate": RegenerateFrame,
    "stop": ControlFrame,
    "ping": ControlFrame,
}


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


def parse_frame(raw: str | bytes) -> BaseModel:
    """A client frame → its model; not JSON, too deeply nested, or invalid → a 400."""
    try:
        data = load_json(raw)
    except APIError:
        raise APIError(400, "Frames must be JSON objects.", code="invalid_json") from None
    if not isinstance(data, dict) or data.get("type") not in FRAMES:
        raise APIError(
            400,
            f"Unknown frame type; use one of {', '.join(FRAMES)}.",
            param="type",
            code="invalid_frame",
        )
    try:
        return FRAMES[data["type"]].model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        param = param_path(tuple(first["loc"]))
        raise APIError(
            400, f"Invalid value for '{param}': {first['msg']}", param=param, code="invalid_frame"
        ) from None


class ChatSocket:
    """One browser tab's socket: at most one turn streams at a time."""

    def __init__(
        self,
        ws: Any,
        settings: Settings,
        pool: Any,
        user_id: str,
        *,
        connection_id: str,
        metrics: AppMetrics | None = None,
        activity: UserActivity | None = None,
    ) -> None:
        self.ws = ws
        self.settings = settings
        self.pool = pool
        self.user_id = user_id
        self.connection_id = connection_id[:CONNECTION_ID_CHARS]
        self.metrics = metrics
        self.activity = activity or UserActivity(
            settings.user_max_sockets, settings.user_max_active_turns
        )
        self.turns = 0
        self.send_lock = threading.Lock()
        self.turn: ChatTurn | None = None
        self.thread: threading.Thread | None = None

    def send(self, frame: dict[str, Any]) -> None:
        with self.send_lock:  # the turn's thread and this one both send
            self.ws.send(json.dumps(frame, ensure_ascii=False))

    def serve(self) -> None:
        self.send({"type": "ready"})
        try:
            while True:
                raw = self.ws.receive()
                if raw is None:
                    continue
                try:
                    self.handle(parse_frame(raw))
                except APIError as exc:
                    self.send(
                        {
                            "type": "error",
                            "error": exc.message,
                            "code": exc.code,
                            "conversation_id": None,
                            "message": None,
                        }
                    )
        finally:
            self.close()

    def handle(self, frame: BaseModel) -> None:
        if isinstance(frame, ControlFrame):
            if frame.type == "ping":
                self.send({"type": "pong"})
            elif self.turn is not None:
                self.turn.stop()
            return
        if self.turn is not None and not self.turn.finished.is_set():
            raise APIError(409, "An answer is still being generated; stop it first.", code="busy")
        self.activity.start_turn(self.user_id)  # too_many_active_turns past the limit
        overrides = frame.settings.model_dump(exclude_none=True) if frame.settings else {}
        if isinstance(frame, SendFrame):
            request_ = TurnRequest(
                "send", frame.conversation_id, frame.content, frame.file_ids, overrides
            )
        else:
            request_ = TurnRequest("regenerate", frame.conversation_id, overrides=overrides)
        self.turns += 1
        self.turn = ChatTurn(
            self.settings,
            self.pool,
            self.user_id,
            request_,
            self.send,
            request_id=f"{self.connection_id}.{self.turns}",
            metrics=self.metrics,
            on_finished=lambda: self.activity.end_turn(self.user_id),
        )
        # A new thread starts with an empty context: ChatTurn.run sets the turn's id there.
        self.thread = threading.Thread(target=self.turn.run, name="chat-turn", daemon=True)
        self.thread.start()

    def close(self) -> None:
        """The socket is gone: a streaming answer stops and is stored as `stopped`."""
        if self.turn is not None:
            self.turn.stop()
        if self.thread is not None:
            self.thread.join(timeout=10)

    def end(self, code: int, reason: str) -> None:
        """Close from the server's side (a logout, too many tabs): the answer streaming
        stops, and the close frame tells the client why and not to reconnect."""
        if self.turn is not None:
            self.turn.stop()
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
    settings = current_app.extensions["chatstack_settings"]
    pool = current_app.extensions["chatstack_upstreams"]
    metrics = app_metrics()
    activity = user_activity()
    user_id = current_user()["id"]
    chat = ChatSocket(
        ws,
        settings,
        pool,
        user_id,
        connection_id=current_request_id(),
        metrics=metrics,
        activity=activity,
    )
    session = token_hash(session_token())
    db.release()  # the socket may stay open for days: it needs no connection meanwhile
    activity.add_socket(user_id, session, chat)
    try:
        with metrics.open_websockets.track_inprogress():
            chat.serve()
    finally:
        activity.remove_socket(user_id, chat)
