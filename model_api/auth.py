"""The shared key between the app service and the model API."""

from __future__ import annotations

import hmac

from flask import Flask, request

from chatstack.errors import APIError

OPEN_PATHS = frozenset({"/health"})


def require_api_key(app: Flask, api_key: str) -> None:
    """Every route but /health needs `Authorization: Bearer <key>` when a key is set."""
    if not api_key:
        return

    @app.before_request
    def _check_key() -> None:
        if request.path in OPEN_PATHS:
            return
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise APIError(
                401,
                "Missing API key: send it as 'Authorization: Bearer <key>'.",
                code="invalid_api_key",
                error_type="invalid_request_error",
            )
        if not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise APIError(
                401,
                "Incorrect API key provided.",
                code="invalid_api_key",
                error_type="invalid_request_error",
            )
