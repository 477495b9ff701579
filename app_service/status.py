"""The admin status API (`GET /api/admin/status`) and the sampler behind it.

A daemon thread polls every model API's `/health` and `/metrics` each
STATUS_INTERVAL_SECONDS (with the pool's session, so with MODEL_API_KEY) and keeps the last
STATUS_HISTORY_MINUTES of samples per upstream in a ring buffer. Rates come from the
difference of two samples' counters. A metric the upstream does not expose (another engine,
an older model API, no GPU) reads as null. Shape and fields: docs/status.md.
"""

from __future__ import annotations

import atexit
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import requests
from flask import Blueprint, Flask, Response, current_app, jsonify
from prometheus_client.parser import text_string_to_metric_families

from app_service.accounts import current_user
from app_service.metrics import AppMetrics
from app_service.settings import Settings
from app_service.upstream import HEALTH_READ_TIMEOUT, UpstreamPool
from app_service.upstream_wire import describe
from chatstack import __version__
from chatstack.errors import APIError

log = logging.getLogger(__name__)

bp = Blueprint("status", __name__, url_prefix="/api/admin")

MIB = 1024 * 1024
# Device field → (the model API's per-GPU metric, the divisor to the field's unit).
GPU_FIELDS = {
    "utilization_pct": ("chatstack_gpu_utilization_percent", 1),
    "memory_used_mb": ("chatstack_gpu_memory_used_bytes", MIB),
    "memory_total_mb": ("chatstack_gpu_memory_total_bytes", MIB),
    "temperature_c": ("chatstack_gpu_temperature_celsius", 1),
    "power_w": ("chatstack_gpu_power_watts", 1),
}

Samples = dict[str, list[tuple[dict[str, str], float]]]


def no_gpus() -> dict[str, Any]:
    return {"available": False, "devices": []}


# ---- reading one scrape -------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSample:
    """What one scrape of a model API's /metrics says; None where a metric is missing."""

    at: float  # time.monotonic() of the scrape, for rates
    completion_tokens: float | None
    ttft_sum: float | None
    ttft_count: float | None
    running: float | None
    waiting: float | None
    gpus: dict[str, Any] = field(default_factory=no_gpus)


def parse_model_metrics(text: str, at: float) -> ModelSample:
    """The metrics the status page shows, from Prometheus' text format. Raises ValueError
    on text that is not in that format."""
    samples: Samples = {}
    # Families drop a counter's `_total`; samples keep their full names, so look those up.
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return ModelSample(
        at=at,
        completion_tokens=_sum(samples, "chatstack_model_completion_tokens_total"),
        ttft_sum=_sum(samples, "chatstack_model_time_to_first_token_seconds_sum"),
        ttft_count=_sum(samples, "chatstack_model_time_to_first_token_seconds_count"),
        running=_sum(samples, "chatstack_model_requests_running"),
        waiting=_sum(samples, "chatstack_model_requests_waiting"),
        gpus=_gpus(samples),
    )


def _finite(value: float) -> float | None:
    """NaN and infinities (an unreadable sensor) become null; JSON has no NaN."""
    return value if math.isfinite(value) else None


def _sum(samples: Samples, name: str) -> float | None:
    """A metric's value summed over its label sets, or None when it is not exposed."""
    values = [v for _, v in samples.get(name, []) if math.isfinite(v)]
    return sum(values) if values else None


def _gpus(samples: Samples) -> dict[str, Any]:
    devices: dict[int, dict[str, Any]] = {}

    def device(labels: dict[str, str]) -> dict[str, Any] | None:
        try:
            index = int(labels.get("gpu", ""))
        except ValueError:
            return None
        empty = {"index": index, "name": f"GPU {index}", **dict.fromkeys(GPU_FIELDS)}
        return devices.setdefault(index, empty)

    for labels, _ in samples.get("chatstack_gpu_info", []):
        entry = device(labels)
        if entry is not None and labels.get("name"):
            entry["name"] = labels["name"]
    for name_of_field, (metric, divisor) in GPU_FIELDS.items():
        for labels, value in samples.get(metric, []):
            entry = device(labels)
            if entry is not None:
                finite = _finite(value)
                entry[name_of_field] = None if finite is None else finite / divisor
    available = _sum(samples, "chatstack_gpu_available")
    return {
        "available": bool(available) if available is not None else bool(devices),
        "devices": [devices[i] for i in sorted(devices)],
    }


def history_point(
    t: float,
    current: ModelSample | None,
    previous: ModelSample | None,
    health: dict[str, Any] | None,
) -> dict[str, Any]:
    """One point of an upstream's history: rates since the previous sample, levels now."""
    point: dict[str, Any] = {
        "t": t,
        "tokens_per_s": None,
        "ttft_avg_s": None,
        "running": None,
        "waiting": None,
        "gpu_utilization_pct": None,
        "gpu_memory_used_mb": None,
    }
    if current is not None:
        if previous is not None:
            point["tokens_per_s"] = _rate(current, previous)
            point["ttft_avg_s"] = _mean_ttft(current, previous)
        point["running"] = _int(current.running)
        point["waiting"] = _int(current.waiting)
        devices = current.gpus["devices"]
        utilization = _present(d["utilization_pct"] for d in devices)
        memory = _present(d["memory_used_mb"] for d in devices)
        if utilization:
            point["gpu_utilization_pct"] = sum(utilization) / len(utilization)
        if memory:
            point["gpu_memory_used_mb"] = sum(memory)
    for key in ("running", "waiting"):  # engines without our metrics may say it in /health
        if point[key] is None and health is not None and isinstance(health.get(key), int):
            point[key] = health[key]
    return point


def _rate(current: ModelSample, previous: ModelSample) -> float | None:
    seconds = current.at - previous.at
    if current.completion_tokens is None or previous.completion_tokens is None or seconds <= 0:
        return None
    delta = current.completion_tokens - previous.completion_tokens
    return delta / seconds if delta >= 0 else None  # below zero: the model API restarted


def _mean_ttft(current: ModelSample, previous: ModelSample) -> float | None:
    """Mean time to first token of the requests that started between the two samples."""
    values = (current.ttft_sum, current.ttft_count, previous.ttft_sum, previous.ttft_count)
    if any(v is None for v in values):
        return None
    dsum = current.ttft_sum - previous.ttft_sum  # type: ignore[operator]
    dcount = current.ttft_count - previous.ttft_count  # type: ignore[operator]
    return dsum / dcount if dcount > 0 and dsum >= 0 else None


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def _present(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None]


# ---- the sampler --------------------------------------------------------------------------


@dataclass
class UpstreamStatus:
    """What the sampler knows of one model API; mutated only under the sampler's lock."""

    url: str
    history: deque[dict[str, Any]]
    healthy: bool = False
    error: str | None = None
    health: dict[str, Any] | None = None
    gpus: dict[str, Any] = field(default_factory=no_gpus)
    previous: ModelSample | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "healthy": self.healthy,
            "error": self.error,
            "health": self.health,
            "gpus": self.gpus,
            "history": list(self.history),
        }


class StatusSampler:
    """Polls every upstream's /health and /metrics on a daemon thread; keeps a history."""

    def __init__(self, pool: UpstreamPool, settings: Settings) -> None:
        self.pool = pool
        self.interval = settings.status_interval_seconds
        self.timeout = (settings.upstream_connect_timeout, HEALTH_READ_TIMEOUT)
        self.started = time.monotonic()
        size = max(1, math.ceil(settings.status_history_minutes * 60 / self.interval))
        # Until the first sample the pool's view stands in (its health checks started first).
        self._upstreams = [
            UpstreamStatus(u["url"], deque(maxlen=size), u["healthy"], u["error"])
            for u in pool.status()
        ]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="status-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout[0] + self.timeout[1] + 1)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample_once()
            except Exception:  # the status page must not lose its sampler to one bad answer
                log.exception("status sampling failed")
            self._stop.wait(self.interval)

    def sample_once(self) -> None:
        """One round: poll each upstream and append one point to its history."""
        for upstream in self._upstreams:
            health, error, sample = self._poll(upstream.url)
            point = history_point(time.time(), sample, upstream.previous, health)
            with self._lock:
                upstream.healthy = error is None
                upstream.error = error
                upstream.health = health
                upstream.gpus = sample.gpus if sample is not None else no_gpus()
                upstream.previous = sample
                upstream.history.append(point)

    def _poll(self, url: str) -> tuple[dict[str, Any] | None, str | None, ModelSample | None]:
        """(the /health JSON, why the upstream is unhealthy or None, the /metrics sample)."""
        try:
            reply = self.pool.session.get(url + "/health", timeout=self.timeout)
        except requests.RequestException as exc:
            return None, describe(exc), None
        try:
            body = reply.json()
        except ValueError:
            body = None
        health = body if isinstance(body, dict) else None
        error = None
        if reply.status_code != 200:
            detail = (health.get("error") or health.get("status")) if health else None
            error = f"/health answered {reply.status_code}" + (f": {detail}" if detail else "")
        return health, error, self._scrape(url)

    def _scrape(self, url: str) -> ModelSample | None:
        try:
            reply = self.pool.session.get(url + "/metrics", timeout=self.timeout)
            if reply.status_code != 200:
                return None
            return parse_model_metrics(reply.text, time.monotonic())
        except (requests.RequestException, ValueError) as exc:
            log.debug("no metrics from %s: %s", url, exc)
            return None

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [u.as_json() for u in self._upstreams]


def install_status(app: Flask, pool: UpstreamPool, settings: Settings) -> StatusSampler:
    """Start the sampler (stopped at exit) and register the admin status route."""
    sampler = StatusSampler(pool, settings)
    sampler.start()
    atexit.register(sampler.stop)
    app.extensions["chatstack_status"] = sampler
    app.register_blueprint(bp)
    return sampler


# ---- the route ----------------------------------------------------------------------------


def require_admin() -> None:
    """401 without a session, 403 for a user who is not an admin."""
    if not current_user()["is_admin"]:
        raise APIError(403, "Only an admin may see the server status.", code="admin_required")


@bp.get("/status")
def admin_status() -> Response:
    require_admin()
    sampler: StatusSampler = current_app.extensions["chatstack_status"]
    metrics: AppMetrics = current_app.extensions["chatstack_app_metrics"]
    return jsonify(
        {
            "app": {
                "status": "ok",
                "version": __version__,
                "uptime_s": round(time.monotonic() - sampler.started, 3),
                "open_websockets": metrics.open_websocket_count(),
            },
            "interval_s": sampler.interval,
            "upstreams": sampler.snapshot(),
        }
    )
