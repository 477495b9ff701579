"""Reading model-API replies: raw bytes, SSE data lines, chat chunks as typed events, and
failures as our error type.

Kept apart from the pool (upstream.py), which decides where requests go.
"""

from __future__ import annotations

import http.client
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests
import urllib3.exceptions

from chatstack.errors import APIError

log = logging.getLogger(__name__)

UNAVAILABLE = "The model service is unavailable right now. Please try again in a moment."
STOPPED = "The model service stopped while answering."
BUSY = "The model is busy with other requests right now. Please try again in a moment."
TIMED_OUT = "The model service did not answer in time."


class UpstreamError(APIError):
    """The model API could not answer: unreachable (502/503), timed out (504), busy (429),
    or its own OpenAI-shaped error (its status and body kept)."""


def iter_raw(reply: requests.Response) -> Iterator[bytes]:
    """The body's bytes as they arrive (each read returns what the socket holds), so an
    SSE stream can be forwarded unbuffered. Failures become UpstreamError."""
    try:
        while True:
            data = reply.raw.read1(64 * 1024, decode_content=True)
            if not data:
                return
            yield data
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
            raise UpstreamError(504, TIMED_OUT, code="upstream_timeout") from exc
        raise UpstreamError(502, STOPPED, code="upstream_disconnected") from exc


def error_from_response(reply: requests.Response) -> UpstreamError:
    """An upstream's non-200 as our error: its OpenAI body kept, anything else a 502."""
    status = reply.status_code
    try:
        body = reply.json()
    except ValueError:
        body = None
    if status in (401, 403):
        # Our shared key was refused: the caller's own key is fine, so never pass a 401 on.
        log.error("model API refused MODEL_API_KEY (%s)", status)
        return UpstreamError(
            502,
            "The app service could not authenticate to the model service.",
            code="upstream_auth_failed",
        )
    fields = error_fields(body)
    if fields is None or status < 400:
        return UpstreamError(
            502,
            f"The model service answered with an unexpected status {status}.",
            code="bad_upstream",
        )
    message, error_type, param, code = fields
    return UpstreamError(status, message, param=param, code=code, error_type=error_type)


def busy_error(retry_after: list[str]) -> UpstreamError:
    """Every upstream that serves the model answered 429: nothing was generated anywhere.
    `retry_after` holds their Retry-After headers ("" where none); the soonest is kept."""
    seconds = [int(v) for v in retry_after if v.strip().isdigit()]
    dates = [v for v in retry_after if v.strip() and not v.strip().isdigit()]
    wait = str(min(seconds)) if seconds else (dates[0] if dates else None)
    headers = {"Retry-After": wait} if wait else {}
    return UpstreamError(429, BUSY, code="model_busy", headers=headers)


def error_from_frame(frame: dict[str, Any]) -> UpstreamError:
    """An `{"error": …}` event inside a stream: no HTTP status travels with it."""
    fields = error_fields(frame) or ("The model service failed while answering.", None, None, None)
    message, error_type, param, code = fields
    status = code if isinstance(code, int) and 400 <= code <= 599 else 502
    return UpstreamError(
        status,
        message,
        param=param,
        code=None if isinstance(code, int) else code,
        error_type=error_type,
    )


def error_for_exception(exc: BaseException, *, mid_stream: bool = False) -> UpstreamError:
    """A requests failure as our error: timeouts 504, lost connections 502/503."""
    if is_read_timeout(exc):
        return UpstreamError(504, TIMED_OUT, code="upstream_timeout")
    if mid_stream:
        return UpstreamError(502, STOPPED, code="upstream_disconnected")
    if never_reached(exc):
        return UpstreamError(503, UNAVAILABLE, code="model_service_unavailable")
    return UpstreamError(502, STOPPED, code="upstream_disconnected")


def error_fields(body: Any) -> tuple[str, str | None, str | None, Any] | None:
    """(message, type, param, code) from OpenAI's shape, vLLM's flat one or TGI's string."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"], error.get("type"), error.get("param"), error.get("code")
    if isinstance(error, str):
        return error, body.get("error_type"), None, None
    if isinstance(body.get("message"), str):
        return body["message"], body.get("type"), body.get("param"), body.get("code")
    return None


# ---- a chat completion stream as events (what the chat turn consumes) -------------------


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Finish:
    reason: str  # "stop" | "length" | an engine's own


@dataclass(frozen=True)
class Usage:
    usage: dict[str, int]  # the counts only: prompt_tokens, completion_tokens, total_tokens


USAGE_COUNTS = ("prompt_tokens", "completion_tokens", "total_tokens")


@dataclass(frozen=True)
class StreamFailed:
    """The upstream refused, failed or vanished; nothing follows."""

    error: UpstreamError


ChatEvent = TextDelta | Finish | Usage | StreamFailed


def chunk_events(chunk: dict[str, Any]) -> Iterator[ChatEvent]:
    """One OpenAI `chat.completion.chunk` → its events (choice 0's: chat asks for one)."""
    usage = chunk.get("usage")
    if isinstance(usage, dict) and usage:
        # Engines add nested details (prompt_tokens_details: the model API's and vLLM's
        # cached tokens); a chat turn stores and sends the three counts.
        yield Usage({k: usage[k] for k in USAGE_COUNTS if isinstance(usage.get(k), int)})
    for choice in chunk.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        text = (choice.get("delta") or {}).get("content") or ""
        if isinstance(text, str) and text:
            yield TextDelta(text)
        if choice.get("finish_reason"):
            yield Finish(str(choice["finish_reason"]))


def data_field(line: bytes) -> bytes | None:
    if not line.startswith(b"data:"):
        return None  # blank separators, `: keep-alive` comments, event:/id: fields
    return line[5:].strip()


def never_reached(exc: BaseException) -> bool:
    """True when the request was never sent: retrying elsewhere cannot run it twice."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        return isinstance(reason, urllib3.exceptions.NewConnectionError)
    return False


def closed_without_answer(exc: BaseException) -> bool:
    """True when the server closed the connection before sending any of a response: the
    race of a kept-alive connection closed by the server's idle timeout as it was reused
    (http.client's RemoteDisconnected, a reset or a broken pipe). Read timeouts are not."""
    if not isinstance(exc, requests.ConnectionError) or is_read_timeout(exc):
        return False
    seen: BaseException | None = exc
    for _ in range(6):  # requests → urllib3 → http.client: the cause is a few links down
        if isinstance(seen, http.client.RemoteDisconnected | ConnectionResetError):
            return True
        if isinstance(seen, BrokenPipeError):
            return True
        inner = seen.args[-1] if seen is not None and seen.args else None
        seen = inner if isinstance(inner, BaseException) else getattr(seen, "__context__", None)
        if seen is None:
            return False
    return False


def is_read_timeout(exc: BaseException) -> bool:
    if isinstance(exc, requests.ReadTimeout):
        return True
    # requests reports a read timeout inside a streamed body as a ConnectionError.
    inner = exc.args[0] if isinstance(exc, requests.ConnectionError) and exc.args else None
    return isinstance(inner, urllib3.exceptions.ReadTimeoutError)


def describe(exc: BaseException) -> str:
    if is_read_timeout(exc):
        return "read timed out"
    if isinstance(exc, requests.ConnectTimeout):
        return "connect timed out"
    if never_reached(exc):
        return "connection refused or unreachable"
    return type(exc).__name__
