"""Every chat-socket frame as a typed model (docs/protocol.md): what clients may send,
validated at the edge, and what the server sends, built only through these models.

tests/unit/test_frames.py checks the server frames field by field against `ServerFrame` in
web/src/api/types.ts, so the browser and the server cannot drift apart silently.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chatstack.errors import APIError
from chatstack.validation import load_json, param_path

# ---- client → server ---------------------------------------------------------------------


class ClientFrame(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TurnSettings(ClientFrame):
    model: str | None = Field(None, max_length=200)
    system_prompt: str | None = Field(None, max_length=20_000)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1, le=131_072)


class SendFrame(ClientFrame):
    type: Literal["send"]
    conversation_id: str = Field(max_length=100)
    content: str = Field(min_length=1, max_length=100_000)
    file_ids: list[str] = Field(default_factory=list, max_length=20)
    settings: TurnSettings | None = None


class EditFrame(ClientFrame):
    """An earlier question asked again with new text: a sibling of `message_id` and a new
    answer below it; the original and its answers stay, one `‹ ›` away."""

    type: Literal["edit"]
    conversation_id: str = Field(max_length=100)
    message_id: str = Field(max_length=100)
    content: str = Field(min_length=1, max_length=100_000)
    file_ids: list[str] = Field(default_factory=list, max_length=20)
    settings: TurnSettings | None = None


class RegenerateFrame(ClientFrame):
    type: Literal["regenerate"]
    conversation_id: str = Field(max_length=100)
    settings: TurnSettings | None = None


class ContinueFrame(ClientFrame):
    type: Literal["continue"]
    conversation_id: str = Field(max_length=100)
    settings: TurnSettings | None = None


class StopFrame(ClientFrame):
    type: Literal["stop"]
    conversation_id: str | None = Field(None, max_length=100)


class ResumeFrame(ClientFrame):
    type: Literal["resume"]
    conversation_id: str = Field(max_length=100)


class PingFrame(ClientFrame):
    type: Literal["ping"]
    conversation_id: str | None = Field(None, max_length=100)  # accepted and ignored


TurnFrame = SendFrame | EditFrame | RegenerateFrame | ContinueFrame

CLIENT_FRAMES: dict[str, type[ClientFrame]] = {
    "send": SendFrame,
    "edit": EditFrame,
    "regenerate": RegenerateFrame,
    "continue": ContinueFrame,
    "stop": StopFrame,
    "resume": ResumeFrame,
    "ping": PingFrame,
}


def parse_frame(raw: str | bytes) -> ClientFrame:
    """A client frame → its model; not JSON, too deeply nested, or invalid → a 400."""
    try:
        data = load_json(raw)
    except APIError:
        raise APIError(400, "Frames must be JSON objects.", code="invalid_json") from None
    if not isinstance(data, dict) or data.get("type") not in CLIENT_FRAMES:
        raise APIError(
            400,
            f"Unknown frame type; use one of {', '.join(CLIENT_FRAMES)}.",
            param="type",
            code="invalid_frame",
        )
    try:
        return CLIENT_FRAMES[data["type"]].model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        param = param_path(tuple(first["loc"]))
        raise APIError(
            400, f"Invalid value for '{param}': {first['msg']}", param=param, code="invalid_frame"
        ) from None


# ---- server → client ---------------------------------------------------------------------


class ServerFrame(BaseModel):
    # Built by our own code from stored rows: checked, but not coerced strictly.
    model_config = ConfigDict(extra="forbid")

    # Fields absent from a frame unless set (`?` in types.ts); every other field is always
    # sent, null included.
    OPTIONAL: ClassVar[frozenset[str]] = frozenset()

    def wire(self) -> dict[str, Any]:
        data = self.model_dump()
        for name in self.OPTIONAL:
            if data.get(name) is None:
                data.pop(name, None)
        return data


class Attachment(BaseModel):
    id: str
    name: str


class Source(BaseModel):
    file_id: str
    file_name: str
    ordinal: int | None


class Message(BaseModel):
    """A stored message, as `conversation_store.message_dict` gives it."""

    id: str
    conversation_id: str
    parent_id: str | None
    sibling_ids: list[str]  # its own among them, oldest first
    role: Literal["user", "assistant"]
    content: str
    status: Literal["complete", "streaming", "stopped", "failed"]
    attachments: list[Attachment]
    sources: list[Source]
    usage: dict[str, int] | None
    finish_reason: str | None
    error: str | None
    created_at: float
    finished_at: float | None  # when an answer ended; null while it streams, and for questions
    model: str | None  # the model that wrote an answer; null for questions and older answers


class Conversation(BaseModel):
    """A conversation, as `conversation_store.conversation_dict` gives it."""

    id: str
    title: str
    system_prompt: str
    model: str
    temperature: float | None
    top_p: float | None
    max_tokens: int | None
    created_at: float
    updated_at: float


class Ready(ServerFrame):
    type: Literal["ready"] = "ready"


class Pong(ServerFrame):
    type: Literal["pong"] = "pong"


class UserMessage(ServerFrame):
    type: Literal["user_message"] = "user_message"
    conversation_id: str
    message: Message
    conversation: Conversation
    request_id: str


class Start(ServerFrame):
    type: Literal["start"] = "start"
    conversation_id: str
    message: Message
    request_id: str


class Delta(ServerFrame):
    type: Literal["delta"] = "delta"
    conversation_id: str
    message_id: str
    seq: int
    content: str


class Resume(ServerFrame):
    type: Literal["resume"] = "resume"
    conversation_id: str
    message: Message | None
    seq: int
    request_id: str


class Idle(ServerFrame):
    type: Literal["idle"] = "idle"
    conversation_id: str


class ConversationChanged(ServerFrame):
    """A conversation was created, renamed, set up or titled by the model, in any tab: every
    socket of the account gets its fields, so every sidebar shows them at once."""

    type: Literal["conversation"] = "conversation"
    conversation: Conversation


class ConversationDeleted(ServerFrame):
    type: Literal["conversation_deleted"] = "conversation_deleted"
    conversation_id: str


class Done(ServerFrame):
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"discarded_message_id"})
    type: Literal["done"] = "done"
    conversation_id: str
    message: Message
    usage: dict[str, int] | None
    finish_reason: str | None
    sources: list[Source]
    request_id: str
    discarded_message_id: str | None = None


class Error(ServerFrame):
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"request_id", "discarded_message_id"})
    type: Literal["error"] = "error"
    conversation_id: str | None
    error: str
    code: str | None
    message: Message | None = None
    request_id: str | None = None
    discarded_message_id: str | None = None


SERVER_FRAMES: tuple[type[ServerFrame], ...] = (
    Ready,
    Pong,
    UserMessage,
    Start,
    Delta,
    Resume,
    Idle,
    ConversationChanged,
    ConversationDeleted,
    Done,
    Error,
)


def error_frame(exc: APIError, conversation_id: str | None = None) -> dict[str, Any]:
    """A refused or invalid frame that is no turn's: no request id, no message."""
    return Error(conversation_id=conversation_id, error=exc.message, code=exc.code).wire()
