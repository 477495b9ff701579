"""One error type, rendered in OpenAI's shape, for every chatstack service."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

# OpenAI's `type` for each status we answer with.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "server_error",
    503: "server_error",
    504: "server_error",
}


class APIError(Exception):
    """An error a client should see: status, message, and OpenAI's type/param/code."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.error_type = error_type or ERROR_TYPES.get(status, "server_error")
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> Response:
        resp = jsonify(self.body())
        resp.status_code = self.status
        resp.headers.update(self.headers)
        return resp


def from_http_exception(exc: HTTPException) -> APIError:
    """Turn werkzeug's 404/405/413/… into our error, keeping its status."""
    status = exc.code or 500
    codes = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
    messages = {
        404: "Unknown route. See the API documentation for the available endpoints.",
        413: "The request body is too large.",
    }
    message = messages.get(status) or exc.description or exc.name
    headers = dict(exc.get_headers()) if status == 405 else {}
    headers.pop("Content-Type", None)
    return APIError(status, message, code=codes.get(status), headers=headers)


def register_error_handlers(app: Flask) -> None:
    """Every error leaves the service as OpenAI-shaped JSON, never HTML or a traceback."""

    @app.errorhandler(APIError)
    def _api_error(exc: APIError) -> Response:
        return exc.response()

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return from_http_exception(exc).response()

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return APIError(500, "The server had an error while processing your request.").response()
