"""The model API's metrics: generations as serving.py reads them, the engine and model
gauges at scrape time, and /metrics on an app with a stand-in model."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
import torch
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import chatstack
from chatstack.errors import APIError
from model_api.app import create_app
from model_api.engine import Delta, Failed, Finished, GenerationHandle
from model_api.formats import ChatFormat
from model_api.loading import LoadedModel
from model_api.metrics import ModelMetrics
from model_api.runtime import ModelRuntime
from model_api.sampling import SamplingParams
from model_api.serving import collect_response, stream_sse
from model_api.settings import Settings

SETTINGS = Settings(model_path="/nowhere", model_name="m", models_dir=None, engine="sequential")


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple], float]:
    """Every sample as {(name, sorted labels): value}, through the text format."""
    return parse(generate_latest(registry).decode())


def parse(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def reason(value: str) -> tuple[str, tuple]:
    return ("chatstack_model_generations_total", (("finish_reason", value),))


def count(name: str) -> tuple[str, tuple]:
    return (f"chatstack_model_{name}_count", ())


def metrics_without_model() -> tuple[ModelMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return ModelMetrics(registry, lambda: None), registry


def handle_with(*events) -> GenerationHandle:
    handle = GenerationHandle([1, 2, 3], SamplingParams(max_tokens=5))
    for event in events:
        handle.events.put(event)
    return handle


def test_a_streamed_generation_counts_tokens_timings_and_its_finish_reason():
    metrics, registry = metrics_without_model()
    timer = metrics.generation(started=0.0)
    handle = handle_with(Delta("Hel"), Delta("lo"), Finished("length", 3, 4))
    list(stream_sse(handle, ChatFormat(model="m"), 1.0, timer))
    got = samples(registry)
    assert got[("chatstack_model_prompt_tokens_total", ())] == 3
    assert got[("chatstack_model_completion_tokens_total", ())] == 4
    assert got[count("time_to_first_token_seconds")] == 1
    assert got[count("time_per_output_token_seconds")] == 1
    assert got[count("e2e_request_latency_seconds")] == 1
    assert got[reason("length")] == 1
    assert got[reason("stop")] == got[reason("cancelled")] == got[reason("error")] == 0


def test_time_per_output_token_spreads_the_time_after_the_first_text():
    metrics, registry = metrics_without_model()
    timer = metrics.generation(started=0.0)
    timer.seen(Delta("a"))
    first = timer.first_text_at
    timer.seen(Finished("stop", 3, 5))
    got = samples(registry)
    per_token = got[("chatstack_model_time_per_output_token_seconds_sum", ())]
    e2e = got[("chatstack_model_e2e_request_latency_seconds_sum", ())]
    assert per_token * 4 == pytest.approx(e2e - first)  # started at 0: e2e is the end time


def test_a_generation_without_text_still_has_a_first_token_time():
    metrics, registry = metrics_without_model()
    body = collect_response(
        handle_with(Finished("stop", 3, 1)),
        ChatFormat(model="m"),
        lambda: False,
        observer=metrics.generation(0.0),
    )
    assert body["usage"]["completion_tokens"] == 1
    got = samples(registry)
    assert got[count("time_to_first_token_seconds")] == 1
    assert got[count("time_per_output_token_seconds")] == 0  # one token: nothing between
    assert got[reason("stop")] == 1


def test_a_failed_generation_counts_as_an_error_without_tokens():
    metrics, registry = metrics_without_model()
    handle = handle_with(Delta("x"), Failed("Generation failed: boom"))
    with pytest.raises(APIError):
        collect_response(
            handle, ChatFormat(model="m"), lambda: False, observer=metrics.generation(0)
        )
    got = samples(registry)
    assert got[reason("error")] == 1 and got[reason("cancelled")] == 0
    assert got[("chatstack_model_completion_tokens_total", ())] == 0
    assert got[count("e2e_request_latency_seconds")] == 0


def test_a_stream_closed_by_the_client_counts_as_cancelled():
    metrics, registry = metrics_without_model()
    handle = handle_with(Delta("a"), Delta("b"))  # the engine is still generating
    frames = stream_sse(handle, ChatFormat(model="m"), 1.0, metrics.generation(0.0))
    next(frames), next(frames)  # the role chunk and "a"
    frames.close()  # what the server does when the client has gone
    got = samples(registry)
    assert handle.cancelled
    assert got[reason("cancelled")] == 1
    assert got[count("time_to_first_token_seconds")] == 1


def test_a_whole_answer_whose_client_left_counts_as_cancelled():
    metrics, registry = metrics_without_model()
    handle = handle_with(Delta("a"))
    with pytest.raises(APIError) as caught:
        collect_response(handle, ChatFormat(model="m"), lambda: True, 0.01, metrics.generation(0.0))
    assert caught.value.status == 499
    assert samples(registry)[reason("cancelled")] == 1


def test_serving_without_an_observer_counts_nothing():
    handle = handle_with(Delta("a"), Finished("stop", 3, 1))
    assert collect_response(handle, ChatFormat(model="m"), lambda: False)["choices"]


# ---- scrape-time gauges --------------------------------------------------------------------


def fake_runtime(stats: dict[str, int], engine: str = "batching") -> SimpleNamespace:
    loaded = SimpleNamespace(device=torch.device("cpu"), dtype=torch.bfloat16, quantization="int4")
    service = SimpleNamespace(loaded=loaded, engine=SimpleNamespace(stats=lambda: stats))
    settings = SimpleNamespace(model_name="m", engine=engine)
    return SimpleNamespace(service=service, settings=settings)


def test_engine_gauges_and_model_info_are_read_at_scrape_time():
    stats = {
        "running": 3,
        "waiting": 1,
        "batch_size": 2,
        "kv_cache_tokens": 512,
        "kv_cache_capacity_tokens": 4096,
    }
    registry = CollectorRegistry()
    ModelMetrics(registry, lambda: fake_runtime(stats))
    got = samples(registry)
    info = {
        "model": "m",
        "device": "cpu",
        "dtype": "bfloat16",
        "quantization": "int4",
        "engine": "batching",
        "version": chatstack.__version__,
    }
    assert got[("chatstack_model_info", tuple(sorted(info.items())))] == 1
    assert got[("chatstack_model_requests_running", ())] == 3
    assert got[("chatstack_model_requests_waiting", ())] == 1
    assert got[("chatstack_model_batch_size", ())] == 2
    assert got[("chatstack_model_kv_cache_tokens", ())] == 512
    assert got[("chatstack_model_kv_cache_capacity_tokens", ())] == 4096
    stats["running"] = 0  # a later scrape sees the engine as it is then
    assert samples(registry)[("chatstack_model_requests_running", ())] == 0


def test_the_sequential_engine_exports_no_batching_gauges():
    registry = CollectorRegistry()
    ModelMetrics(registry, lambda: fake_runtime({"running": 1, "waiting": 0}, "sequential"))
    names = {name for name, _ in samples(registry)}
    assert {"chatstack_model_requests_running", "chatstack_model_requests_waiting"} <= names
    assert not names & {
        "chatstack_model_batch_size",
        "chatstack_model_kv_cache_tokens",
        "chatstack_model_kv_cache_capacity_tokens",
    }


# ---- /metrics on the app ---------------------------------------------------------------------


def tiny_model(_settings: Settings) -> LoadedModel:
    """Enough of a loaded model for the sequential engine to wait for work."""
    return LoadedModel(
        tokenizer=None,
        model=None,
        device=torch.device("cpu"),
        dtype=torch.float32,
        max_model_len=16,
        vocab_size=10,
        eos_token_ids=frozenset(),
    )


def app_with(loader, **settings):
    settings = Settings(**{**SETTINGS.__dict__, **settings})
    runtime = ModelRuntime(settings, loader=loader)
    return create_app(settings, runtime), runtime


def test_metrics_need_the_key_and_show_the_loaded_model():
    app, runtime = app_with(tiny_model, api_key="k")
    runtime.wait(5)
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    reply = client.get("/metrics", headers={"Authorization": "Bearer k"})
    assert reply.status_code == 200
    assert reply.mimetype == "text/plain"
    got = parse(reply.get_data(as_text=True))
    info = [labels for name, labels in got if name == "chatstack_model_info"]
    assert info and dict(info[0])["engine"] == "sequential" and dict(info[0])["dtype"] == "float32"
    assert got[("chatstack_model_requests_running", ())] == 0
    assert "chatstack_model_batch_size" not in {name for name, _ in got}
    assert ("chatstack_gpu_available", ()) in got
    refused = (("method", "GET"), ("route", "/metrics"), ("status", "401"))
    assert got[("chatstack_http_requests_total", refused)] == 1


def test_while_loading_metrics_answer_without_the_model_gauges():
    release = threading.Event()

    def slow_loader(_settings):
        release.wait(5)
        raise RuntimeError("stopped by the test")

    app, runtime = app_with(slow_loader)
    reply = app.test_client().get("/metrics")
    release.set()
    runtime.wait(5)
    assert reply.status_code == 200
    names = {name for name, _ in parse(reply.get_data(as_text=True))}
    assert "chatstack_model_info" not in names and "chatstack_model_requests_running" not in names
    assert {"chatstack_gpu_available", "chatstack_model_generations_total"} <= names


def test_two_apps_in_one_process_keep_their_own_metrics():
    first, rt1 = app_with(tiny_model)
    second, rt2 = app_with(tiny_model)
    rt1.wait(5), rt2.wait(5)
    first.test_client().get("/v1/models")
    texts = [app.test_client().get("/metrics").get_data(as_text=True) for app in (first, second)]
    route = ("route", "/v1/models")
    hits = [
        sum(v for (n, lbl), v in parse(t).items() if n.endswith("requests_total") and route in lbl)
        for t in texts
    ]
    assert hits == [1, 0]


def test_health_reports_the_version():
    app, runtime = app_with(tiny_model)
    runtime.wait(5)
    assert app.test_client().get("/health").json["version"] == chatstack.__version__
