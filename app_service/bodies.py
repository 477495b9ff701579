"""Reading JSON request bodies under the app's JSON size limit."""

from __future__ import annotations

from flask import current_app, request

from chatstack.errors import APIError


def json_body() -> bytes:
    """The raw body of a JSON route; uploads may be large, JSON bodies may not."""
    limit = current_app.extensions["chatstack_settings"].max_json_bytes
    if (request.content_length or 0) > limit:
        raise APIError(413, "The request body is too large.", code="request_too_large")
    body = request.get_data()
    if len(body) > limit:
        raise APIError(413, "The request body is too large.", code="request_too_large")
    return body or b"{}"
