"""OpenAI-compatible pass-through: /v1/models[/{id}], /v1/chat/completions, /v1/completions,
/v1/responses and /v1/embeddings.

Authenticated by a user's API key; the body goes to the model API unchanged (it validates
OpenAI's fields, and its errors come back in their own shape); streams are forwarded byte
for byte as they arrive, and a client that leaves closes the upstream stream.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from app_service.api_keys import user_for_api_key
from app_service.limits import MAX_TOKENS_FIELDS, bound_request
from app_service.upstream import UpstreamPool
from app_service.upstream_wire import STOPPED, UpstreamError, error_from_response, iter_raw
from app_service.user_activity import user_activity
from chatstack.errors import APIError
from chatstack.model_list import model_from_list
from chatstack.sse import DONE, SSE_HEADERS, SSE_MIMETYPE, sse_data
from chatstack.validation import load_json

bp = Blueprint("passthrough", __name__, url_prefix="/v1")


@dataclass(frozen=True)
class Endpoint:
    """What the relay needs to know of an OpenAI endpoint."""

    path: str
    # How a request bounds its answer (USER_MAX_TOKENS applies); none: it generates nothing.
    token_fields: tuple[str, ...]
    # Chat and Completions streams end with `data: [DONE]`; Responses streams with their
    # own `response.completed` event, and say a failure as an `error` event.
    ends_with_done: bool = True


CHAT = Endpoint("/v1/chat/completions", MAX_TOKENS_FIELDS)
COMPLETIONS = Endpoint("/v1/completions", MAX_TOKENS_FIELDS)
RESPONSES = Endpoint("/v1/responses", ("max_output_tokens",), ends_with_done=False)
EMBEDDINGS = Endpoint("/v1/embeddings", ())


def pool() -> UpstreamPool:
    return current_app.extensions["chatstack_upstreams"]


@bp.before_request
def authenticate() -> None:
    g.api_user = user_for_api_key(request.headers.get("Authorization"))


@bp.get("/models")
def list_models() -> Response:
    return jsonify(pool().models())


@bp.get("/models/<path:model_id>")  # ids may hold "/" (org/name)
def retrieve_model(model_id: str) -> Response:
    return jsonify(model_from_list(pool().models(), model_id))


@bp.post("/chat/completions")
def chat_completions() -> Response:
    return forward(CHAT, read_body())


@bp.post("/completions")
def completions() -> Response:
    return forward(COMPLETIONS, read_body())


@bp.post("/responses")
def responses() -> Response:
    return forward(RESPONSES, read_body())


@bp.post("/embeddings")
def embeddings() -> Response:
    return forward(EMBEDDINGS, read_body())


def ceiling() -> int:
    return current_app.extensions["chatstack_settings"].user_max_tokens


def read_body() -> dict[str, Any]:
    """The JSON object sent, checked only as far as routing needs: a string `model`."""
    limit = current_app.extensions["chatstack_settings"].max_json_bytes
    if (request.content_length or 0) > limit:
        raise too_large(limit)
    raw = request.get_data(cache=False)
    if len(raw) > limit:
        raise too_large(limit)
    body = load_json(raw)
    if not isinstance(body, dict):
        raise APIError(400, "The request body must be a JSON object.", code="invalid_json")
    if "model" not in body:
        raise APIError(
            400,
            "Missing required parameter: 'model'.",
            param="model",
            code="missing_required_parameter",
        )
    if not isinstance(body["model"], str):
        raise APIError(
            400, "Invalid value for 'model': must be a string.", param="model", code="invalid_type"
        )
    return body


def forward(endpoint: Endpoint, body: dict[str, Any]) -> Response:
    """Send the body upstream; answer with its JSON, or relay its SSE stream unbuffered.
    The request counts as one of the user's answers generating until it ends."""
    path = endpoint.path
    body = bound_request(body, ceiling(), endpoint.token_fields)
    user_id = g.api_user["id"]
    activity = user_activity()
    if body.get("stream") is not True:
        with activity.turn(user_id), pool().open(path, body, stream=False) as reply:
            if reply.status_code != 200:
                raise error_from_response(reply)
            return Response(
                reply.content,
                status=200,
                content_type=reply.headers.get("Content-Type", "application/json"),
            )
    activity.start_turn(user_id)
    upstream = ExitStack()
    upstream.callback(activity.end_turn, user_id)
    try:
        reply = upstream.enter_context(pool().open(path, body, stream=True))
    except BaseException:
        upstream.close()
        raise
    if reply.status_code != 200:
        with upstream:
            raise error_from_response(reply)
    response = Response(
        relay(reply, upstream, endpoint.ends_with_done), mimetype=SSE_MIMETYPE, headers=SSE_HEADERS
    )
    # A response closed before its first chunk never runs the generator's `finally`.
    response.call_on_close(upstream.close)
    return response


def relay(reply: Any, upstream: ExitStack, ends_with_done: bool = True) -> Iterator[bytes]:
    """The upstream's SSE bytes as they come; a broken stream ends with one error event
    (and [DONE] where the endpoint's streams end so), like the model API's own. Closing
    this closes the upstream response."""
    tail = b""
    try:
        try:
            for data in iter_raw(reply):
                tail = (tail + data)[-32:]
                yield data
        except UpstreamError as exc:
            yield _closing_events(tail, exc, ends_with_done)
            return
        if ends_with_done and not tail.rstrip().endswith(b"data: [DONE]"):
            ended = UpstreamError(502, STOPPED, code="upstream_stream_ended")
            yield _closing_events(tail, ended, ends_with_done)
    finally:
        upstream.close()


def _closing_events(tail: bytes, error: APIError, ends_with_done: bool) -> bytes:
    # An event cut off mid-line must not swallow the error event.
    separator = b"" if not tail or tail.endswith(b"\n\n") else b"\n\n"
    if ends_with_done:
        return separator + (sse_data(error.body()) + DONE).encode()
    # The Responses API's own failure event: `error` with the code and message at the top.
    event = {"type": "error", "code": error.code, "message": error.message, "param": error.param}
    return separator + f"event: error\ndata: {json.dumps(event)}\n\n".encode()


def too_large(limit: int) -> APIError:
    return APIError(
        413, f"The request body is larger than {limit} bytes.", code="request_too_large"
    )
