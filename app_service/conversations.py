"""Conversation routes: create, list, rename and set up, fetch, delete, export; a
conversation's branches (message_tree.py): switch to one, delete one."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from app_service import conversation_store as store
from app_service import frames, importer, message_tree
from app_service.accounts import current_user, login_required
from app_service.bodies import json_body
from app_service.db import connect, db, snapshot, transaction
from app_service.files import too_large
from app_service.turn import StopReason
from app_service.turn_registry import turn_registry
from chatstack.errors import APIError
from chatstack.validation import parse_body

bp = Blueprint("conversations", __name__, url_prefix="/api/conversations")


class ConversationFields(BaseModel):
    """Title and per-conversation settings; on PATCH only the fields sent change."""

    model_config = ConfigDict(extra="forbid", strict=True)
    title: str | None = Field(None, min_length=1, max_length=200)
    system_prompt: str | None = Field(None, max_length=20_000)
    model: str | None = Field(None, max_length=200)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1, le=131_072)


def recover_interrupted_messages(db_path: Path) -> int:
    """At start-up: answers a previous process left mid-stream become `failed`."""
    conn = connect(db_path)
    try:
        return store.recover_interrupted(conn)
    finally:
        conn.close()


def conversation_with_messages(conversation_id: str, *, whole_tree: bool = False) -> dict[str, Any]:
    """The conversation and its active path (each message with its `sibling_ids`); with
    `whole_tree`, every message of every branch and the active leaf's id (the JSON export)."""
    user = current_user()
    with snapshot(db()) as conn:
        conversation = store.get_conversation(conn, user["id"], conversation_id)
        rows = store.messages_of(conn, conversation_id)
    path = message_tree.active_path(rows, conversation["active_leaf_id"])
    body = store.conversation_dict(conversation)
    if whole_tree:
        body["active_leaf_id"] = path[-1]["id"] if path else None
    body["messages"] = store.path_dicts(rows, rows if whole_tree else path)
    return body


def announce(user_id: str, conversation_id: str) -> None:
    """Every socket of the user learns the conversation's fields (another tab's sidebar)."""
    row = store.get_conversation(db(), user_id, conversation_id)
    frame = frames.ConversationChanged(conversation=store.conversation_dict(row))
    turn_registry().publish(user_id, frame.wire())


class BranchChoice(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    message_id: str = Field(min_length=1, max_length=100)


def refuse_while_generating(user_id: str, conversation_id: str) -> None:
    """Branches do not change under an answer being written into one of them."""
    if turn_registry().running(user_id, conversation_id) is not None:
        raise APIError(
            409,
            "An answer is still being generated in this conversation; stop it or wait for it "
            "to finish.",
            code="busy",
        )


@bp.post("")
@login_required
def create() -> tuple[Response, int]:
    fields = parse_body(json_body(), ConversationFields).model_dump(exclude_unset=True)
    user_id = current_user()["id"]
    with transaction() as conn:
        conversation_id = store.create_conversation(conn, user_id, fields)
    body = conversation_with_messages(conversation_id)
    announce(user_id, conversation_id)
    return jsonify(body), 201


@bp.post("/import")
@login_required
def import_file() -> tuple[Response, int]:
    """A ChatGPT export or chatstack's JSON export (a multipart `file`, at most
    MAX_UPLOAD_MB): every conversation in it, every branch, or nothing (importer.py)."""
    upload = request.files.get("file")
    if upload is None:
        raise APIError(
            400,
            "Missing required parameter: 'file' (a multipart/form-data file field).",
            param="file",
            code="missing_required_parameter",
        )
    limit = current_app.extensions["chatstack_settings"].max_upload_bytes
    raw = upload.stream.read(limit + 1)
    if len(raw) > limit:
        raise too_large(limit)
    parsed = importer.parse_import(raw)
    user_id = current_user()["id"]
    with transaction() as conn:
        ids = importer.store_imports(conn, user_id, parsed)
    for conversation_id in ids:
        announce(user_id, conversation_id)
    rows = [store.get_conversation(db(), user_id, cid) for cid in ids]
    return jsonify({"conversations": [store.conversation_dict(r) for r in rows]}), 201


@bp.get("")
@login_required
def list_all() -> Response:
    query = request.args.get("q", "")[:200]
    user_id = current_user()["id"]
    if query.strip():
        return jsonify({"conversations": store.search_conversations(db(), user_id, query)})
    rows = store.list_conversations(db(), user_id)
    return jsonify({"conversations": [store.conversation_dict(r) for r in rows]})


@bp.get("/<conversation_id>")
@login_required
def fetch(conversation_id: str) -> Response:
    return jsonify(conversation_with_messages(conversation_id))


@bp.patch("/<conversation_id>")
@login_required
def update(conversation_id: str) -> Response:
    fields = parse_body(json_body(), ConversationFields).model_dump(exclude_unset=True)
    if fields.get("title", "") is None:
        raise APIError(400, "title cannot be null", param="title")
    for name in ("system_prompt", "model"):  # null means "none": stored as empty text
        if name in fields and fields[name] is None:
            fields[name] = ""
    user_id = current_user()["id"]
    with transaction() as conn:
        store.update_conversation(conn, user_id, conversation_id, fields)
    if fields:
        announce(user_id, conversation_id)
    return jsonify(conversation_with_messages(conversation_id))


@bp.delete("/<conversation_id>")
@login_required
def delete(conversation_id: str) -> Response:
    user_id = current_user()["id"]
    with transaction() as conn:
        store.delete_conversation(conn, user_id, conversation_id)
    # Its answer, if one is generating, stops at once (it finds its row gone and says so).
    turn_registry().stop(user_id, conversation_id, StopReason.DELETED)
    turn_registry().publish(
        user_id, frames.ConversationDeleted(conversation_id=conversation_id).wire()
    )
    return Response(status=204)


@bp.put("/<conversation_id>/branch")
@login_required
def select_branch(conversation_id: str) -> Response:
    """Show the branch through `message_id` (any message, e.g. a sibling from `‹ 2/3 ›`):
    its newest continuation becomes the active leaf, for this and every later turn."""
    choice = parse_body(json_body(), BranchChoice)
    user_id = current_user()["id"]
    refuse_while_generating(user_id, conversation_id)
    store.select_branch(db(), user_id, conversation_id, choice.message_id)
    return jsonify(conversation_with_messages(conversation_id))


@bp.delete("/<conversation_id>/messages/<message_id>")
@login_required
def delete_branch(conversation_id: str, message_id: str) -> Response:
    """Delete a message and everything below it; the conversation shows a sibling's branch,
    or the parent, if the active one went."""
    user_id = current_user()["id"]
    refuse_while_generating(user_id, conversation_id)
    store.delete_branch(db(), user_id, conversation_id, message_id)
    return jsonify(conversation_with_messages(conversation_id))


@bp.get("/<conversation_id>/export")
@login_required
def export(conversation_id: str) -> Response:
    fmt = request.args.get("format", "md")
    # Markdown is the transcript shown (the active path); JSON keeps every branch.
    conversation = conversation_with_messages(conversation_id, whole_tree=fmt == "json")
    if fmt == "json":
        body, mimetype, ext = (
            json.dumps(conversation, indent=2, ensure_ascii=False),
            "application/json",
            "json",
        )
    elif fmt in ("md", "markdown"):
        body, mimetype, ext = as_markdown(conversation), "text/markdown", "md"
    else:
        raise APIError(400, "format must be 'md' or 'json'", param="format")
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = (
        f'attachment; filename="{safe_filename(conversation["title"])}.{ext}"'
    )
    return response


def safe_filename(title: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", title).strip("-")[:80] or "conversation"


STATUS_NOTES = {"stopped": "*(stopped by the user)*", "failed": "*(failed: {error})*"}


def as_markdown(conversation: dict[str, Any]) -> str:
    """A readable transcript: title, settings, then each turn with its files and status."""
    lines = [f"# {conversation['title']}", ""]
    if conversation["system_prompt"]:
        lines += ["> **System prompt:** " + conversation["system_prompt"].replace("\n", "\n> "), ""]
    for message in conversation["messages"]:
        speaker = "You" if message["role"] == "user" else "Assistant"
        lines += [f"## {speaker}", "", message["content"] or "", ""]
        if message["attachments"]:
            names = ", ".join(a["name"] for a in message["attachments"])
            lines += [f"*Attached: {names}*", ""]
        if message["sources"]:
            names = ", ".join(sorted({s["file_name"] for s in message["sources"]}))
            lines += [f"*Sources: {names}*", ""]
        note = STATUS_NOTES.get(message["status"])
        if note:
            lines += [note.format(error=message["error"] or "unknown error"), ""]
    return "\n".join(lines).rstrip() + "\n"
