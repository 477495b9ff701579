"""One chat turn's work, start to end: store the user's message, build the prompt, stream the
answer into the turn (which publishes each frame to the account's sockets), store it.

Runs on the turn's own thread (turn_registry.py) with its own database connection, whether or
not any socket is open. Whatever happens — a stop, the model API dying, TURN_MAX_SECONDS, the
service stopping — the assistant message ends `complete`, `stopped` or `failed` with the text
generated so far, saved at least once a second meanwhile. Conversations are trees
(message_tree.py): a send answers below the active leaf, an edit adds a sibling of the edited
question, a regenerate a sibling of the answer; nothing is deleted. A regenerate or a
continue that ends before any new text arrives leaves the conversation as it was.

The turn's request id is set in its thread, which calls the model API, so both services log
it; one line is logged and counted when the turn ends, before its last frame goes out.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Any

from app_service import conversation_store as store
from app_service import frames
from app_service.context import OPEN_FINAL_MESSAGE, TokenCounter, build_context
from app_service.db import connect, transaction
from app_service.metrics import AppMetrics
from app_service.retrieval import best_chunks, file_text, files_for_user
from app_service.settings import Settings
from app_service.titles import first_words, write_title
from app_service.turn import StopReason, Turn, TurnState
from app_service.turn_inputs import (
    context_file_ids,
    continue_target,
    edit_parent_path,
    history,
    regenerate_target,
    sampling,
)
from app_service.upstream import UpstreamPool
from app_service.upstream_wire import Finish, StreamFailed, TextDelta, Usage
from chatstack.errors import APIError
from chatstack.logs import set_request_id

log = logging.getLogger(__name__)

PARTIAL_SAVE_SECONDS = 1.0
RESTARTED = "The app service restarted while this answer was being generated."


class ChatTurn:
    def __init__(
        self,
        settings: Settings,
        pool: UpstreamPool,
        turn: Turn,
        metrics: AppMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.turn = turn
        self.user_id = turn.user_id
        self.request = turn.request
        self.metrics = metrics
        # How the turn ended: the stored answer's status, or "failed" when it ended before
        # an answer existed.
        self.outcome = "failed"
        self.usage: dict[str, Any] | None = None
        self._started = time.monotonic()
        self._recorded = False
        # Regenerate: the answer a sibling is being written for. Until the new one's first
        # text arrives it is the one to show again if the regenerate is refused, fails or is
        # stopped (the empty new row then goes).
        self._previous: sqlite3.Row | None = None
        # Continue: the answer being extended, as it was before (restored if nothing came).
        self._continued: sqlite3.Row | None = None
        self._conn: sqlite3.Connection | None = None  # the turn's own, while it runs
        # The first question of a conversation still titled by its first words; once its
        # answer is complete (`_title_answer`), the model writes the title.
        self._title_question: str | None = None
        self._title_answer: tuple[str, str] | None = None  # (model, answer text)

    def run(self) -> None:
        """The turn, start to end, on the calling thread (one of its own)."""
        # This thread's context is its own: the id set here is the one the model API gets.
        set_request_id(self.turn.request_id)
        conn = self._conn = connect(self.settings.db_path)
        try:
            self._run(conn)
            self._write_title(conn)
        except APIError as exc:
            self._refuse(exc)
        except Exception:
            log.exception("chat turn failed")
            self._refuse(
                APIError(500, "Something went wrong on the server.", code="internal_error")
            )
        finally:
            conn.close()

    def _write_title(self, conn: sqlite3.Connection) -> None:
        """After the turn ended and its frames went out: the model's title, if one is due."""
        if self._title_question is None or self._title_answer is None:
            return
        model, answer = self._title_answer
        write_title(
            conn,
            self.pool,
            user_id=self.user_id,
            conversation_id=self.request.conversation_id,
            model=model,
            question=self._title_question,
            answer=answer,
            announce=lambda row: self.turn.emit(
                frames.ConversationChanged(conversation=store.conversation_dict(row))
            ),
        )

    def _refuse(self, exc: APIError) -> None:
        """The turn ended on an error before its answer was stored (or could not be)."""
        self.outcome = "failed"
        kept = self._previous or self._continued  # shown again, as it was
        self._end(
            TurnState.FAILED,
            frames.Error(
                conversation_id=self.request.conversation_id,
                error=exc.message,
                code=exc.code,
                message=self._message(kept) if kept is not None else None,
                request_id=self.turn.request_id,
            ),
        )

    def _end(self, state: TurnState, frame: frames.ServerFrame) -> None:
        self._record()
        self.turn.finish(state, frame)

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
        inputs = store.load_for_turn(conn, self.user_id, req.conversation_id, req.file_ids)
        path = inputs.messages
        if req.kind == "regenerate":
            question_row, self._previous = regenerate_target(path)
            question = store.message_dict(question_row)
        elif req.kind == "continue":
            question_row, self._continued = continue_target(path)
            question = store.message_dict(question_row)
        else:
            if req.kind == "edit":  # the new question is a sibling of the edited one
                path = edit_parent_path(inputs.tree, req.message_id)
            question = self._store_user_message(
                conn, inputs.conversation, parent_id=path[-1]["id"] if path else None
            )
        settings = sampling(
            self.settings, inputs.conversation, req.overrides, self.pool.first_model
        )
        file_ids = context_file_ids(question["attachments"], path, inputs.existing_file_ids)
        files = files_for_user(conn, self.user_id, file_ids)
        prefix = self._continued["content"] if self._continued is not None else ""
        context = build_context(
            TokenCounter(self.pool.tokenize, settings["model"]),
            system_prompt=settings["system_prompt"],
            user_text=question["content"],
            conversation_id=req.conversation_id,
            history=history(path, question["id"]),
            files=files,
            load_text=lambda file_id, n: file_text(conn, self.user_id, file_id, n),
            find_chunks=lambda q, n: best_chunks(conn, self.user_id, [f.id for f in files], q, n),
            max_tokens=settings["max_tokens"],
            answer_prefix=prefix,
        )
        if self._continued is not None:
            answer_id = self._continued["id"]
            store.reopen_message(conn, answer_id)
        else:
            answer_id = store.add_message(
                conn,
                req.conversation_id,
                "assistant",
                "",
                "streaming",
                parent_id=question["id"],
                model=settings["model"],
            )
        self.turn.begin(self._message(store.get_message(conn, answer_id)))
        self._stream_answer(conn, answer_id, settings, context.messages, context.sources, prefix)
        if self.outcome == "complete" and self._title_question is not None:
            self._title_answer = (settings["model"], self.turn.text)

    def _message(self, row: sqlite3.Row) -> dict[str, Any]:
        """A message for a frame, with its siblings, read on the turn's own connection."""
        assert self._conn is not None
        return store.message_out(self._conn, row)

    def _store_user_message(
        self, conn: sqlite3.Connection, conversation: sqlite3.Row, *, parent_id: str | None
    ) -> dict[str, Any]:
        req = self.request
        if not req.content.strip():
            raise APIError(400, "The message is empty.", code="empty_message")
        attached = files_for_user(conn, self.user_id, req.file_ids)
        attachments = [{"id": f.id, "name": f.name} for f in attached]
        message_id = store.add_message(
            conn,
            req.conversation_id,
            "user",
            req.content,
            "complete",
            attachments,
            parent_id=parent_id,
        )
        store.set_first_words_title(conn, req.conversation_id, first_words(req.content))
        if self.settings.auto_titles and conversation["title_source"] == "auto" and not parent_id:
            self._title_question = req.content  # the model titles it after this answer
        message = store.message_out(conn, store.get_message(conn, message_id))
        updated = store.get_conversation(conn, self.user_id, req.conversation_id)
        self.turn.emit(
            frames.UserMessage(
                conversation_id=req.conversation_id,
                message=message,
                conversation=store.conversation_dict(updated),
                request_id=self.turn.request_id,
            )
        )
        return message

    def _stream_answer(
        self,
        conn: sqlite3.Connection,
        answer_id: str,
        settings: dict[str, Any],
        messages: list[dict[str, str]],
        sources: list[dict[str, Any]],
        prefix: str,
    ) -> None:
        body: dict[str, Any] = {
            "model": settings["model"],
            "messages": messages,
            "max_tokens": settings["max_tokens"],
        }
        if prefix:
            body.update(OPEN_FINAL_MESSAGE)
        for name in ("temperature", "top_p"):
            if settings[name] is not None:
                body[name] = settings[name]
        parts: list[str] = []
        outcome: dict[str, Any] = {"status": "complete"}
        last_save = time.monotonic()
        try:
            for event in self.pool.chat_events(body, on_open=self.turn.on_upstream):
                if self.turn.stopped:
                    break
                if isinstance(event, TextDelta):
                    self._replace_previous(conn)
                    parts.append(event.text)
                    self.turn.add_text(event.text)
                elif isinstance(event, Finish):
                    outcome["finish_reason"] = event.reason
                elif isinstance(event, Usage):
                    outcome["usage"] = event.usage
                elif isinstance(event, StreamFailed):
                    outcome.update(
                        status="failed", error=event.error.message, code=event.error.code
                    )
                if time.monotonic() - last_save > PARTIAL_SAVE_SECONDS:
                    store.save_partial(conn, answer_id, prefix + "".join(parts))
                    last_save = time.monotonic()
        except Exception as exc:  # a broken stream of any kind must still be stored
            log.exception("streaming from the model API failed")
            outcome.update(status="failed", error=f"The answer could not be completed: {exc}")
        if self.turn.stopped:  # our own abort may have closed the stream: not a failure
            outcome = self._stopped(outcome)
        self.outcome = outcome["status"]
        self.usage = outcome.get("usage")
        self._finish(conn, answer_id, prefix, "".join(parts), sources, outcome)

    def _stopped(self, outcome: dict[str, Any]) -> dict[str, Any]:
        reason = self.turn.stop_reason
        kept = {k: v for k, v in outcome.items() if k in ("usage",)}
        if reason is StopReason.SHUTDOWN:
            return {**kept, "status": "failed", "error": RESTARTED}
        if reason is StopReason.TIME_LIMIT:
            limit = self.settings.turn_max_seconds
            return {
                **kept,
                "status": "stopped",
                "error": f"Stopped after {limit:g} seconds, the longest an answer may take "
                "(TURN_MAX_SECONDS). Continue to go on.",
            }
        return {**kept, "status": "stopped"}

    def _replace_previous(self, conn: sqlite3.Connection) -> None:
        """The new answer is arriving: the one it was written beside stays, as a sibling, and
        is no longer the one to fall back to."""
        self._previous = None

    def _keep_as_it_was(
        self, conn: sqlite3.Connection, answer_id: str, outcome: dict[str, Any]
    ) -> None:
        """A regenerate or continue that ended before any new text arrived (refused, failed,
        stopped): the stored answer stays as it was and is sent back; a regenerate's new row
        goes, and the previous answer is the active leaf again."""
        if self._previous is not None:
            kept, discarded = self._previous, answer_id
            with transaction(conn):
                store.delete_message(conn, answer_id)
                store.set_active_leaf(conn, self.request.conversation_id, kept["id"])
        else:
            assert self._continued is not None
            kept, discarded = self._continued, None
            store.finish_message(
                conn,
                answer_id,
                content=kept["content"],
                status=kept["status"],
                finish_reason=kept["finish_reason"],
                usage=store.message_dict(kept)["usage"],
                sources=store.message_dict(kept)["sources"],
                error=kept["error"],
            )
        message = store.message_out(conn, kept)
        frame = self._final_frame(message, outcome, message["sources"])
        frame.discarded_message_id = discarded
        self._end(_state_of(outcome), frame)

    def _finish(
        self,
        conn: sqlite3.Connection,
        answer_id: str,
        prefix: str,
        new_text: str,
        sources: list[dict[str, Any]],
        outcome: dict[str, Any],
    ) -> None:
        if self._previous is not None or (self._continued is not None and not new_text):
            self._keep_as_it_was(conn, answer_id, outcome)
            return
        usage = outcome.get("usage")
        if self._continued is not None:
            before = store.message_dict(self._continued)
            usage = added_usage(before["usage"], usage)
            sources = merged_sources(before["sources"], sources)
        store.finish_message(
            conn,
            answer_id,
            content=prefix + new_text,
            status=outcome["status"],
            finish_reason=outcome.get("finish_reason"),
            usage=usage,
            sources=sources,
            error=outcome.get("error"),
        )
        store.touch_conversation(conn, self.request.conversation_id)
        row = store.get_message(conn, answer_id)
        if row is None:  # the conversation was deleted while the answer streamed
            self._end(
                _state_of(outcome),
                frames.Error(
                    conversation_id=self.request.conversation_id,
                    error="The conversation was deleted.",
                    code="conversation_not_found",
                    request_id=self.turn.request_id,
                ),
            )
            return
        message = store.message_out(conn, row)
        self._end(_state_of(outcome), self._final_frame(message, outcome, sources))

    def _final_frame(
        self, message: dict[str, Any], outcome: dict[str, Any], sources: list[dict[str, Any]]
    ) -> frames.Done | frames.Error:
        """`error` carrying the answer for a failed turn, else `done`."""
        if outcome["status"] == "failed":  # why, in words, is the message's `error`
            code = outcome.get("code")
            return frames.Error(
                conversation_id=self.request.conversation_id,
                error=outcome["error"],
                code=code if code == "continue_unsupported" else "upstream_failed",
                message=message,
                request_id=self.turn.request_id,
            )
        return frames.Done(
            conversation_id=self.request.conversation_id,
            message=message,
            usage=message["usage"],
            finish_reason=message["finish_reason"],
            sources=sources,
            request_id=self.turn.request_id,
        )


def _state_of(outcome: dict[str, Any]) -> TurnState:
    return TurnState(outcome["status"])


def added_usage(before: dict[str, Any] | None, now: dict[str, Any] | None) -> dict[str, Any] | None:
    """A continued answer's usage: the last request's prompt, every part's completion."""
    if not before or not now:
        return now or before
    completion = int(before.get("completion_tokens") or 0) + int(now.get("completion_tokens") or 0)
    prompt = int(now.get("prompt_tokens") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def merged_sources(before: list[dict[str, Any]], now: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen = {(s["file_id"], s["ordinal"]) for s in before}
    return before + [s for s in now if (s["file_id"], s["ordinal"]) not in seen]


def run_turn(
    settings: Settings, pool: UpstreamPool, metrics: AppMetrics | None, turn: Turn
) -> None:
    """The registry's work for each turn."""
    ChatTurn(settings, pool, turn, metrics).run()
