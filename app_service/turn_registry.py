"""The running chat turns of this process, owned by the server and not by any socket.

A turn started here runs on a thread of its own to its end — the model finished, a `stop`,
`max_tokens`, TURN_MAX_SECONDS, its conversation deleted, or the service stopping — whether
or not any socket is open. Every frame of a user's turns goes to every listener (socket)
that user has subscribed; a listener subscribing mid-answer first gets each running turn's
snapshot. One lock guards it all: listeners only queue frames, so it is held for microseconds.

One process holds every socket (one gunicorn worker), so this is process state. With several
app replicas, `_publish` would go through a pub/sub (PostgreSQL LISTEN/NOTIFY, Redis) and the
conversation → turn map would live there too: docs/operators.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import current_app

from app_service.turn import StopReason, Turn, TurnRequest
from app_service.user_activity import UserActivity
from chatstack.errors import APIError

log = logging.getLogger(__name__)

Listener = Callable[[dict[str, Any]], None]  # must not block: it queues the frame
Work = Callable[[Turn], None]  # runs the turn to its end (chat.py)


class TurnRegistry:
    def __init__(self, work: Work, activity: UserActivity, max_seconds: float) -> None:
        self._work = work
        self._activity = activity
        self._max_seconds = max_seconds
        self._lock = threading.RLock()
        # By (user, conversation): another user's frame naming a conversation id can never
        # make it busy for its owner (that turn fails as `conversation_not_found`).
        self._turns: dict[tuple[str, str], Turn] = {}
        self._listeners: dict[str, list[Listener]] = {}  # by user id
        self._threads: dict[Turn, threading.Thread] = {}
        self._closing = False

    # ---- listeners ----------------------------------------------------------------------

    def subscribe(self, user_id: str, listener: Listener) -> None:
        """From now on `listener` gets every frame of the user's turns; first, a snapshot
        (`resume`) of each turn already running."""
        with self._lock:
            self._listeners.setdefault(user_id, []).append(listener)
            for turn in self._turns_of(user_id):
                listener(turn.snapshot())

    def unsubscribe(self, user_id: str, listener: Listener) -> None:
        with self._lock:
            listeners = self._listeners.get(user_id, [])
            if listener in listeners:
                listeners.remove(listener)
            if not listeners:
                self._listeners.pop(user_id, None)

    def resume(self, user_id: str, conversation_id: str, listener: Listener) -> bool:
        """Give `listener` the snapshot of the turn running in that conversation, in order
        with the frames it is already getting. False when none is running there."""
        with self._lock:
            turn = self._turns.get((user_id, conversation_id))
            if turn is None:
                return False
            listener(turn.snapshot())
            return True

    def publish(self, user_id: str, frame: dict[str, Any]) -> None:
        """A frame that is no turn's (a conversation renamed, created, deleted) to every
        socket of the user."""
        with self._lock:
            self._publish(user_id, frame)

    def _publish(self, user_id: str, frame: dict[str, Any]) -> None:
        # Called by a turn under the lock: listeners queue, so this never waits on a socket.
        for listener in list(self._listeners.get(user_id, ())):
            try:
                listener(frame)
            except Exception:  # one broken listener must not cost the others their frames
                log.exception("a chat listener failed")

    # ---- turns --------------------------------------------------------------------------

    def start(self, user_id: str, request: TurnRequest, request_id: str) -> Turn:
        """Accept a turn and run it; `busy` when its conversation already has one running,
        `too_many_active_turns` past the user's limit."""
        with self._lock:
            if self._closing:
                raise APIError(
                    503, "The server is restarting; send again in a moment.", code="shutting_down"
                )
            running = self._turns.get((user_id, request.conversation_id))
            if running is not None:
                raise APIError(
                    409,
                    "An answer is still being generated in this conversation; stop it or wait "
                    "for it to finish.",
                    code="busy",
                )
            self._activity.start_turn(user_id)
            turn = Turn(
                user_id,
                request,
                request_id,
                publish=lambda frame: self._publish(user_id, frame),
                lock=self._lock,
                on_end=self._ended,
            )
            self._turns[(user_id, request.conversation_id)] = turn
            # A new thread starts with an empty context: the work sets the turn's request id.
            thread = threading.Thread(target=self._run, args=(turn,), name="chat-turn", daemon=True)
            self._threads[turn] = thread
        thread.start()
        return turn

    def _run(self, turn: Turn) -> None:
        timer = threading.Timer(self._max_seconds, turn.stop, args=(StopReason.TIME_LIMIT,))
        timer.daemon = True
        timer.start()
        try:
            self._work(turn)
        except Exception:  # the work stores and reports its own failures; this is a bug
            log.exception("chat turn %s crashed", turn.request_id)
        finally:
            timer.cancel()
            with self._lock:
                self._ended(turn)  # a turn that never published its end still frees its place
                self._threads.pop(turn, None)

    def _ended(self, turn: Turn) -> None:
        with self._lock:
            key = (turn.user_id, turn.conversation_id)
            if self._turns.get(key) is turn:
                del self._turns[key]
                self._activity.end_turn(turn.user_id)

    def running(self, user_id: str, conversation_id: str) -> Turn | None:
        with self._lock:
            return self._turns.get((user_id, conversation_id))

    def _turns_of(self, user_id: str) -> list[Turn]:
        return [t for t in self._turns.values() if t.user_id == user_id]

    def running_for(self, user_id: str) -> list[Turn]:
        with self._lock:
            return self._turns_of(user_id)

    def stop(
        self, user_id: str, conversation_id: str, reason: StopReason = StopReason.USER
    ) -> bool:
        """Stop the user's turn in that conversation (from any of their sockets)."""
        turn = self.running(user_id, conversation_id)
        if turn is None:
            return False
        turn.stop(reason)
        return True

    def shutdown(self, timeout: float = 10.0) -> int:
        """Stop every turn (stored `failed`, to be continued after the restart) and wait for
        them to be stored. Returns how many were running."""
        with self._lock:
            self._closing = True
            turns = list(self._turns.values())
            threads = [self._threads[t] for t in turns if t in self._threads]
        for turn in turns:
            turn.stop(StopReason.SHUTDOWN)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0))
        return len(turns)


def turn_registry() -> TurnRegistry:
    return current_app.extensions["chatstack_turns"]
