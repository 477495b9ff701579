"""One chat turn as a small state machine: accepted → generating → complete | stopped | failed.

A turn knows nothing of sockets. It numbers its deltas, keeps the answer's text so far, and
hands each of its frames to `publish` (the registry's fan-out to the account's sockets).
Every change and every snapshot happens under the registry's lock, which the turn is given:
a socket that subscribes gets the text so far (`snapshot`) and then exactly the deltas after
it, with no gap and no repeat.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from app_service import frames


class TurnState(StrEnum):
    ACCEPTED = "accepted"  # taken; the prompt is being built
    GENERATING = "generating"  # the assistant message exists and text arrives
    COMPLETE = "complete"
    STOPPED = "stopped"
    FAILED = "failed"


ENDED = frozenset({TurnState.COMPLETE, TurnState.STOPPED, TurnState.FAILED})
TRANSITIONS: dict[TurnState, frozenset[TurnState]] = {
    # An accepted turn may be refused (context too long, no model) or stopped before its
    # answer begins; it completes only by generating.
    TurnState.ACCEPTED: frozenset({TurnState.GENERATING, TurnState.STOPPED, TurnState.FAILED}),
    TurnState.GENERATING: ENDED,
}


class InvalidTransition(RuntimeError):
    """A turn was moved along an edge the state machine does not have (a bug)."""


class StopReason(StrEnum):
    USER = "user"  # a `stop` frame from any of the account's sockets
    TIME_LIMIT = "time_limit"  # TURN_MAX_SECONDS
    DELETED = "deleted"  # the conversation was deleted
    SHUTDOWN = "shutdown"  # the app service is stopping


@dataclass
class TurnRequest:
    """What the client asked for: a new message, an edited one (a sibling of `message_id`),
    a new answer, or more of the last one."""

    kind: str  # "send" | "edit" | "regenerate" | "continue"
    conversation_id: str
    content: str = ""
    file_ids: list[str] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    message_id: str | None = None  # an edit's question


Publish = Callable[[dict[str, Any]], None]


class Turn:
    def __init__(
        self,
        user_id: str,
        request: TurnRequest,
        request_id: str,
        *,
        publish: Publish,
        lock: threading.RLock,
        on_end: Callable[[Turn], None] | None = None,
    ) -> None:
        self.user_id = user_id
        self.request = request
        self.request_id = request_id
        self._publish = publish
        self._lock = lock
        self._on_end = on_end  # called under the lock, before the final frame goes out
        self.state = TurnState.ACCEPTED
        self.message: dict[str, Any] | None = None  # the assistant message, text excluded
        self._parts: list[str] = []
        self.seq = 0  # the number of the last delta
        self.stop_reason: StopReason | None = None
        self._abort: Callable[[], None] | None = None
        self.ended = threading.Event()

    @property
    def conversation_id(self) -> str:
        return self.request.conversation_id

    @property
    def text(self) -> str:
        with self._lock:
            return "".join(self._parts)

    @property
    def stopped(self) -> bool:
        return self.stop_reason is not None

    # ---- the state machine ------------------------------------------------------------

    def _move(self, state: TurnState) -> None:
        if state not in TRANSITIONS.get(self.state, frozenset()):
            raise InvalidTransition(f"turn {self.request_id}: {self.state.value} → {state.value}")
        self.state = state

    def emit(self, frame: frames.ServerFrame) -> None:
        """A frame of the turn that changes no state (the stored user message)."""
        with self._lock:
            self._publish(frame.wire())

    def begin(self, message: dict[str, Any]) -> None:
        """The assistant message exists (for a continue, with its text so far): announce it."""
        with self._lock:
            self._move(TurnState.GENERATING)
            self.message = {**message, "content": ""}
            self._parts = [message["content"]] if message["content"] else []
            self._publish(
                frames.Start(
                    conversation_id=self.conversation_id,
                    message=message,
                    request_id=self.request_id,
                ).wire()
            )

    def add_text(self, text: str) -> None:
        with self._lock:
            if self.state is not TurnState.GENERATING:
                raise InvalidTransition(f"turn {self.request_id}: text while {self.state.value}")
            assert self.message is not None
            self.seq += 1
            self._parts.append(text)
            self._publish(
                frames.Delta(
                    conversation_id=self.conversation_id,
                    message_id=self.message["id"],
                    seq=self.seq,
                    content=text,
                ).wire()
            )

    def finish(self, state: TurnState, frame: frames.ServerFrame) -> None:
        """The turn's end and its final frame (`done` or `error`). Ending twice is a no-op:
        the first end is the one the clients saw."""
        with self._lock:
            if self.state in ENDED:
                return
            self._move(state)
            if self._on_end is not None:
                self._on_end(self)  # e.g. the registry frees the conversation first, so a
            # client that answers the final frame at once is never told "busy"
            self._publish(frame.wire())
            self.ended.set()

    def snapshot(self) -> dict[str, Any]:
        """The `resume` frame: the answer so far and the seq it includes."""
        with self._lock:
            message = None
            if self.message is not None:
                message = {**self.message, "content": "".join(self._parts)}
            return frames.Resume(
                conversation_id=self.conversation_id,
                message=message,
                seq=self.seq,
                request_id=self.request_id,
            ).wire()

    # ---- stopping ---------------------------------------------------------------------

    def stop(self, reason: StopReason = StopReason.USER) -> None:
        """End the upstream stream now; what came is kept. The first reason counts."""
        with self._lock:
            if self.state in ENDED:
                return
            if self.stop_reason is None:
                self.stop_reason = reason
            abort = self._abort
        if abort is not None:
            abort()

    def on_upstream(self, abort: Callable[[], None]) -> None:
        """The upstream stream is open: `abort` ends it from any thread."""
        with self._lock:
            self._abort = abort
            stopped = self.stopped
        if stopped:
            abort()
