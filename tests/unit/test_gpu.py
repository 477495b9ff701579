"""GPU gauges from NVML: a fake nvidia-ml-py with GPUs, without a driver, and this machine."""

from __future__ import annotations

import logging
import shutil
import sys
import types

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from chatstack.gpu import GpuCollector, NvmlSession

GIB = 2**30


def fake_pynvml(*, gpus: int = 1, init_error: bool = False, lost: int | None = None):
    """Just enough of nvidia-ml-py: `gpus` H100s (utilisation not supported), or no driver."""
    nvml = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    class NVMLError_LibraryNotFound(NVMLError):
        def __str__(self) -> str:
            return "NVML Shared Library Not Found"

    calls = {"init": 0, "shutdown": 0}

    def init() -> None:
        calls["init"] += 1
        if init_error:
            raise NVMLError_LibraryNotFound()

    def handle(index: int) -> str:
        if index == lost:
            raise NVMLError("GPU is lost")
        return f"handle{index}"

    def not_supported(*_: object) -> None:
        raise NVMLError("Not Supported")

    nvml.__dict__.update(
        NVMLError=NVMLError,
        NVML_TEMPERATURE_GPU=0,
        calls=calls,
        nvmlInit=init,
        nvmlShutdown=lambda: calls.__setitem__("shutdown", calls["shutdown"] + 1),
        nvmlDeviceGetCount=lambda: gpus,
        nvmlDeviceGetHandleByIndex=handle,
        nvmlDeviceGetName=lambda h: b"NVIDIA H100 80GB HBM3",
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=2 * GIB, total=80 * GIB),
        nvmlDeviceGetTemperature=lambda h, sensor: 40 + int(h[-1]),
        nvmlDeviceGetPowerUsage=lambda h: 120_500,
        nvmlDeviceGetUtilizationRates=not_supported,
    )
    return nvml


def scrape(collector: GpuCollector) -> dict[tuple[str, tuple], float]:
    """Every sample as {(name, sorted labels): value}, through the text format."""
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_one_gpu_is_read_into_gauges(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    samples = scrape(GpuCollector(NvmlSession()))
    gpu0 = (("gpu", "0"),)
    assert samples == {
        ("chatstack_gpu_available", ()): 1,
        ("chatstack_gpu_info", (("gpu", "0"), ("name", "NVIDIA H100 80GB HBM3"))): 1,
        ("chatstack_gpu_memory_used_bytes", gpu0): 2 * GIB,
        ("chatstack_gpu_memory_total_bytes", gpu0): 80 * GIB,
        ("chatstack_gpu_temperature_celsius", gpu0): 40,
        ("chatstack_gpu_power_watts", gpu0): 120.5,
        # utilisation is NotSupported on this board: left out, not reported as 0
    }


def test_nvml_starts_once_and_stays_up_across_scrapes(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = fake_pynvml(gpus=2)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    collector = GpuCollector(NvmlSession())
    for _ in range(3):
        samples = scrape(collector)
    assert samples[("chatstack_gpu_temperature_celsius", (("gpu", "1"),))] == 41
    assert nvml.calls == {"init": 1, "shutdown": 0}


def test_a_lost_gpu_leaves_the_others_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpus=2, lost=0))
    samples = scrape(GpuCollector(NvmlSession()))
    assert samples[("chatstack_gpu_available", ())] == 1
    assert {labels for name, labels in samples if name == "chatstack_gpu_info"} == {
        (("gpu", "1"), ("name", "NVIDIA H100 80GB HBM3"))
    }


def test_without_a_driver_only_availability_is_exported_and_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    nvml = fake_pynvml(init_error=True)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    collector = GpuCollector(NvmlSession())
    with caplog.at_level(logging.INFO, logger="chatstack.gpu"):
        for _ in range(3):
            assert scrape(collector) == {("chatstack_gpu_available", ()): 0}
    assert [r.getMessage() for r in caplog.records] == [
        "GPU metrics unavailable: NVML: NVML Shared Library Not Found"
    ]
    assert nvml.calls["init"] == 1  # a failed start is not retried every scrape


def test_without_nvidia_ml_py_the_gauge_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    with caplog.at_level(logging.INFO, logger="chatstack.gpu"):
        assert scrape(GpuCollector(NvmlSession())) == {("chatstack_gpu_available", ()): 0}
    assert "nvidia-ml-py is not installed" in caplog.text


def test_an_unexpected_probe_error_does_not_fail_the_scrape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nvml = fake_pynvml()
    nvml.nvmlDeviceGetCount = lambda: 1 / 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    assert scrape(GpuCollector(NvmlSession())) == {("chatstack_gpu_available", ()): 0}


def test_this_machine_reports_its_gpus_or_their_absence() -> None:
    samples = scrape(GpuCollector(NvmlSession()))
    if shutil.which("nvidia-smi") is None:  # this machine kind and CI: no NVIDIA driver
        assert samples == {("chatstack_gpu_available", ()): 0}
    else:
        assert samples[("chatstack_gpu_available", ())] == 1
