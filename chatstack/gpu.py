"""NVIDIA GPUs as NVML (nvidia-ml-py) reports them, for any service that wants to know.

`read_gpus()` is a one-off report (`chatstack doctor`); `GpuCollector` exports Prometheus
gauges read at scrape time. A machine without a GPU or driver is a report ("none here"),
never an exception. pynvml is imported on first use, so importing this module stays fast.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

NOT_INSTALLED = "nvidia-ml-py is not installed; run `make install`"


@dataclass(frozen=True)
class GpuReport:
    gpus: list[dict[str, Any]]
    driver: str | None = None
    cuda_driver: str | None = None
    error: str | None = None  # why NVML could not be asked, when it could not


@dataclass(frozen=True)
class GpuReading:
    """One device now; None where the board does not report a value (NotSupported)."""

    index: int
    name: str
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    temperature_celsius: int | None
    power_watts: float | None
    utilization_percent: int | None


def read_gpus() -> GpuReport:
    """What the NVIDIA driver reports, as `nvidia-smi` would; no GPU is a report, not an error."""
    try:
        import pynvml
    except ImportError:
        return GpuReport([], error=NOT_INSTALLED)
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:  # LibraryNotFound without a driver, DriverNotLoaded, ...
        return GpuReport([], error=f"NVML: {exc}")
    try:
        cuda = pynvml.nvmlSystemGetCudaDriverVersion()
        readings = [read_device(pynvml, i) for i in range(pynvml.nvmlDeviceGetCount())]
        return GpuReport(
            [_report_dict(r) for r in readings],
            driver=_text(pynvml.nvmlSystemGetDriverVersion()),
            cuda_driver=f"{cuda // 1000}.{cuda % 1000 // 10}",
        )
    except pynvml.NVMLError as exc:
        return GpuReport([], error=f"NVML: {exc}")
    finally:
        pynvml.nvmlShutdown()


def read_device(pynvml: Any, index: int) -> GpuReading:
    """Device `index` through an initialised NVML; NVMLError when the device cannot be read."""
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)

    def optional(read: Callable[[], Any]) -> Any:
        try:
            return read()
        except pynvml.NVMLError:  # e.g. NotSupported on some boards
            return None

    memory = optional(lambda: pynvml.nvmlDeviceGetMemoryInfo(handle))
    power_mw = optional(lambda: pynvml.nvmlDeviceGetPowerUsage(handle))
    return GpuReading(
        index=index,
        name=_text(pynvml.nvmlDeviceGetName(handle)),
        memory_used_bytes=memory.used if memory else None,
        memory_total_bytes=memory.total if memory else None,
        temperature_celsius=optional(
            lambda: pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)
        ),
        power_watts=power_mw / 1000 if power_mw is not None else None,
        utilization_percent=optional(lambda: pynvml.nvmlDeviceGetUtilizationRates(handle).gpu),
    )


def _report_dict(reading: GpuReading) -> dict[str, Any]:
    """The doctor's shape: megabytes, as `nvidia-smi` shows them."""
    used, total = reading.memory_used_bytes, reading.memory_total_bytes
    return {
        "index": reading.index,
        "name": reading.name,
        "memory_used_mb": used // 2**20 if used is not None else None,
        "memory_total_mb": total // 2**20 if total is not None else None,
        "temperature_c": reading.temperature_celsius,
        "power_w": reading.power_watts,
        "utilization_pct": reading.utilization_percent,
    }


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class NvmlSession:
    """NVML initialised once for the process's scrapes, and never shut down.

    nvmlInit loads the library and opens the driver, too slow to repeat every scrape. A
    failed start (no driver, no library) is remembered, not retried: the machine will not
    grow a GPU while the process runs. Each distinct reason is logged once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = False
        self._nvml: Any = None
        self._logged: set[str] = set()

    def readings(self) -> list[GpuReading]:
        """Every device NVML can read now; [] when there is none or NVML is unavailable."""
        nvml = self._start()
        if nvml is None:
            return []
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError as exc:
            self.note(f"NVML: {exc}")
            return []
        readings = []
        for index in range(count):
            try:
                readings.append(read_device(nvml, index))
            except nvml.NVMLError as exc:  # e.g. GpuIsLost: report the others
                self.note(f"NVML: GPU {index}: {exc}")
        return readings

    def note(self, reason: str) -> None:
        """Log why GPU metrics are missing, once per reason."""
        with self._lock:
            if reason in self._logged:
                return
            self._logged.add(reason)
        log.info("GPU metrics unavailable: %s", reason)

    def _start(self) -> Any:
        with self._lock:
            if self._started:
                return self._nvml
            self._started = True
        try:
            import pynvml
        except ImportError:
            self.note(NOT_INSTALLED)
            return None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:  # LibraryNotFound without a driver, DriverNotLoaded
            self.note(f"NVML: {exc}")
            return None
        self._nvml = pynvml
        return pynvml


_SHARED_SESSION = NvmlSession()


class GpuCollector(Collector):
    """chatstack_gpu_* gauges, read from NVML at each scrape.

    Without a GPU only `chatstack_gpu_available 0` is exported. A value a board does not
    report (NotSupported) is left out for that GPU rather than shown as 0.
    """

    def __init__(self, session: NvmlSession | None = None) -> None:
        self.session = session or _SHARED_SESSION

    def describe(self) -> Iterator[Metric]:
        return iter(_families())

    def collect(self) -> Iterator[Metric]:
        try:
            readings = self.session.readings()
        except Exception as exc:  # a scrape must never fail because of the GPU probe
            self.session.note(f"{type(exc).__name__}: {exc}")
            readings = []
        available, info, *values = _families()
        available.add_metric([], 1 if readings else 0)
        yield available
        if not readings:
            return
        for reading in readings:
            gpu = str(reading.index)
            info.add_metric([gpu, reading.name], 1)
            for family, value in zip(values, _values(reading), strict=True):
                if value is not None:
                    family.add_metric([gpu], value)
        yield info
        yield from values


def _families() -> list[GaugeMetricFamily]:
    """Empty families, in the order `collect` fills them: available, info, then `_values`."""
    per_gpu = ("gpu",)
    return [
        GaugeMetricFamily(
            "chatstack_gpu_available", "1 when NVML reports at least one GPU, else 0.", labels=()
        ),
        GaugeMetricFamily(
            "chatstack_gpu_info", "Each GPU's name; always 1.", labels=("gpu", "name")
        ),
        GaugeMetricFamily(
            "chatstack_gpu_utilization_percent",
            "Percent of the last sample period a kernel ran on the GPU.",
            labels=per_gpu,
        ),
        GaugeMetricFamily(
            "chatstack_gpu_memory_used_bytes", "GPU memory allocated, bytes.", labels=per_gpu
        ),
        GaugeMetricFamily(
            "chatstack_gpu_memory_total_bytes", "GPU memory installed, bytes.", labels=per_gpu
        ),
        GaugeMetricFamily(
            "chatstack_gpu_temperature_celsius", "GPU core temperature.", labels=per_gpu
        ),
        GaugeMetricFamily(
            "chatstack_gpu_power_watts", "Power the board draws now, watts.", labels=per_gpu
        ),
    ]


def _values(reading: GpuReading) -> tuple[float | None, ...]:
    return (
        reading.utilization_percent,
        reading.memory_used_bytes,
        reading.memory_total_bytes,
        reading.temperature_celsius,
        reading.power_watts,
    )
