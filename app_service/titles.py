"""A conversation's title, written by the model after its first answer.

A new conversation is called by its first words (`first_words`) at once; once the first answer
is complete, the turn's thread (its answer already delivered, its place among the user's
turns already given back) asks the model for a few words in the user's language, with a
small `max_tokens` so the request leaves the batch quickly. The title is stored only if the
conversation is still titled automatically, in the same UPDATE, so a rename made meanwhile
always wins; whatever goes wrong, the first words stay. Every socket of the user gets the
new title in a `conversation` frame.

`conversations.title_source` says who titled it: `auto` (the first words, or "New chat"),
`model`, or `user` (given at creation or renamed).
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Callable
from typing import Any

from app_service.upstream import UpstreamPool
from app_service.upstream_wire import StreamFailed, TextDelta

log = logging.getLogger(__name__)

TITLE_MAX_TOKENS = 16
TITLE_CHARS = 60
FIRST_WORDS_CHARS = 80
# What the model reads of the exchange: enough to know the topic, little to prefill.
EXCERPT_CHARS = 1200
PROMPT = (
    "Write a short title, three to six words, for a conversation that begins with the "
    "exchange below. Write it in the language of the user's message. Reply with the title "
    "only: no quotes, no punctuation at the end."
)


def first_words(text: str) -> str:
    """The title a conversation has until the model's: its first line, cut at a word within
    FIRST_WORDS_CHARS. No "…" is stored: the page ellipsizes what does not fit."""
    line = text.strip().splitlines()[0].strip() if text.strip() else ""
    if len(line) <= FIRST_WORDS_CHARS:
        return line or "New chat"
    cut = line[:FIRST_WORDS_CHARS]
    space = cut.rfind(" ")
    return (cut[:space] if space > FIRST_WORDS_CHARS // 2 else cut).rstrip(" ,;:-")


def clean_title(text: str) -> str | None:
    """The model's reply as a title, or None when nothing usable came back."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return None
    title = re.sub(r"^(title|titre|título|titel)\s*[:：]\s*", "", lines[0], flags=re.IGNORECASE)
    title = title.strip(" \t\"'“”‘’«»`*#_").rstrip(" .!?:;,。！？")
    title = re.sub(r"\s+", " ", title)
    if len(title) > TITLE_CHARS:
        cut = title[:TITLE_CHARS]
        space = cut.rfind(" ")
        title = cut[:space] if space > TITLE_CHARS // 2 else cut
    return title if len(title) >= 2 else None


def title_request(model: str, question: str, answer: str) -> dict[str, Any]:
    exchange = f"User: {question[:EXCERPT_CHARS]}\n\nAssistant: {answer[:EXCERPT_CHARS]}"
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": PROMPT},
            {"role": "user", "content": exchange},
        ],
        "max_tokens": TITLE_MAX_TOKENS,
        "temperature": 0,
    }


def ask_title(pool: UpstreamPool, model: str, question: str, answer: str) -> str | None:
    parts: list[str] = []
    for event in pool.chat_events(title_request(model, question, answer)):
        if isinstance(event, TextDelta):
            parts.append(event.text)
        elif isinstance(event, StreamFailed):
            log.info("no title from the model: %s", event.error.message)
            return None
    return clean_title("".join(parts))


def store_model_title(
    conn: sqlite3.Connection, user_id: str, conversation_id: str, title: str
) -> bool:
    """Set the model's title unless someone titled the conversation meanwhile."""
    cursor = conn.execute(
        "UPDATE conversations SET title = ?, title_source = 'model' "
        "WHERE id = ? AND user_id = ? AND title_source = 'auto'",
        (title, conversation_id, user_id),
    )
    return cursor.rowcount == 1


def write_title(
    conn: sqlite3.Connection,
    pool: UpstreamPool,
    *,
    user_id: str,
    conversation_id: str,
    model: str,
    question: str,
    answer: str,
    announce: Callable[[sqlite3.Row], None],
) -> None:
    """Ask, store, announce; never raises (a title is a nicety, the answer is what counts)."""
    try:
        title = ask_title(pool, model, question, answer)
        if title is None or not store_model_title(conn, user_id, conversation_id, title):
            return
        row = conn.execute(
            "SELECT * FROM conversations WHERE id = ?", (conversation_id,)
        ).fetchone()
        if row is not None:
            announce(row)
    except Exception:
        log.exception("writing a conversation's title failed")
