"""The app service's own Prometheus metrics, on the app's registry (chatstack/metrics.py).

Chat turns and uploads are counted by outcome where they end; open WebSockets are a gauge
the socket handler moves; the upstreams' health and load are read from the UpstreamPool when
Prometheus scrapes, so they are never stale. Names: docs/status.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, current_app
from prometheus_client import Counter, Gauge, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from werkzeug.exceptions import HTTPException

from app_service.upstream import UpstreamPool
from chatstack import __version__
from chatstack.errors import APIError
from chatstack.metrics import registry_of

TURN_OUTCOMES = ("complete", "stopped", "failed")
# An upload's outcome by the status of the error that refused it (files.py, extraction.py).
UPLOAD_OUTCOME_BY_STATUS = {400: "invalid", 413: "too_large", 415: "unsupported", 422: "unreadable"}
UPLOAD_OUTCOMES = (
    "accepted",
    *UPLOAD_OUTCOME_BY_STATUS.values(),
    "over_quota",
    "throttled",
    "failed",
)


class UpstreamCollector(Collector):
    """chatstack_app_upstream_{healthy,in_flight}{upstream}, read from the pool per scrape."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        healthy = GaugeMetricFamily(
            "chatstack_app_upstream_healthy",
            "1 while the model API is taken for requests, 0 while it is out.",
            labels=("upstream",),
        )
        in_flight = GaugeMetricFamily(
            "chatstack_app_upstream_in_flight",
            "Requests this app service has open on the model API.",
            labels=("upstream",),
        )
        return healthy, in_flight

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        healthy, in_flight = self._families()
        for upstream in self.pool.status():
            healthy.add_metric((upstream["url"],), 1.0 if upstream["healthy"] else 0.0)
            in_flight.add_metric((upstream["url"],), float(upstream["in_flight"]))
        yield healthy
        yield in_flight


class AppMetrics:
    """The app service's metrics, registered once per app."""

    def __init__(self, app: Flask, pool: UpstreamPool) -> None:
        self.registry = registry_of(app)
        self.open_websockets = Gauge(
            "chatstack_app_open_websockets",
            "Chat WebSockets open now.",
            registry=self.registry,
        )
        self.chat_turns = Counter(
            "chatstack_app_chat_turns",
            "Chat turns ended, by outcome: complete, stopped (by the user or a closed socket) "
            "or failed (before or during the answer).",
            ("outcome",),
            registry=self.registry,
        )
        self.uploads = Counter(
            "chatstack_app_uploads",
            "Uploads by outcome: accepted, invalid, too_large, unsupported, unreadable, "
            "over_quota, throttled (too many at once), failed.",
            ("outcome",),
            registry=self.registry,
        )
        Info("chatstack_app", "The app service's version.", registry=self.registry).info(
            {"version": __version__}
        )
        self.registry.register(UpstreamCollector(pool))
        # Every outcome shows from the start at 0, so rate() and alerts see the series.
        for outcome in TURN_OUTCOMES:
            self.chat_turns.labels(outcome)
        for outcome in UPLOAD_OUTCOMES:
            self.uploads.labels(outcome)

    def open_websocket_count(self) -> int:
        return int(self.registry.get_sample_value("chatstack_app_open_websockets") or 0)

    def count_turn(self, outcome: str) -> None:
        self.chat_turns.labels(outcome if outcome in TURN_OUTCOMES else "failed").inc()

    @contextmanager
    def counting_upload(self) -> Iterator[None]:
        """Count the upload handled inside the block by how it ended; errors pass through."""
        try:
            yield
        except APIError as exc:
            self.uploads.labels(upload_outcome(exc.status, exc.code)).inc()
            raise
        except HTTPException as exc:  # werkzeug's 413 for a request over MAX_CONTENT_LENGTH
            self.uploads.labels(upload_outcome(exc.code or 500)).inc()
            raise
        except Exception:
            self.uploads.labels("failed").inc()
            raise
        self.uploads.labels("accepted").inc()


def upload_outcome(status: int, code: str | None = None) -> str:
    if code == "quota_exceeded":
        return "over_quota"
    if status == 429:
        return "throttled"
    return UPLOAD_OUTCOME_BY_STATUS.get(status, "failed")


def install_app_metrics(app: Flask, pool: UpstreamPool) -> AppMetrics:
    """Register the app service's metrics on the app's registry; keep them in extensions."""
    metrics = AppMetrics(app, pool)
    app.extensions["chatstack_app_metrics"] = metrics
    return metrics


def app_metrics() -> AppMetrics:
    return current_app.extensions["chatstack_app_metrics"]
