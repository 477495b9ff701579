"""Prometheus metrics both services share: a registry per app and HTTP requests by route.

Each app gets its own CollectorRegistry (kept in `app.extensions`), so tests that build
several apps in one process do not collide, and a service's /metrics shows only its own.
Service-specific metrics live next to what they measure (model_api/metrics.py,
app_service/metrics.py) and register on the same registry.
"""

from __future__ import annotations

import time

from flask import Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

# Seconds; from a cached answer to a long non-streamed generation.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


def registry_of(app: Flask) -> CollectorRegistry:
    """The app's registry, made on first use."""
    return app.extensions.setdefault("chatstack_metrics", CollectorRegistry())


def instrument_requests(app: Flask) -> None:
    """Count requests by route template, method and status, and time them.

    The route is the rule (`/api/conversations/<int:cid>`), not the path, so ids do not
    make a new series each; unmatched paths count as "unmatched". The duration is read
    from the clock install_request_ids starts, so install that first (both factories do).
    """
    registry = registry_of(app)
    requests_total = Counter(
        "chatstack_http_requests",
        "HTTP requests answered, by route, method and status.",
        ("route", "method", "status"),
        registry=registry,
    )
    duration = Histogram(
        "chatstack_http_request_duration_seconds",
        "Time to the response's start (a stream's first byte), by route.",
        ("route",),
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )

    @app.after_request
    def count_request(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        requests_total.labels(route, request.method, str(response.status_code)).inc()
        # install_request_ids (chatstack/logs.py), installed first, started the clock.
        started = g.get("request_started")
        if started is not None:
            duration.labels(route).observe(time.perf_counter() - started)
        return response


def metrics_response() -> Response:
    """The current app's metrics in Prometheus' text format."""
    return Response(generate_latest(registry_of(current_app)), mimetype=CONTENT_TYPE_LATEST)
