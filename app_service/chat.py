"""One chat turn: store the user's message, build the prompt, stream the answer, store it.

Runs on its own thread (the socket's thread keeps reading, so `stop` arrives while tokens
stream) with its own database connection. Whatever happens — the user stops, the socket
closes, the model API dies — the assistant message ends `complete`, `stopped` or `failed`
with the text generated so far.

A turn's request id (`<connection id>.<n>`) is set in its thread, which calls the model
API, so both services log it; one line is logged and counted when the turn ends.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app_service import conversation_store as store
from app_service.context import HistoryTurn, TokenCounter, build_context
from app_service.db import connect, transaction
from app_service.limits import check_max_tokens
from app_service.metrics import AppMetrics
from app_service.retrieval import best_chunks, file_text, files_for_user
from app_service.settings import Settings
from app_service.upstream import UpstreamPool
from chatstack.errors import APIError
from chatstack.logs import set_request_id

log = logging.getLogger(__name__)

PARTIAL_SAVE_SECONDS = 1.0
Send = Callable[[dict[str, Any]], None]


class ClientGone(Exception):
    """The socket closed while the answer was streaming."""


@dataclass
class TurnRequest:
    """What the client asked for: a new message, or a new answer to the last one."""

    kind: str  # "send" | "regenerate"
    conversation_id: str
    content: str = ""
    file_ids: list[str] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)


class ChatTurn:
    def __init__(
        self,
        settings: Settings,
        pool: UpstreamPool,
        user_id: str,
        request: TurnRequest,
        send: Send,
        *,
        request_id: str | None = None,
        metrics: AppMetrics | None = None,
        on_finished: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.user_id = user_id
        self.request = request
        self.send = send
        self.request_id = request_id
        self.metrics = metrics
        # How the turn ended: the stored answer's status, or "failed"/"stopped" when it
        # ended before an answer existed.
        self.outcome = "failed"
        self.usage: dict[str, Any] | None = None
        self._started = time.monotonic()
        self._recorded = False
        self.stopped = threading.Event()
        # Set before the last frame goes out, so a client that answers that frame at once
        # (a next message, regenerate) never finds this turn still "busy".
        self.finished = threading.Event()
        self._on_finished = on_finished  # called once, when `finished` is first set
        self._abort_upstream: Callable[[], None] | None = None
        self._lock = threading.Lock()
        # Regenerate: the answer being replaced. It stays stored until the new one's first
        # text arrives, so a regenerate refused, failed or stopped before that loses nothing.
        self._previous: sqlite3.Row | None = None

    def stop(self) -> None:
        """The user pressed stop or left: end the upstream stream now, keep what came."""
        self.stopped.set()
        with self._lock:
            if self._abort_upstream is not None:
                self._abort_upstream()

    def _on_upstream(self, abort: Callable[[], None]) -> None:
        with self._lock:
            self._abort_upstream = abort
        if self.stopped.is_set():
            abort()

    def run(self) -> None:
        """The turn, start to end, on the calling thread (one of its own)."""
        # This thread's context is its own: the id set here is the one the model API gets.
        self.request_id = set_request_id(self.request_id)
        conn = connect(self.settings.db_path)
        try:
            self._run(conn)
        except APIError as exc:
            self.outcome = "failed"
            frame = error_frame(self.request.conversation_id, exc.message, exc.code)
            if self._previous is not None:  # shown again in place of the answer asked for
                frame["message"] = store.message_dict(self._previous)
            self._send_last(frame)
        except ClientGone:
            self.outcome = "stopped"
        except Exception:
            self.outcome = "failed"
            log.exception("chat turn failed")
            self._send_last(
                error_frame(
                    self.request.conversation_id,
                    "Something went wrong on the server.",
                    "internal_error",
                )
            )
        finally:
            self._mark_finished()
            conn.close()
            self._record()

    def _mark_finished(self) -> None:
        with self._lock:
            first = not self.finished.is_set()
            self.finished.set()
        if first and self._on_finished is not None:
            self._on_finished()

    def _record(self) -> None:
        """The turn's one log line and its count by outcome, before its last frame goes out
        (so a client that saw the frame finds both)."""
        if self._recorded:
            return
        self._recorded = True
        seconds = time.monotonic() - self._started
        usage = self.usage or {}
        fields = {
            "outcome": self.outcome,
            "conversation_id": self.request.conversation_id,
            "kind": self.request.kind,
            "prompt_tokens": usage.get("prompt_tokens"),
            "completion_tokens": usage.get("completion_tokens"),
            "duration_ms": round(seconds * 1000, 1),
        }
        log.info(
            "chat turn %s: conversation %s, %s completion tokens, %.1fs",
            self.outcome,
            self.request.conversation_id,
            usage.get("completion_tokens", 0),
            seconds,
            extra={k: v for k, v in fields.items() if v is not None},  # JSON lines: no "None"
        )
        if self.metrics is not None:
            self.metrics.count_turn(self.outcome)

    # ---- the turn ---------------------------------------------------------------------

    def _run(self, conn: sqlite3.Connection) -> None:
        req = self.request
        conversation = store.get_conversation(conn, self.user_id, req.conversation_id)
        if req.kind == "regenerate":
            question = self._answer_again(conn)
        else:
            question = self._store_user_message(conn, conversation)
        settings = self._sampling(conversation)
        history = self._history(conn, question["id"])
        files = files_for_user(conn, self.user_id, self._context_file_ids(conn, question))
        counter = TokenCounter(self.pool.tokenize, settings["model"])
        context = build_context(
            counter,
            system_prompt=settings["system_prompt"],
            user_text=question["content"],
            history=history,
            files=files,
            load_text=lambda file_id, n: file_text(conn, self.user_id, file_id, n),
            find_chunks=lambda q, n: best_chunks(conn, self.user_id, [f.id for f in files], q, n),
            max_tokens=settings["max_tokens"],
        )
        answer_id = store.add_message(conn, req.conversation_id, "assistant", "", "streaming")
        self._send(
            {
                "type": "start",
                "conversation_id": req.conversation_id,
                "message": store.message_dict(store.get_message(conn, answer_id)),
            }
        )
        self._stream_answer(conn, answer_id, settings, context.messages, context.sources)

    def _store_user_message(
        self, conn: sqlite3.Connection, conversation: sqlite3.Row
    ) -> dict[str, Any]:
        req = self.request
        if not req.content.strip():
            raise APIError(400, "The message is empty.", code="empty_message")
        attached = files_for_user(conn, self.user_id, req.file_ids)
        attachments = [{"id": f.id, "name": f.name} for f in attached]
        message_id = store.add_message(
            conn, req.conversation_id, "user", req.content, "complete", attachments
        )
        if conversation["title"] == store.DEFAULT_TITLE:
            with transaction(conn):
                store.update_conversation(
                    conn, self.user_id, req.conversation_id, {"title": title_from(req.content)}
                )
        message = store.message_dict(store.get_message(conn, message_id))
        updated = store.get_conversation(conn, self.user_id, req.conversation_id)
        self._send(
            {
                "type": "user_message",
                "conversation_id": req.conversation_id,
                "message": message,
                "conversation": store.conversation_dict(updated),
            }
        )
        return message

    def _answer_again(self, conn: sqlite3.Connection) -> dict[str, Any]:
        """Regenerate: the question before the last answer is asked again; that answer is
        replaced only once the new one's first text arrives (`_replace_previous`)."""
        messages = store.messages_of(conn, self.request.conversation_id)
        if messages and messages[-1]["role"] == "assistant":
            if messages[-1]["status"] == "streaming":
                raise APIError(409, "An answer is still being generated.", code="busy")
            self._previous = messages[-1]
            messages = messages[:-1]
        if not messages or messages[-1]["role"] != "user":
            raise APIError(
                400, "There is no message to answer again.", code="nothing_to_regenerate"
            )
        return store.message_dict(messages[-1])

    def _sampling(self, conversation: sqlite3.Row) -> dict[str, Any]:
        """This turn's settings: the turn's overrides, else the conversation's, else defaults."""
        o = self.request.overrides

        def pick(name: str) -> Any:
            return o[name] if o.get(name) is not None else conversation[name]

        ceiling = self.settings.user_max_tokens
        check_max_tokens(pick("max_tokens"), ceiling)
        default_max_tokens = min(self.settings.chat_max_tokens, ceiling or sys.maxsize)
        model = pick("model") or self.settings.default_model or self._first_model()
        return {
            "model": model,
            "system_prompt": pick("system_prompt") or "",
            "temperature": pick("temperature"),
            "top_p": pick("top_p"),
            "max_tokens": pick("max_tokens") or default_max_tokens,
        }

    def _first_model(self) -> str:
        models = self.pool.models().get("data") or []
        if not models:
            raise APIError(503, "The model service lists no models.", code="no_models")
        return models[0]["id"]

    def _history(self, conn: sqlite3.Connection, question_id: str) -> list[HistoryTurn]:
        turns = []
        for message in store.messages_of(conn, self.request.conversation_id):
            if message["id"] == question_id:
                break
            if message["status"] in ("complete", "stopped") and message["content"]:
                turns.append(HistoryTurn(message["role"], message["content"]))
        return turns

    def _context_file_ids(self, conn: sqlite3.Connection, question: dict[str, Any]) -> list[str]:
        """This message's files, then files attached earlier in the conversation that exist."""
        ids = [a["id"] for a in question["attachments"]]
        for message in reversed(store.messages_of(conn, self.request.conversation_id)):
            for attachment in store.message_dict(message)["attachments"]:
                if attachment["id"] not in ids:
                    ids.append(attachment["id"])
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        existing = {
            row["id"]
            for row in conn.execute(
                f"SELECT id FROM files WHERE user_id = ? AND id IN ({marks})", (self.user_id, *ids)
            )
        }
        return [i for i in ids if i in existing]

    def _stream_answer(
        self,
        conn: sqlite3.Connection,
        answer_id: str,
        settings: dict[str, Any],
        messages: list[dict[str, str]],
        sources: list[dict[str, Any]],
    ) -> None:
        body: dict[str, Any] = {
            "model": settings["model"],
            "messages": messages,
            "max_tokens": settings["max_tokens"],
        }
        for name in ("temperature", "top_p"):
            if settings[name] is not None:
                body[name] = settings[name]
        parts: list[str] = []
        outcome: dict[str, Any] = {"status": "complete"}
        last_save = time.monotonic()
        try:
            for chunk in self.pool.stream_chat(body, on_open=self._on_upstream):
                if self.stopped.is_set():
                    outcome["status"] = "stopped"
                    break
                if chunk.get("usage"):
                    outcome["usage"] = chunk["usage"]
                for choice in chunk.get("choices") or []:
                    text = (choice.get("delta") or {}).get("content") or ""
                    if text:
                        self._replace_previous(conn)
                        parts.append(text)
                        self._send(
                            {
                                "type": "delta",
                                "conversation_id": self.request.conversation_id,
                                "message_id": answer_id,
                                "content": text,
                            }
                        )
                    if choice.get("finish_reason"):
                        outcome["finish_reason"] = choice["finish_reason"]
                if time.monotonic() - last_save > PARTIAL_SAVE_SECONDS:
                    store.save_partial(conn, answer_id, "".join(parts))
                    last_save = time.monotonic()
        except ClientGone:
            outcome["status"] = "stopped"
        except APIError as exc:
            if self.stopped.is_set():
                outcome["status"] = "stopped"  # our own abort closed the stream
            else:
                outcome.update(status="failed", error=exc.message)
        except Exception as exc:  # a broken stream of any kind must still be stored
            log.exception("streaming from the model API failed")
            outcome.update(status="failed", error=f"The answer could not be completed: {exc}")
        if outcome["status"] == "complete" and self.stopped.is_set():
            outcome["status"] = "stopped"
        self.outcome = outcome["status"]
        self.usage = outcome.get("usage")
        self._finish(conn, answer_id, "".join(parts), sources, outcome)

    def _replace_previous(self, conn: sqlite3.Connection) -> None:
        """The new answer is arriving: the one it replaces goes now."""
        if self._previous is not None:
            store.delete_message(conn, self._previous["id"])
            self._previous = None

    def _keep_previous(
        self, conn: sqlite3.Connection, answer_id: str, outcome: dict[str, Any]
    ) -> None:
        """A regenerate that ended before any of the new answer arrived (refused, failed,
        stopped): the new row goes, the previous answer stays as it was and is sent back."""
        assert self._previous is not None
        store.delete_message(conn, answer_id)
        previous = store.message_dict(self._previous)
        frame = self._final_frame(previous, outcome, previous["sources"])
        frame["discarded_message_id"] = answer_id
        self._send_last(frame)

    def _finish(
        self,
        conn: sqlite3.Connection,
        answer_id: str,
        content: str,
        sources: list[dict[str, Any]],
        outcome: dict[str, Any],
    ) -> None:
        if self._previous is not None:
            self._keep_previous(conn, answer_id, outcome)
            return
        store.finish_message(
            conn,
            answer_id,
            content=content,
            status=outcome["status"],
            finish_reason=outcome.get("finish_reason"),
            usage=outcome.get("usage"),
            sources=sources,
            error=outcome.get("error"),
        )
        store.touch_conversation(conn, self.request.conversation_id)
        row = store.get_message(conn, answer_id)
        if row is None:  # the conversation was deleted while the answer streamed
            self._send_last(
                error_frame(
                    self.request.conversation_id,
                    "The conversation was deleted.",
                    "conversation_not_found",
                )
            )
            return
        self._send_last(self._final_frame(store.message_dict(row), outcome, sources))

    def _final_frame(
        self, message: dict[str, Any], outcome: dict[str, Any], sources: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """`error` carrying the answer for a failed turn, else `done`."""
        if outcome["status"] == "failed":  # why, in words, is the message's `error`
            frame = error_frame(self.request.conversation_id, outcome["error"], "upstream_failed")
            frame["message"] = message
            return frame
        return {
            "type": "done",
            "conversation_id": self.request.conversation_id,
            "message": message,
            "usage": message["usage"],
            "finish_reason": message["finish_reason"],
            "sources": sources,
        }

    # ---- sending ----------------------------------------------------------------------

    def _with_id(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Every frame of the turn but `delta` names its request id (docs/protocol.md)."""
        return frame if frame["type"] == "delta" else {**frame, "request_id": self.request_id}

    def _send(self, frame: dict[str, Any]) -> None:
        try:
            self.send(self._with_id(frame))
        except Exception as exc:  # simple_websocket raises ConnectionClosed, or OSError
            self.stopped.set()
            raise ClientGone() from exc

    def _send_last(self, frame: dict[str, Any]) -> None:
        """The turn's final frame; the socket may already be gone, which is fine."""
        self._record()
        self._mark_finished()
        try:
            self.send(self._with_id(frame))
        except Exception:
            log.info("socket closed before the final frame")


def error_frame(conversation_id: str, text: str, code: str | None) -> dict[str, Any]:
    return {
        "type": "error",
        "conversation_id": conversation_id,
        "error": text,
        "code": code,
        "message": None,
    }


def title_from(text: str) -> str:
    first_line = text.strip().splitlines()[0] if text.strip() else "New chat"
    return first_line[:60] + ("…" if len(first_line) > 60 else "")
