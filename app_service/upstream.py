"""The client for model APIs (ours, or any OpenAI-compatible engine: vLLM, TGI, llama.cpp).

INTERFACE STUB — to be implemented. Contract:
- One requests.Session, explicit (connect, read) timeouts from Settings.
- MODEL_API_URLS lists one or more base URLs (without /v1). Each request goes to the
  healthy upstream that serves the requested model with the fewest requests in flight.
  A failed connection takes an upstream out; a background thread polls /health of every
  upstream every `upstream_health_seconds` and puts it back when it answers 200.
- Every request carries `Authorization: Bearer MODEL_API_KEY` when a key is set.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests

from app_service.settings import Settings
from chatstack.errors import APIError


class UpstreamError(APIError):
    """The model API could not answer: unreachable (502/503), timed out (504), or its own
    OpenAI-shaped error (its status and body kept)."""


class UpstreamPool:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def start(self) -> None:
        """Start the background health checker (daemon thread)."""

    def status(self) -> list[dict[str, Any]]:
        """[{"url", "healthy", "in_flight", "models": [ids]}] for /api/health."""
        return []

    def models(self) -> dict[str, Any]:
        """OpenAI model list: the union of healthy upstreams' /v1/models."""
        raise NotImplementedError

    def tokenize(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /tokenize ({"model", "messages"|"prompt"}) → {"count", "max_model_len", ...}.
        Raises UpstreamError (e.g. 404 from an engine without /tokenize)."""
        raise NotImplementedError

    @contextmanager
    def open(self, path: str, body: dict[str, Any], *, stream: bool) -> Iterator[requests.Response]:
        """POST body to path ("/v1/chat/completions") on the chosen upstream; yield the raw
        response (any status). Counts as in flight until the block exits, and closes the
        response on exit, which closes an upstream stream."""
        raise NotImplementedError
        yield

    def stream_chat(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Stream /v1/chat/completions (body gets stream=True, include_usage): yield each
        parsed chunk dict; raise UpstreamError on connect failure, non-200, an error frame
        or a read timeout. Closing the generator closes the upstream connection."""
        raise NotImplementedError
