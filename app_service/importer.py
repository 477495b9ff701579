"""Importing conversations: a ChatGPT data export (`conversations.json`) or chatstack's own
JSON export becomes conversations of the importing user, every branch kept.

The file is read whole and checked before anything is written: its JSON (depth-limited,
chatstack/validation.py), its shape (typed models, below), its trees (every parent known, no
cycles) and its size (IMPORT_LIMITS). Then one transaction writes every conversation, so a
file that fails anywhere imports nothing. Both formats come down to `ImportedConversation`,
its messages ordered parents first (the store's invariant: a child is newer than its parent).

ChatGPT's export is a list of conversations, each a `mapping` of nodes (`parent`, `children`,
`message`) and a `current_node`, the branch that was shown. Only what a person saw is
taken: user and assistant text. System prompts, tool calls and their output, hidden context,
reasoning summaries and image parts are left out; a dropped node's children hang from its
nearest kept ancestor.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app_service import conversation_store as store
from app_service.db import new_id, now
from app_service.titles import first_words
from chatstack.errors import APIError
from chatstack.validation import load_json, param_path

MAX_CONVERSATIONS = 5_000
MAX_MESSAGES = 100_000  # in the whole file
MAX_MESSAGE_CHARS = 500_000
TITLE_CHARS = 200


@dataclass
class ImportedMessage:
    key: str  # its id in the file
    parent_key: str | None
    role: str
    content: str
    created_at: float
    status: str = "complete"
    attachments: list[dict[str, Any]] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, int] | None = None
    finish_reason: str | None = None
    error: str | None = None
    finished_at: float | None = None
    model: str | None = None


@dataclass
class ImportedConversation:
    title: str
    messages: list[ImportedMessage]  # parents before children
    active_key: str | None
    created_at: float
    updated_at: float
    settings: dict[str, Any] = field(default_factory=dict)


class Refused(Exception):
    """One conversation of the file is not importable: why, in words."""


# ---- chatstack's own export ----------------------------------------------------------------


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ExportedAttachment(_Lenient):
    id: str = Field(max_length=100)
    name: str = Field(max_length=500)


class ExportedSource(_Lenient):
    file_id: str = Field(max_length=100)
    file_name: str = Field(max_length=500)
    ordinal: int | None = None


class ExportedMessage(_Lenient):
    id: str = Field(min_length=1, max_length=200)
    parent_id: str | None = Field(None, max_length=200)
    role: Literal["user", "assistant"]
    content: str = Field(max_length=MAX_MESSAGE_CHARS)
    status: Literal["complete", "stopped", "failed", "streaming"] = "complete"
    attachments: list[ExportedAttachment] = Field(default_factory=list, max_length=100)
    sources: list[ExportedSource] = Field(default_factory=list, max_length=1000)
    usage: dict[str, int] | None = None
    finish_reason: Literal["stop", "length"] | None = None
    error: str | None = Field(None, max_length=10_000)
    created_at: float | None = None
    finished_at: float | None = None
    model: str | None = Field(None, max_length=200)


class ExportedConversation(_Lenient):
    title: str = Field("", max_length=10_000)
    system_prompt: str = Field("", max_length=20_000)
    model: str = Field("", max_length=200)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1, le=131_072)
    created_at: float | None = None
    updated_at: float | None = None
    active_leaf_id: str | None = None
    messages: list[ExportedMessage] = Field(max_length=MAX_MESSAGES)


def from_chatstack(data: dict[str, Any]) -> ImportedConversation:
    exported = ExportedConversation.model_validate(data)
    stamp = now()
    messages = [
        ImportedMessage(
            key=m.id,
            parent_key=m.parent_id,
            role=m.role,
            content=m.content,
            created_at=m.created_at or stamp,
            # An answer that was streaming when exported never ended: it is what a restart
            # leaves (docs/protocol.md), failed with its text.
            status="failed" if m.status == "streaming" else m.status,
            attachments=[a.model_dump() for a in m.attachments],
            sources=[s.model_dump() for s in m.sources],
            usage=m.usage,
            finish_reason=m.finish_reason,
            error=m.error
            if m.status != "streaming"
            else "It was still being written when exported.",
            finished_at=m.finished_at if m.status != "streaming" else None,
            model=m.model,
        )
        for m in exported.messages
    ]
    return ImportedConversation(
        title=exported.title,
        messages=parents_first(messages),
        active_key=exported.active_leaf_id,
        created_at=exported.created_at or stamp,
        updated_at=exported.updated_at or exported.created_at or stamp,
        settings={
            "system_prompt": exported.system_prompt,
            "model": exported.model,
            "temperature": exported.temperature,
            "top_p": exported.top_p,
            "max_tokens": exported.max_tokens,
        },
    )


# ---- ChatGPT's export ----------------------------------------------------------------------


class GPTAuthor(_Lenient):
    role: str = Field(max_length=50)


class GPTContent(_Lenient):
    content_type: str = Field("text", max_length=100)
    parts: list[Any] | None = Field(None, max_length=1000)
    text: str | None = Field(None, max_length=MAX_MESSAGE_CHARS)


class GPTMessage(_Lenient):
    id: str | None = Field(None, max_length=200)
    author: GPTAuthor
    content: GPTContent | None = None
    create_time: float | None = None
    recipient: str | None = Field(None, max_length=200)
    metadata: dict[str, Any] = Field(default_factory=dict)


class GPTNode(_Lenient):
    id: str | None = Field(None, max_length=200)
    message: GPTMessage | None = None
    parent: str | None = Field(None, max_length=200)
    children: list[str] = Field(default_factory=list, max_length=10_000)


class GPTConversation(_Lenient):
    title: str | None = Field(None, max_length=10_000)
    create_time: float | None = None
    update_time: float | None = None
    mapping: dict[str, GPTNode] = Field(max_length=MAX_MESSAGES * 4)
    current_node: str | None = Field(None, max_length=200)


# Content ChatGPT showed as a message; everything else (tool output, browsing, reasoning,
# custom instructions) is not what either side of the conversation said.
SHOWN_CONTENT = frozenset({"text", "multimodal_text", "code"})


def gpt_text(message: GPTMessage) -> str | None:
    """The text a person saw in this message, or None when it is not one to keep."""
    if message.author.role not in ("user", "assistant") or message.content is None:
        return None
    if message.metadata.get("is_visually_hidden_from_conversation"):
        return None
    if message.recipient not in (None, "all"):  # a call to a tool, not an answer
        return None
    content = message.content
    if content.content_type not in SHOWN_CONTENT:
        return None
    if content.content_type == "code":
        text = content.text or ""
    else:
        text = "\n".join(part for part in content.parts or [] if isinstance(part, str))
    if len(text) > MAX_MESSAGE_CHARS:
        raise Refused(f"a message is longer than {MAX_MESSAGE_CHARS:,} characters")
    return text if text.strip() else None


def gpt_model(message: GPTMessage) -> str | None:
    """The model ChatGPT says wrote an answer (`metadata.model_slug`), when it says so."""
    slug = message.metadata.get("model_slug")
    if message.author.role != "assistant" or not isinstance(slug, str) or not slug.strip():
        return None
    return slug.strip()[:200]


def from_chatgpt(data: dict[str, Any]) -> ImportedConversation:
    exported = GPTConversation.model_validate(data)
    nodes = exported.mapping
    for key, node in nodes.items():
        if node.parent is not None and node.parent not in nodes:
            raise Refused(f"node {key!r} names a parent that is not in the file")
    stamp = now()
    kept: dict[str, str | None] = {}  # node key → its nearest kept ancestor (or None)
    messages: list[ImportedMessage] = []
    # Siblings oldest first, as `sibling_ids` lists them.
    by_time = sorted(nodes, key=lambda n: (nodes[n].message and nodes[n].message.create_time) or 0)
    for key in walk_parents_first(by_time, lambda n: nodes[n].parent):
        node = nodes[key]
        parent = node.parent
        anchor = kept.get(parent) if parent is not None else None  # parents come first
        text = gpt_text(node.message) if node.message is not None else None
        if text is None:
            kept[key] = anchor
            continue
        kept[key] = key
        assert node.message is not None
        messages.append(
            ImportedMessage(
                key=key,
                parent_key=anchor,
                role=node.message.author.role,
                content=text,
                created_at=node.message.create_time or exported.create_time or stamp,
                model=gpt_model(node.message),
            )
        )
    active = kept.get(exported.current_node) if exported.current_node else None
    return ImportedConversation(
        title=exported.title or "",
        messages=messages,
        active_key=active,
        created_at=exported.create_time or stamp,
        updated_at=exported.update_time or exported.create_time or stamp,
    )


# ---- trees ---------------------------------------------------------------------------------


def walk_parents_first(keys: Iterable[str], parent_of: Any) -> list[str]:
    """Every key, each after its parent, siblings in the order given; a key whose parent
    chain never reaches a root (a cycle) refuses the conversation."""
    keys = list(keys)
    children: dict[str | None, list[str]] = {}
    for key in keys:
        children.setdefault(parent_of(key), []).append(key)
    order: list[str] = []
    queue = deque(children.get(None, []))
    while queue:
        key = queue.popleft()
        order.append(key)
        queue.extend(children.get(key, []))
    if len(order) != len(keys):
        raise Refused("its messages' parents form a loop")
    return order


def parents_first(messages: list[ImportedMessage]) -> list[ImportedMessage]:
    by_key = {m.key: m for m in messages}
    if len(by_key) != len(messages):
        raise Refused("two of its messages have the same id")
    for m in messages:
        if m.parent_key is not None and m.parent_key not in by_key:
            raise Refused(f"message {m.key!r} names a parent that is not in the file")
    order = walk_parents_first(by_key, lambda k: by_key[k].parent_key)
    return [by_key[k] for k in order]


# ---- the file -----------------------------------------------------------------------------


def parse_import(raw: bytes) -> list[ImportedConversation]:
    """The file's conversations, checked; a 400 `invalid_import` names what is wrong."""
    try:
        data = load_json(raw)
    except APIError as exc:  # its words are about a request body; this is a file
        detail = exc.message.split(": ", 1)[-1] if exc.code == "invalid_json" else exc.message
        raise invalid(f"The file is not JSON we can read: {detail}") from None
    items = data if isinstance(data, list) else [data]
    if not items:
        raise invalid("The file holds no conversations.")
    if len(items) > MAX_CONVERSATIONS:
        raise invalid(f"The file holds more than {MAX_CONVERSATIONS:,} conversations.")
    conversations = []
    for number, item in enumerate(items, start=1):
        conversations.append(parse_one(item, number))
    total = sum(len(c.messages) for c in conversations)
    if total > MAX_MESSAGES:
        raise invalid(f"The file holds more than {MAX_MESSAGES:,} messages.")
    return conversations


def parse_one(item: Any, number: int) -> ImportedConversation:
    where = f"Conversation {number}"
    if not isinstance(item, dict):
        raise invalid(f"{where} is not a JSON object.")
    if isinstance(item.get("title"), str) and item["title"].strip():
        where += f" (“{item['title'][:60]}”)"
    try:
        if "mapping" in item:
            return from_chatgpt(item)
        if "messages" in item:
            return from_chatstack(item)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise invalid(f"{where}: '{param_path(tuple(first['loc']))}': {first['msg']}.") from None
    except Refused as exc:
        raise invalid(f"{where}: {exc}.") from None
    raise invalid(
        f"{where} is neither a ChatGPT export (no 'mapping') nor a chatstack export "
        "(no 'messages')."
    )


def invalid(message: str) -> APIError:
    return APIError(400, f"Nothing was imported. {message}", param="file", code="invalid_import")


def store_imports(
    conn: sqlite3.Connection, user_id: str, conversations: list[ImportedConversation]
) -> list[str]:
    """Write them all (in the caller's transaction); the new conversations' ids."""
    ids = []
    for imported in conversations:
        first_user = next((m.content for m in imported.messages if m.role == "user"), "")
        title = (imported.title.strip() or first_words(first_user))[:TITLE_CHARS]
        conversation_id = store.create_conversation(
            conn, user_id, {"title": title, **imported.settings}
        )
        new_ids: dict[str, str] = {}
        for seq, message in enumerate(imported.messages, start=1):
            new_ids[message.key] = new_id("msg")
            store.insert_imported_message(
                conn,
                conversation_id,
                message_id=new_ids[message.key],
                parent_id=new_ids[message.parent_key] if message.parent_key else None,
                seq=seq,
                message=message,
            )
        leaf = new_ids.get(imported.active_key) if imported.active_key else None
        if leaf is None and imported.messages:
            leaf = new_ids[imported.messages[-1].key]
        store.set_active_leaf(conn, conversation_id, leaf)
        conn.execute(
            "UPDATE conversations SET created_at = ?, updated_at = ? WHERE id = ?",
            (imported.created_at, imported.updated_at, conversation_id),
        )
        ids.append(conversation_id)
    return ids
