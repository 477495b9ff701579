"""Uploads: `POST/GET /api/files`, `GET/DELETE /api/files/<id>`.

An upload is checked (name, size, type by extension and content), stored under a generated
id in `uploads_dir`, its text extracted in a sandboxed child (extraction.py), chunked
(chunking.py) and indexed in FTS5 in the same transaction as its row. Each user has a few
uploads in progress at most, and a storage quota (upload_limits.py). See docs/uploads.md.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from pathlib import Path
from typing import IO, Any

from flask import Blueprint, Response, current_app, jsonify, request
from flask.blueprints import BlueprintSetupState
from werkzeug.datastructures import FileStorage

from app_service.accounts import current_user, login_required
from app_service.chunking import chunk_text
from app_service.db import db, new_id, now, transaction
from app_service.extraction import check_content, extract_text, kind_for_name, sanitize_name
from app_service.metrics import app_metrics
from app_service.settings import Settings
from app_service.upload_limits import UploadLimits
from chatstack.errors import APIError

bp = Blueprint("files", __name__, url_prefix="/api/files")

FILE_ID = re.compile(r"^file_[0-9a-f]{32}$")
COPY_BLOCK = 1024 * 1024
METADATA = "id, name, kind, size, created_at, chunk_count, COALESCE(chars, length(text)) AS chars"


def settings() -> Settings:
    return current_app.extensions["chatstack_settings"]


@bp.record_once
def _install_upload_limits(state: BlueprintSetupState) -> None:
    s: Settings = state.app.extensions["chatstack_settings"]
    state.app.extensions["chatstack_upload_limits"] = UploadLimits(
        s.user_max_extractions, s.user_storage_bytes
    )


def upload_limits() -> UploadLimits:
    return current_app.extensions["chatstack_upload_limits"]


def stored_bytes(conn: sqlite3.Connection, user_id: str) -> int:
    """The sum of the sizes of the user's stored files: what counts against the quota."""
    row = conn.execute("SELECT COALESCE(SUM(size), 0) FROM files WHERE user_id = ?", (user_id,))
    return row.fetchone()[0]


def file_json(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "kind": row["kind"],
        "size": row["size"],
        "created_at": row["created_at"],
        "chunk_count": row["chunk_count"],
        "chars": row["chars"],
    }


# ---- storing an upload ---------------------------------------------------------------------


def too_large(limit: int) -> APIError:
    """An upload (or an import) over MAX_UPLOAD_MB."""
    return APIError(
        413,
        f"The file is larger than the upload limit of {limit // (1024 * 1024)} MiB "
        f"({limit} bytes).",
        param="file",
        code="file_too_large",
    )


def save_limited(stream: IO[bytes], dest: Path, limit: int) -> tuple[int, str]:
    """Copy `stream` to `dest`; return (size, sha256). Over `limit` bytes → 413."""
    digest = hashlib.sha256()
    size = 0
    with dest.open("xb") as out:
        while block := stream.read(COPY_BLOCK):
            size += len(block)
            if size > limit:
                raise too_large(limit)
            digest.update(block)
            out.write(block)
    return size, digest.hexdigest()


def store_upload(user_id: str, upload: FileStorage) -> str:
    """Check, store, extract, chunk and index one upload; return its new id.

    Over the user's storage quota → 413 `quota_exceeded`, before the file is extracted.
    """
    s = settings()
    name = sanitize_name(upload.filename)
    kind = kind_for_name(name)
    file_id = new_id("file")
    part = s.uploads_dir / f"{file_id}.part"
    try:
        size, sha256 = save_limited(upload.stream, part, s.max_upload_bytes)
        # The reservation lasts until the row is committed: from then on the row counts.
        with upload_limits().room(user_id, size, lambda: stored_bytes(db(), user_id)):
            check_content(part, kind)
            text = extract_text(
                part,
                kind,
                timeout=s.extract_timeout_seconds,
                memory_mb=s.extract_memory_mb,
                # No real document has more text than the largest upload has bytes.
                max_chars=s.max_upload_bytes,
            )
            chunks = chunk_text(text, s.chunk_tokens)
            index_upload(part, (file_id, user_id, name, kind, size, sha256, text), chunks)
    finally:
        part.unlink(missing_ok=True)
    return file_id


def index_upload(part: Path, row: tuple[Any, ...], chunks: list[str]) -> None:
    """Move the checked file to its id and insert its row and chunks, or neither.

    `row`: (id, user_id, name, kind, size, sha256, text), the `files` columns in order.
    """
    file_id = row[0]
    final = part.with_name(file_id)
    os.replace(part, final)
    try:
        with transaction() as conn:
            conn.execute(
                "INSERT INTO files (id, user_id, name, kind, size, sha256, text, chunk_count,"
                " created_at, chars) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*row, len(chunks), now(), len(row[6])),
            )
            conn.executemany(
                "INSERT INTO chunks (text, file_id, ordinal) VALUES (?, ?, ?)",
                ((chunk, file_id, ordinal) for ordinal, chunk in enumerate(chunks)),
            )
    except BaseException:
        final.unlink(missing_ok=True)
        raise


def owned_file(conn: sqlite3.Connection, user_id: str, file_id: str) -> sqlite3.Row:
    """The user's file's metadata; a missing id and another user's id are the same 404."""
    row = None
    if FILE_ID.match(file_id):
        row = conn.execute(
            f"SELECT {METADATA} FROM files WHERE id = ? AND user_id = ?", (file_id, user_id)
        ).fetchone()
    if row is None:
        raise APIError(404, f"No such file: '{file_id}'.", code="file_not_found")
    return row


# ---- routes --------------------------------------------------------------------------------


@bp.post("")
@login_required
def upload_file() -> tuple[Response, int, dict[str, str]]:
    user_id = current_user()["id"]
    # The slot is taken before the body is read: a user's slow uploads hold slots too.
    with app_metrics().counting_upload(), upload_limits().slot(user_id):
        upload = request.files.get("file")
        if upload is None:
            raise APIError(
                400,
                "Missing required parameter: 'file' (a multipart/form-data file field).",
                param="file",
                code="missing_required_parameter",
            )
        file_id = store_upload(user_id, upload)
    row = owned_file(db(), user_id, file_id)
    return jsonify(file_json(row)), 201, {"Location": f"/api/files/{file_id}"}


@bp.get("")
@login_required
def list_files() -> Response:
    rows = (
        db()
        .execute(
            f"SELECT {METADATA} FROM files WHERE user_id = ? ORDER BY created_at DESC, rowid DESC",
            (current_user()["id"],),
        )
        .fetchall()
    )
    return jsonify({"object": "list", "data": [file_json(row) for row in rows]})


@bp.get("/<file_id>")
@login_required
def get_file(file_id: str) -> Response:
    return jsonify(file_json(owned_file(db(), current_user()["id"], file_id)))


@bp.delete("/<file_id>")
@login_required
def delete_file(file_id: str) -> Response:
    with transaction() as conn:
        owned_file(conn, current_user()["id"], file_id)
        conn.execute("DELETE FROM chunks WHERE file_id = ?", (file_id,))
        conn.execute("DELETE FROM files WHERE id = ?", (file_id,))
    (settings().uploads_dir / file_id).unlink(missing_ok=True)
    return Response(status=204)
