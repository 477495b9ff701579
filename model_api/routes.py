"""HTTP routes: parse the request, call one function, format the answer."""

from __future__ import annotations

import time

from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context
from flask.blueprints import BlueprintSetupState

import chatstack
from chatstack.metrics import metrics_response
from chatstack.model_list import model_from_list
from chatstack.sse import SSE_HEADERS, SSE_MIMETYPE
from model_api.connection import client_gone_checker
from model_api.engine import GenerationHandle
from model_api.formats import OutputFormat
from model_api.metrics import ModelMetrics, install_model_metrics
from model_api.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    TokenizeRequest,
    parse_body,
)
from model_api.runtime import ModelRuntime
from model_api.serving import ModelService, collect_response, stream_sse

bp = Blueprint("model_api", __name__)


@bp.record_once
def _install_metrics(state: BlueprintSetupState) -> None:
    install_model_metrics(state.app)


def runtime() -> ModelRuntime:
    return current_app.extensions["model_runtime"]


def model_metrics() -> ModelMetrics:
    return current_app.extensions["model_metrics"]


def service() -> ModelService:
    return runtime().ready_service()


@bp.get("/health")
def health() -> tuple[Response, int]:
    rt = runtime()
    body: dict[str, object] = {
        "status": rt.status,
        "model": rt.settings.model_name,
        "version": chatstack.__version__,
    }
    if rt.service is not None:
        loaded = rt.service.loaded
        body.update(
            device=str(loaded.device),
            dtype=str(loaded.dtype).removeprefix("torch."),
            quantization=loaded.quantization,
            **rt.service.engine.stats(),
        )
    if rt.error:
        body["error"] = rt.error
    return jsonify(body), 200 if rt.status == "ok" else 503


@bp.get("/metrics")
def metrics() -> Response:
    return metrics_response()


@bp.get("/v1/models")
def list_models() -> Response:
    return jsonify(service().models())


@bp.get("/v1/models/<path:model_id>")  # ids may hold "/" (org/name)
def retrieve_model(model_id: str) -> Response:
    return jsonify(model_from_list(service().models(), model_id))


@bp.post("/v1/chat/completions")
def chat_completions() -> Response:
    started = time.perf_counter()
    req = parse_body(request.get_data(), ChatCompletionRequest)
    handle, fmt = service().start_chat(req)
    return respond(handle, fmt, req.stream, started)


@bp.post("/v1/completions")
def completions() -> Response:
    started = time.perf_counter()
    req = parse_body(request.get_data(), CompletionRequest)
    handle, fmt = service().start_completion(req)
    return respond(handle, fmt, req.stream, started)


@bp.post("/tokenize")
def tokenize() -> Response:
    req = parse_body(request.get_data(), TokenizeRequest)
    return jsonify(service().tokenize(req))


def respond(handle: GenerationHandle, fmt: OutputFormat, stream: bool, started: float) -> Response:
    """The generation as SSE or as one JSON body; its metrics count from `started`."""
    timer = model_metrics().generation(started)
    if stream:
        keepalive = runtime().settings.keepalive_seconds
        events = stream_with_context(stream_sse(handle, fmt, keepalive, timer))
        return Response(events, mimetype=SSE_MIMETYPE, headers=SSE_HEADERS)
    client_gone = client_gone_checker(request.environ)
    return jsonify(collect_response(handle, fmt, client_gone, observer=timer))
