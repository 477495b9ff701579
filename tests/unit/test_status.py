"""The status sampler: reading the model API's metrics text, the history it keeps, and the
admin-only route (Flask test client; the upstream is a loopback fake)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app_service.app import create_app
from app_service.settings import Settings
from app_service.status import (
    ModelSample,
    StatusSampler,
    history_point,
    no_gpus,
    parse_model_metrics,
)
from app_service.upstream import UpstreamPool
from chatstack import __version__
from chatstack.envsettings import SettingsError
from tests.unit.test_api_keys import login
from tests.unit.test_upstream import FakeUpstream, Handler, dead_url, send_json

# As the model API writes it (prometheus_client's text format), with two GPUs, a label on
# the token counter and one sensor that could not be read (NaN).
METRICS_TEXT = """\
# HELP chatstack_model_completion_tokens_total Completion tokens generated.
# TYPE chatstack_model_completion_tokens_total counter
chatstack_model_completion_tokens_total{model="m"} 100.0
chatstack_model_completion_tokens_total{model="other"} 20.0
# HELP chatstack_model_completion_tokens_created Completion tokens generated.
# TYPE chatstack_model_completion_tokens_created gauge
chatstack_model_completion_tokens_created{model="m"} 1.7e+09
# HELP chatstack_model_time_to_first_token_seconds Time to the first token.
# TYPE chatstack_model_time_to_first_token_seconds histogram
chatstack_model_time_to_first_token_seconds_bucket{le="0.1"} 3.0
chatstack_model_time_to_first_token_seconds_bucket{le="+Inf"} 4.0
chatstack_model_time_to_first_token_seconds_count 4.0
chatstack_model_time_to_first_token_seconds_sum 0.8
# HELP chatstack_model_requests_running Requests generating now.
# TYPE chatstack_model_requests_running gauge
chatstack_model_requests_running 3.0
# HELP chatstack_model_requests_waiting Requests waiting for a batch slot.
# TYPE chatstack_model_requests_waiting gauge
chatstack_model_requests_waiting 1.0
# HELP chatstack_gpu_available 1 when GPU metrics are read.
# TYPE chatstack_gpu_available gauge
chatstack_gpu_available 1.0
# HELP chatstack_gpu_info The GPU's name.
# TYPE chatstack_gpu_info gauge
chatstack_gpu_info{gpu="1",name="NVIDIA H100 80GB HBM3"} 1.0
chatstack_gpu_info{gpu="0",name="NVIDIA H100 80GB HBM3"} 1.0
# TYPE chatstack_gpu_utilization_percent gauge
chatstack_gpu_utilization_percent{gpu="0"} 80.0
chatstack_gpu_utilization_percent{gpu="1"} 40.0
# TYPE chatstack_gpu_memory_used_bytes gauge
chatstack_gpu_memory_used_bytes{gpu="0"} 1073741824.0
chatstack_gpu_memory_used_bytes{gpu="1"} 2147483648.0
# TYPE chatstack_gpu_memory_total_bytes gauge
chatstack_gpu_memory_total_bytes{gpu="0"} 85899345920.0
chatstack_gpu_memory_total_bytes{gpu="1"} 85899345920.0
# TYPE chatstack_gpu_temperature_celsius gauge
chatstack_gpu_temperature_celsius{gpu="0"} 51.0
chatstack_gpu_temperature_celsius{gpu="1"} NaN
# TYPE chatstack_gpu_power_watts gauge
chatstack_gpu_power_watts{gpu="0"} 350.5
"""

HEALTH = {
    "status": "ok",
    "model": "m",
    "device": "cuda",
    "dtype": "bfloat16",
    "quantization": "none",
    "version": "0.1.0",
    "running": 3,
    "waiting": 1,
}


def metrics_text(tokens: float, ttft_sum: float, ttft_count: float) -> str:
    return (
        "# TYPE chatstack_model_completion_tokens_total counter\n"
        f"chatstack_model_completion_tokens_total {tokens}\n"
        "# TYPE chatstack_model_time_to_first_token_seconds histogram\n"
        f'chatstack_model_time_to_first_token_seconds_bucket{{le="+Inf"}} {ttft_count}\n'
        f"chatstack_model_time_to_first_token_seconds_count {ttft_count}\n"
        f"chatstack_model_time_to_first_token_seconds_sum {ttft_sum}\n"
    )


def sample(at: float, tokens: float | None, ttft_sum: float | None, ttft_count: float | None):
    return ModelSample(at, tokens, ttft_sum, ttft_count, running=None, waiting=None)


# ---- reading the metrics text --------------------------------------------------------------


def test_the_model_api_metrics_are_read_from_full_sample_names() -> None:
    parsed = parse_model_metrics(METRICS_TEXT, at=7.0)
    assert parsed.at == 7.0
    assert parsed.completion_tokens == 120.0  # summed over its label sets; _created ignored
    assert (parsed.ttft_sum, parsed.ttft_count) == (0.8, 4.0)
    assert (parsed.running, parsed.waiting) == (3.0, 1.0)


def test_gpus_are_listed_by_index_in_the_units_of_the_status_api() -> None:
    gpus = parse_model_metrics(METRICS_TEXT, at=0.0).gpus
    assert gpus["available"] is True
    assert gpus["devices"] == [
        {
            "index": 0,
            "name": "NVIDIA H100 80GB HBM3",
            "utilization_pct": 80.0,
            "memory_used_mb": 1024.0,
            "memory_total_mb": 81920.0,
            "temperature_c": 51.0,
            "power_w": 350.5,
        },
        {
            "index": 1,
            "name": "NVIDIA H100 80GB HBM3",
            "utilization_pct": 40.0,
            "memory_used_mb": 2048.0,
            "memory_total_mb": 81920.0,
            "temperature_c": None,  # NaN: JSON has none, the page shows a dash
            "power_w": None,  # not exposed for this GPU
        },
    ]


def test_metrics_an_engine_does_not_expose_read_as_missing() -> None:
    text = "# TYPE vllm_num_requests_running gauge\nvllm_num_requests_running 2.0\n"
    parsed = parse_model_metrics(text, at=0.0)
    assert parsed.completion_tokens is None
    assert parsed.ttft_count is None
    assert parsed.running is None and parsed.waiting is None
    assert parsed.gpus == no_gpus()


def test_a_cpu_model_api_says_it_has_no_gpu() -> None:
    parsed = parse_model_metrics("chatstack_gpu_available 0.0\n", at=0.0)
    assert parsed.gpus == {"available": False, "devices": []}


def test_text_that_is_not_prometheus_format_is_an_error() -> None:
    with pytest.raises(ValueError):
        parse_model_metrics("<html>not metrics</html>\n", at=0.0)


# ---- history points ------------------------------------------------------------------------


def test_tokens_per_second_and_mean_ttft_come_from_the_difference_of_two_samples() -> None:
    before = sample(10.0, 100.0, 0.8, 4.0)
    after = sample(12.0, 160.0, 1.4, 6.0)
    point = history_point(1000.0, after, before, None)
    assert point["t"] == 1000.0
    assert point["tokens_per_s"] == pytest.approx(30.0)
    assert point["ttft_avg_s"] == pytest.approx(0.3)  # (1.4 - 0.8) / (6 - 4)


def test_no_new_requests_means_no_mean_ttft_and_zero_tokens_per_second() -> None:
    before = sample(10.0, 100.0, 0.8, 4.0)
    after = sample(15.0, 100.0, 0.8, 4.0)
    point = history_point(1.0, after, before, None)
    assert point["tokens_per_s"] == 0.0
    assert point["ttft_avg_s"] is None


def test_a_restarted_model_api_gives_no_rate_rather_than_a_negative_one() -> None:
    before = sample(10.0, 5000.0, 9.0, 40.0)
    after = sample(15.0, 12.0, 0.1, 1.0)
    point = history_point(1.0, after, before, None)
    assert point["tokens_per_s"] is None and point["ttft_avg_s"] is None


def test_the_first_sample_has_levels_but_no_rates() -> None:
    current = parse_model_metrics(METRICS_TEXT, at=3.0)
    point = history_point(5.0, current, None, HEALTH)
    assert point == {
        "t": 5.0,
        "tokens_per_s": None,
        "ttft_avg_s": None,
        "running": 3,
        "waiting": 1,
        "gpu_utilization_pct": 60.0,  # the mean over the GPUs
        "gpu_memory_used_mb": 3072.0,  # the sum over the GPUs
    }


def test_without_metrics_the_queue_lengths_come_from_health() -> None:
    point = history_point(5.0, None, None, {**HEALTH, "running": 2, "waiting": 0})
    assert (point["running"], point["waiting"]) == (2, 0)
    assert point["tokens_per_s"] is None and point["gpu_utilization_pct"] is None


# ---- the sampler against a fake model API ---------------------------------------------------


def send_text(handler: Handler, status: int, text: str) -> None:
    data = text.encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "text/plain; version=0.0.4")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class FakeModelAPI(FakeUpstream):
    """The fake engine with our model API's /health body and a /metrics the test sets."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics = metrics_text(0, 0, 0)
        self.routes["/health"] = self._health
        self.routes["/metrics"] = lambda h, _b: send_text(h, 200, self.metrics)

    def _health(self, handler: Handler, _body: dict) -> None:
        ok = self.health_status == 200
        body = HEALTH if ok else {"status": "loading", "model": "m"}
        send_json(handler, self.health_status, body)


@pytest.fixture
def upstream() -> Iterator[FakeModelAPI]:
    fake = FakeModelAPI()
    yield fake
    fake.stop()


def make_sampler(*urls: str, **overrides) -> StatusSampler:
    values = {"status_interval_seconds": 5.0, "status_history_minutes": 10, **overrides}
    settings = Settings(
        data_dir=Path("/nonexistent"),
        model_api_urls=urls,
        model_api_key="shared",
        upstream_connect_timeout=1.0,
        **values,
    )
    return StatusSampler(UpstreamPool(settings), settings)


def test_each_round_polls_health_and_metrics_with_the_shared_key(upstream) -> None:
    sampler = make_sampler(upstream.url)
    sampler.sample_once()
    upstream.metrics = metrics_text(50, 0.5, 2)
    sampler.sample_once()
    polled = [(path, headers.get("Authorization")) for path, headers, _ in upstream.seen]
    assert polled == [("/health", "Bearer shared"), ("/metrics", "Bearer shared")] * 2
    [status] = sampler.snapshot()
    assert status["url"] == upstream.url
    assert status["healthy"] is True and status["error"] is None
    assert status["health"] == HEALTH  # as the model API sent it
    assert status["gpus"] == no_gpus()
    first, second = status["history"]
    assert first["tokens_per_s"] is None
    assert second["tokens_per_s"] > 0
    assert second["ttft_avg_s"] == pytest.approx(0.25)
    assert second["t"] >= first["t"]


def test_an_upstream_that_is_loading_or_down_is_unhealthy_with_a_reason(upstream) -> None:
    down = dead_url()
    sampler = make_sampler(upstream.url, down)
    upstream.health_status = 503
    sampler.sample_once()
    loading, dead = sampler.snapshot()
    assert loading["healthy"] is False
    assert loading["error"] == "/health answered 503: loading"
    assert loading["health"] == {"status": "loading", "model": "m"}
    assert dead["healthy"] is False and dead["health"] is None
    assert dead["error"]
    assert dead["history"][0]["running"] is None
    upstream.health_status = 200
    sampler.sample_once()
    assert sampler.snapshot()[0]["healthy"] is True


def test_an_engine_without_metrics_is_healthy_with_empty_history_values(upstream) -> None:
    del upstream.routes["/metrics"]  # the fake answers 404, as vLLM without our names would
    sampler = make_sampler(upstream.url)
    sampler.sample_once()
    [status] = sampler.snapshot()
    assert status["healthy"] is True
    assert status["gpus"] == {"available": False, "devices": []}
    point = status["history"][0]
    assert point["tokens_per_s"] is None and point["gpu_memory_used_mb"] is None
    assert (point["running"], point["waiting"]) == (3, 1)  # from /health


def test_the_history_is_a_ring_buffer_of_the_configured_minutes(upstream) -> None:
    # One minute of 20-second samples: the last three are kept.
    sampler = make_sampler(upstream.url, status_interval_seconds=20.0, status_history_minutes=1)
    for tokens in range(5):
        upstream.metrics = metrics_text(tokens * 10, 0, 0)
        sampler.sample_once()
    history = sampler.snapshot()[0]["history"]
    assert len(history) == 3
    assert [p["t"] for p in history] == sorted(p["t"] for p in history)


def test_the_sampler_thread_samples_at_once_and_stops(upstream) -> None:
    sampler = make_sampler(upstream.url, status_interval_seconds=0.5)
    sampler.start()
    thread = sampler._thread
    assert thread is not None and thread.is_alive()
    try:
        deadline = time.monotonic() + 5
        while not sampler.snapshot()[0]["history"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sampler.snapshot()[0]["history"]
    finally:
        sampler.stop()
    assert not thread.is_alive()


# ---- settings ------------------------------------------------------------------------------


def test_status_settings_are_read_and_checked() -> None:
    settings = Settings.from_env({"STATUS_INTERVAL_SECONDS": "2.5", "STATUS_HISTORY_MINUTES": "30"})
    assert (settings.status_interval_seconds, settings.status_history_minutes) == (2.5, 30)
    defaults = Settings.from_env({})
    assert (defaults.status_interval_seconds, defaults.status_history_minutes) == (5.0, 10)
    with pytest.raises(SettingsError, match="STATUS_INTERVAL_SECONDS"):
        Settings.from_env({"STATUS_INTERVAL_SECONDS": "0.1"})
    with pytest.raises(SettingsError, match="STATUS_HISTORY_MINUTES"):
        Settings.from_env({"STATUS_HISTORY_MINUTES": "0"})


# ---- the admin route -----------------------------------------------------------------------


@pytest.fixture
def app(tmp_path: Path, upstream: FakeModelAPI):
    settings = Settings(
        data_dir=tmp_path, model_api_urls=(upstream.url,), cookie_secure=False, max_connections=64
    )
    app = create_app(settings)
    yield app
    app.extensions["chatstack_status"].stop()
    app.extensions["chatstack_upstreams"].stop()


def test_status_needs_a_session_and_an_admin(app) -> None:
    reply = app.test_client().get("/api/admin/status")
    assert reply.status_code == 401
    assert reply.json["error"]["code"] == "not_authenticated"
    login(app, "admin")  # the first account is the admin
    bob = login(app, "bob")
    reply = bob.get("/api/admin/status")
    assert reply.status_code == 403
    assert reply.json["error"] == {
        "message": "Only an admin may see the server status.",
        "type": "permission_error",
        "param": None,
        "code": "admin_required",
    }


def test_the_admin_sees_the_app_and_each_upstream(app, upstream) -> None:
    admin = login(app, "admin")
    app.extensions["chatstack_status"].sample_once()  # not waiting for the thread's next round
    body = admin.get("/api/admin/status").json
    assert set(body) == {"app", "interval_s", "upstreams"}
    assert body["app"]["status"] == "ok"
    assert body["app"]["version"] == __version__
    assert body["app"]["uptime_s"] >= 0 and body["app"]["open_websockets"] == 0
    assert body["interval_s"] == 5.0
    [status] = body["upstreams"]
    assert set(status) == {"url", "healthy", "error", "health", "gpus", "history"}
    assert status["url"] == upstream.url and status["healthy"] is True
    assert status["health"] == HEALTH
    assert set(status["history"][-1]) == {
        "t",
        "tokens_per_s",
        "ttft_avg_s",
        "running",
        "waiting",
        "gpu_utilization_pct",
        "gpu_memory_used_mb",
    }
    assert all(not isinstance(v, float) or math.isfinite(v) for v in status["history"][-1].values())
