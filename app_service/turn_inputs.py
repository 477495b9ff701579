"""What a chat turn asks the model with, decided from the stored conversation: the question
(or the answer to continue), the sampling settings, the history and the files in context.
Pure functions over `conversation_store.TurnInputs`.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable
from typing import Any

from app_service import message_tree
from app_service.context import HistoryTurn
from app_service.limits import check_max_tokens
from app_service.settings import Settings
from chatstack.errors import APIError

# An answer may be continued when it was cut: by the token limit, a stop, or a failure.
CONTINUABLE_STATUSES = ("stopped", "failed")


def sampling(
    settings: Settings,
    conversation: sqlite3.Row,
    overrides: dict[str, Any],
    first_model: Callable[[], str],
) -> dict[str, Any]:
    """This turn's settings: the turn's overrides, else the conversation's, else defaults."""

    def pick(name: str) -> Any:
        return overrides[name] if overrides.get(name) is not None else conversation[name]

    ceiling = settings.user_max_tokens
    check_max_tokens(pick("max_tokens"), ceiling)
    default_max_tokens = min(settings.chat_max_tokens, ceiling or sys.maxsize)
    model = pick("model") or settings.default_model or first_model()
    return {
        "model": model,
        "system_prompt": pick("system_prompt") or "",
        "temperature": pick("temperature"),
        "top_p": pick("top_p"),
        "max_tokens": pick("max_tokens") or default_max_tokens,
    }


def regenerate_target(messages: list[sqlite3.Row]) -> tuple[sqlite3.Row, sqlite3.Row | None]:
    """(the question to answer again, the answer it replaces or None)."""
    previous = None
    if messages and messages[-1]["role"] == "assistant":
        if messages[-1]["status"] == "streaming":  # the registry is the rule; rows agree
            raise APIError(409, "An answer is still being generated.", code="busy")
        previous = messages[-1]
        messages = messages[:-1]
    if not messages or messages[-1]["role"] != "user":
        raise APIError(400, "There is no message to answer again.", code="nothing_to_regenerate")
    return messages[-1], previous


def continue_target(messages: list[sqlite3.Row]) -> tuple[sqlite3.Row, sqlite3.Row]:
    """(the question, the answer to continue): the last message, an assistant answer that
    ended by `length`, was stopped or failed, with text to continue."""
    answer = messages[-1] if messages else None
    cut = answer is not None and (
        answer["status"] in CONTINUABLE_STATUSES
        or (answer["status"] == "complete" and answer["finish_reason"] == "length")
    )
    if (
        answer is None
        or answer["role"] != "assistant"
        or not cut
        or not answer["content"]
        or len(messages) < 2
        or messages[-2]["role"] != "user"
    ):
        raise APIError(
            400,
            "There is no answer to continue: only the last answer, when it ended by the "
            "token limit, was stopped or failed, can be continued.",
            code="nothing_to_continue",
        )
    return messages[-2], answer


def edit_parent_path(tree: list[sqlite3.Row], message_id: str) -> list[sqlite3.Row]:
    """An edit of `message_id`, a question anywhere in the conversation: the path down to its
    parent, below which the edited question goes as its sibling."""
    edited = next((m for m in tree if m["id"] == message_id), None)
    if edited is None:
        raise APIError(
            404,
            "No such message in this conversation.",
            param="message_id",
            code="message_not_found",
        )
    if edited["role"] != "user":
        raise APIError(
            400,
            "Only your own messages can be edited; regenerate an answer instead.",
            param="message_id",
            code="not_editable",
        )
    return message_tree.path_to(tree, edited["parent_id"])


def history(messages: list[sqlite3.Row], question_id: str) -> list[HistoryTurn]:
    """The turns before the question on its path, without failed or empty answers."""
    turns = []
    for message in messages:
        if message["id"] == question_id:
            break
        if message["status"] in ("complete", "stopped") and message["content"]:
            turns.append(HistoryTurn(message["role"], message["content"]))
    return turns


def context_file_ids(
    question_attachments: list[dict[str, Any]],
    messages: list[sqlite3.Row],
    existing: set[str],
) -> list[str]:
    """The files in context, that exist, in the order they were first attached to the
    conversation (oldest first; the question's own, when new, last): a file attached later
    appends to the prompt's documents and leaves the earlier ones, a cached prefix, as they
    were. `messages` are the turn's path (another branch's files are not in context)."""
    ids: list[str] = []
    for message in messages:
        for attachment in json.loads(message["attachments"]):
            if attachment["id"] not in ids:
                ids.append(attachment["id"])
    ids += [a["id"] for a in question_attachments if a["id"] not in ids]
    return [i for i in ids if i in existing]
