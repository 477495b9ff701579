"""The client for model APIs (ours, or any OpenAI-compatible engine: vLLM, TGI, llama.cpp).

- One requests.Session, explicit (connect, read) timeouts from Settings.
- MODEL_API_URLS lists one or more base URLs (without /v1). Each request goes to the
  healthy upstream that serves the requested model with the fewest requests in flight.
  A failed connection takes an upstream out; a background thread polls /health of every
  upstream every `upstream_health_seconds` and puts it back when it answers 200.
- A 429 (the model API's queue is full) generated nothing: the request goes to another
  upstream that serves the model, or fails as "busy". A busy upstream is never taken out.
- Every request carries `Authorization: Bearer MODEL_API_KEY` when a key is set.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from app_service.settings import Settings
from app_service.upstream_wire import (
    STOPPED,
    UNAVAILABLE,
    ChatEvent,
    StreamFailed,
    UpstreamError,
    busy_error,
    chunk_events,
    closed_without_answer,
    data_field,
    describe,
    error_for_exception,
    error_from_frame,
    error_from_response,
    never_reached,
)
from chatstack.errors import APIError
from chatstack.logs import REQUEST_ID_HEADER, current_request_id

log = logging.getLogger(__name__)

# Health checks must not hang the checker for a whole generation's read timeout.
HEALTH_READ_TIMEOUT = 10.0
UPSTREAM_POOL_SIZE = 256


@dataclass
class Upstream:
    """One model API as the pool sees it; mutated only under the pool's lock."""

    url: str
    healthy: bool = True  # optimistic until the first check: a failed connection corrects it
    in_flight: int = 0
    models: tuple[str, ...] | None = None  # None: unknown, so it may serve any model
    error: str | None = None

    def serves(self, model: str | None) -> bool:
        return not model or self.models is None or model in self.models


class UpstreamPool:
    """Routes requests over the configured model APIs and keeps their health current."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.timeout = (settings.upstream_connect_timeout, settings.upstream_read_timeout)
        self._upstreams = [Upstream(url.rstrip("/")) for url in settings.model_api_urls]
        self._lock = threading.Lock()
        self._turn = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.session = requests.Session()
        # Upstreams live on the private network: proxies and .netrc from the environment
        # must not reroute or slow down every call.
        self.session.trust_env = False
        adapter = HTTPAdapter(
            pool_connections=max(len(self._upstreams), 1),
            # Idle connections kept for reuse per model API; streams beyond it still open
            # their own (the pool does not block), they are just not kept afterwards.
            pool_maxsize=UPSTREAM_POOL_SIZE,
            max_retries=0,
        )
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        if settings.model_api_key:
            self.session.headers["Authorization"] = f"Bearer {settings.model_api_key}"

    # ---- health ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background health checker (daemon thread)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._health_loop, name="upstream-health", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the health checker (tests; the thread is a daemon otherwise)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _health_loop(self) -> None:
        while not self._stop.is_set():
            self.check_health()
            self._stop.wait(self.settings.upstream_health_seconds)

    def check_health(self) -> None:
        """One round: GET /health of every upstream; on 200 also learn its model ids."""
        for upstream in list(self._upstreams):
            healthy, models, error = self._probe(upstream.url)
            with self._lock:
                if healthy and not upstream.healthy:
                    log.info("model API %s is healthy again", upstream.url)
                elif not healthy and upstream.healthy:
                    log.warning("model API %s is unhealthy: %s", upstream.url, error)
                upstream.healthy = healthy
                upstream.error = error
                if healthy:
                    upstream.models = models

    def _probe(self, url: str) -> tuple[bool, tuple[str, ...] | None, str | None]:
        timeout = (self.settings.upstream_connect_timeout, HEALTH_READ_TIMEOUT)
        try:
            reply = self.session.get(url + "/health", timeout=timeout)
            reply.close()
            if reply.status_code != 200:
                return False, None, f"/health answered {reply.status_code}"
        except requests.RequestException as exc:
            return False, None, describe(exc)
        try:
            listed = self.session.get(url + "/v1/models", timeout=timeout)
            ids = tuple(m["id"] for m in listed.json()["data"]) if listed.ok else None
        except (requests.RequestException, ValueError, KeyError, TypeError):
            ids = None  # an engine without a usable model list may serve any model
        return True, ids, None

    def _mark_down(self, upstream: Upstream, exc: BaseException) -> None:
        with self._lock:
            if upstream.healthy:
                log.warning("model API %s taken out: %s", upstream.url, describe(exc))
            upstream.healthy = False
            upstream.error = describe(exc)

    def status(self) -> list[dict[str, Any]]:
        """[{"url", "healthy", "in_flight", "models": [ids]}] for /api/health."""
        with self._lock:
            return [
                {
                    "url": u.url,
                    "healthy": u.healthy,
                    "in_flight": u.in_flight,
                    "models": list(u.models) if u.models is not None else None,
                    "error": u.error,
                }
                for u in self._upstreams
            ]

    # ---- routing -----------------------------------------------------------------------

    def _acquire(self, model: str | None, exclude: set[str]) -> Upstream:
        """The healthy upstream for `model` with the fewest requests in flight, counted."""
        with self._lock:
            # Down upstreams keep the models they last listed: their model is "unavailable",
            # not "does not exist".
            serving = [u for u in self._upstreams if u.serves(model)]
            candidates = [u for u in serving if u.healthy and u.url not in exclude]
            if not candidates:
                healthy = [u for u in self._upstreams if u.healthy]
                if serving or not healthy:
                    raise UpstreamError(503, UNAVAILABLE, code="model_service_unavailable")
                served = sorted({m for u in healthy for m in (u.models or ())})
                raise UpstreamError(
                    404,
                    f"The model '{model}' does not exist. Available: {', '.join(served)}.",
                    param="model",
                    code="model_not_found",
                )
            # Ties rotate, so idle upstreams share the load instead of the first taking all.
            self._turn += 1
            n = len(self._upstreams)
            order = {u.url: (i - self._turn) % n for i, u in enumerate(self._upstreams)}
            chosen = min(candidates, key=lambda u: (u.in_flight, order[u.url]))
            chosen.in_flight += 1
            return chosen

    def _release(self, upstream: Upstream) -> None:
        with self._lock:
            upstream.in_flight -= 1

    @contextmanager
    def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        model: str | None,
        stream: bool,
    ) -> Iterator[tuple[Upstream, requests.Response]]:
        data = None
        if body is not None:
            try:
                data = json.dumps(body, ensure_ascii=False, allow_nan=False).encode()
            except ValueError:
                raise APIError(
                    400,
                    "The request holds NaN or Infinity, which JSON does not allow.",
                    code="invalid_json",
                ) from None
        headers = request_id_headers()
        if data is not None:
            headers["Content-Type"] = "application/json"
        tried: set[str] = set()
        busy: list[str] = []  # the Retry-After of each upstream that answered 429
        stale_retried = False
        while True:
            try:
                upstream = self._acquire(model, tried)
            except UpstreamError:
                if busy:
                    raise busy_error(busy) from None
                raise
            try:
                reply = self.session.request(
                    method,
                    upstream.url + path,
                    data=data,
                    headers=headers,
                    stream=stream,
                    timeout=self.timeout,
                )
            except requests.RequestException as exc:
                self._release(upstream)
                if closed_without_answer(exc) and not stale_retried:
                    # A kept-alive connection the server closed as it was reused (its idle
                    # timeout): the server read nothing. Once, on a fresh connection.
                    stale_retried = True
                    continue
                self._mark_down(upstream, exc)
                if never_reached(exc):
                    tried.add(upstream.url)  # nothing was sent: safe to try another one
                    continue
                raise error_for_exception(exc) from exc
            if reply.status_code == 429:
                # Refused before generating anything, so another upstream may run it. Busy
                # is not down: the upstream stays in, and its /health says it is fine.
                busy.append(reply.headers.get("Retry-After", ""))
                reply.close()
                self._release(upstream)
                tried.add(upstream.url)
                continue
            break
        try:
            yield upstream, reply
        finally:
            reply.close()
            self._release(upstream)

    @contextmanager
    def open(self, path: str, body: dict[str, Any], *, stream: bool) -> Iterator[requests.Response]:
        """POST body to path ("/v1/chat/completions") on the chosen upstream; yield the raw
        response (any status). Counts as in flight until the block exits, and closes the
        response on exit, which closes an upstream stream."""
        model = body.get("model") if isinstance(body.get("model"), str) else None
        with self._request("POST", path, body, model=model, stream=stream) as (_, reply):
            yield reply

    # ---- operations --------------------------------------------------------------------

    def models(self) -> dict[str, Any]:
        """OpenAI model list: the union of healthy upstreams' /v1/models."""
        with self._lock:
            urls = [u.url for u in self._upstreams if u.healthy]
        if not urls:
            raise UpstreamError(503, UNAVAILABLE, code="model_service_unavailable")
        merged: dict[str, dict[str, Any]] = {}
        failure: UpstreamError | None = None
        for url in urls:
            upstream = next(u for u in self._upstreams if u.url == url)
            try:
                with self._lease(upstream):
                    reply = self.session.get(
                        url + "/v1/models", headers=request_id_headers(), timeout=self.timeout
                    )
                if reply.status_code != 200:
                    raise error_from_response(reply)
                data = reply.json().get("data", [])
            except requests.RequestException as exc:
                self._mark_down(upstream, exc)
                failure = error_for_exception(exc)
                continue
            except UpstreamError as exc:
                failure = exc
                continue
            except (ValueError, AttributeError):
                failure = UpstreamError(502, "The model service sent an unreadable model list.")
                continue
            for entry in data:
                if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                    merged.setdefault(entry["id"], entry)
            with self._lock:
                upstream.models = tuple(m["id"] for m in data if isinstance(m, dict) and "id" in m)
        if not merged and failure is not None:
            raise failure
        return {"object": "list", "data": list(merged.values())}

    def first_model(self) -> str:
        """The model a chat turn uses when nothing names one: the first that a healthy
        upstream listed at its last health check, so a turn makes no round trip for it; the
        model list is asked for only while no check has listed one."""
        with self._lock:
            for upstream in self._upstreams:
                if upstream.healthy and upstream.models:
                    return upstream.models[0]
        models = self.models().get("data") or []
        if not models:
            raise UpstreamError(503, "The model service lists no models.", code="no_models")
        return str(models[0]["id"])

    @contextmanager
    def _lease(self, upstream: Upstream) -> Iterator[None]:
        with self._lock:
            upstream.in_flight += 1
        try:
            yield
        finally:
            self._release(upstream)

    def tokenize(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /tokenize ({"model", "messages"|"prompt"}) → {"count", "max_model_len", ...}.
        Raises UpstreamError (e.g. 404 from an engine without /tokenize)."""
        with self.open("/tokenize", body, stream=False) as reply:
            if reply.status_code != 200:
                raise error_from_response(reply)
            try:
                return reply.json()
            except ValueError:
                raise UpstreamError(502, "The model service sent an unreadable answer.") from None

    def stream_chat(
        self,
        body: dict[str, Any],
        *,
        on_open: Callable[[Callable[[], None]], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Stream /v1/chat/completions (body gets stream=True, include_usage): yield each
        parsed chunk dict; raise UpstreamError on connect failure, non-200, an error frame
        or a read timeout. Closing the generator closes the upstream connection.

        `on_open(abort)` is called once the upstream answered; `abort()` may be called from
        any thread (a stop button) and ends the stream at once, even while it waits for a
        token: the generator then returns without an error."""
        options = body.get("stream_options") or {}
        body = {**body, "stream": True, "stream_options": {**options, "include_usage": True}}
        model = body.get("model") if isinstance(body.get("model"), str) else None
        with self._request("POST", "/v1/chat/completions", body, model=model, stream=True) as (
            upstream,
            reply,
        ):
            abort = StreamAbort(reply)
            try:
                if on_open is not None:
                    on_open(abort)
                if reply.status_code != 200:
                    raise error_from_response(reply)
                yield from self._chunks(upstream, reply, abort)
            finally:
                abort.disarm()

    def chat_events(
        self,
        body: dict[str, Any],
        *,
        on_open: Callable[[Callable[[], None]], None] | None = None,
    ) -> Iterator[ChatEvent]:
        """`stream_chat` as typed events; any UpstreamError, before the stream or in it,
        becomes one last `StreamFailed` event. An abort ends the events without one."""
        try:
            for chunk in self.stream_chat(body, on_open=on_open):
                if isinstance(chunk, dict):
                    yield from chunk_events(chunk)
        except UpstreamError as exc:
            yield StreamFailed(exc)

    def _chunks(
        self, upstream: Upstream, reply: requests.Response, abort: StreamAbort
    ) -> Iterator[dict[str, Any]]:
        try:
            for line in reply.iter_lines():
                data = data_field(line)
                if data is None:
                    continue
                if data == b"[DONE]":
                    return
                try:
                    chunk = json.loads(data)
                except ValueError:
                    raise UpstreamError(
                        502, "The model service sent an unreadable event.", code="bad_upstream"
                    ) from None
                if isinstance(chunk, dict) and "error" in chunk:
                    raise error_from_frame(chunk)
                yield chunk
        except requests.RequestException as exc:
            if abort.requested:
                return
            self._mark_down(upstream, exc)
            raise error_for_exception(exc, mid_stream=True) from exc
        if not abort.requested:
            raise UpstreamError(502, STOPPED, code="upstream_stream_ended")


class StreamAbort:
    """Ends one upstream stream from another thread. Shutting the socket down wakes a read
    blocked on it (closing it would not); once the stream is over it does nothing, so a
    late call can never touch a connection that went back to the pool."""

    def __init__(self, reply: requests.Response) -> None:
        self._reply = reply
        self._lock = threading.Lock()
        self._armed = True
        self.requested = False

    def __call__(self) -> None:
        with self._lock:
            if not self._armed or self.requested:
                return
            self.requested = True
            connection = getattr(self._reply.raw, "connection", None)
            sock = getattr(connection, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def disarm(self) -> None:
        with self._lock:
            self._armed = False


def request_id_headers() -> dict[str, str]:
    """The current request's id for the model API, so both services log the same id."""
    rid = current_request_id()
    return {REQUEST_ID_HEADER: rid} if rid != "-" else {}
