"""Both services' logs: one line per event, text or JSON (LOG_FORMAT), each with the id of
the request it is about.

A request id comes from the `X-Request-ID` header when a well-formed one arrives (nginx sets
it from `$request_id`; the app service passes it on to the model API), else it is made here.
It lives in a context variable for the request's thread, so every log line written while
serving that request carries it — and a thread that serves another request (the engine's)
passes it explicitly as `extra={"request_id": ...}`.

A line is one line whatever a client sent: the text format escapes control characters
(`\n` → `\\n`) in the message and every field, and indents a traceback's lines under the
line they belong to; JSON escapes them itself (and, here, the Unicode line separators).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, request

REQUEST_ID_HEADER = "X-Request-ID"
# Ids we accept from a client or proxy: short, and nothing that could forge a log line.
_WELL_FORMED = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
ACCESS_LOGGER = "chatstack.access"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
# What could end a line or rewrite a terminal: C0 and C1 controls, DEL, U+2028/U+2029.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_JSON_UNESCAPED = re.compile("[\x7f-\x9f\u2028\u2029]")
# LogRecord attributes that are not a caller's `extra`: JSON lines leave them out.
_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}


def current_request_id() -> str:
    """The id of the request this thread is serving, or "-" outside one."""
    return _request_id.get()


def set_request_id(value: str | None) -> str:
    """Adopt `value` when well formed, else a new id; returns the id now current."""
    rid = value if value and _WELL_FORMED.fullmatch(value) else uuid.uuid4().hex
    _request_id.set(rid)
    return rid


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request id unless the caller gave one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = current_request_id()
        return True


def escape_control(text: str) -> str:
    """`text` with no control character left: \\n, \\r, \\t, else \\xNN or \\uNNNN."""
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _ESCAPES:
        return _ESCAPES[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


class TextFormatter(logging.Formatter):
    """TEXT_FORMAT with every field escaped: a newline in a path or an id cannot forge a
    line. A traceback keeps its lines, each indented, so none starts like a log line."""

    def __init__(self, fmt: str = TEXT_FORMAT, datefmt: str | None = None) -> None:
        super().__init__(fmt, datefmt)

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        line = escape_control(self.formatMessage(record))
        blocks = []
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            blocks.append(record.exc_text)
        if record.stack_info:
            blocks.append(self.formatStack(record.stack_info))
        for block in blocks:
            for part in block.splitlines():
                line += "\n    " + escape_control(part)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                line[key] = value if isinstance(value, (str, int, float, bool)) else str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        # json.dumps escapes C0 controls but not C1 ones or U+2028/U+2029, which some
        # readers (Python's splitlines among them) take for line ends.
        return _JSON_UNESCAPED.sub(
            lambda m: f"\\u{ord(m.group()):04x}", json.dumps(line, ensure_ascii=False)
        )


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure_logging(level: str, log_format: str) -> None:
    """Root logger to stderr in the chosen format, every record stamped with its request."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def gunicorn_logconfig(level: str, log_format: str) -> dict[str, Any]:
    """gunicorn's own lines (start, stop, worker deaths) in the same format as ours."""
    factory = (
        "chatstack.logs.JsonFormatter" if log_format == "json" else "chatstack.logs.TextFormatter"
    )
    fmt = {"()": factory}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "chatstack.logs.RequestIdFilter"}},
        "formatters": {"chatstack": fmt},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "chatstack",
                "filters": ["request_id"],
            }
        },
        # gunicorn merges this over its defaults key by key: root and both of its loggers
        # must be named, or its own handlers are missing.
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": ["stderr"], "propagate": False},
            # Each service writes its own access line (install_request_ids).
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
        },
    }


def install_request_ids(app: Flask) -> None:
    """Give each request an id, echo it in the response, and log one access line per request.

    The access line is written when the response starts: for a stream that is before its
    last byte, so it reports the status and the time to the first byte.
    """
    access = logging.getLogger(ACCESS_LOGGER)

    @app.before_request
    def adopt_request_id() -> None:
        g.request_id = set_request_id(request.headers.get(REQUEST_ID_HEADER))
        g.request_started = time.perf_counter()

    @app.after_request
    def echo_request_id(response: Response) -> Response:
        if "request_id" not in g:  # an earlier before_request hook answered (e.g. 401)
            g.request_id = set_request_id(request.headers.get(REQUEST_ID_HEADER))
        response.headers[REQUEST_ID_HEADER] = current_request_id()
        started = g.get("request_started")
        millis = round((time.perf_counter() - started) * 1000, 1) if started else None
        access.info(
            "%s %s %s %sms",
            request.method,
            request.path,
            response.status_code,
            millis,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": millis,
                "remote": request.remote_addr or "-",
            },
        )
        return response
