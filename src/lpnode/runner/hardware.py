"""GPU facts through NVML. Without NVML (no NVIDIA driver, CPU-only hosts) every map is empty."""

from __future__ import annotations

import logging
import threading
from typing import Any

from lpnode.schemas import GPUComputeInfo, GPUUtilizationInfo

log = logging.getLogger("lpnode.runner")
_lock = threading.Lock()
_state: dict[str, Any] = {"initialised": None}


def _nvml() -> Any | None:
    with _lock:
        if _state["initialised"] is None:
            try:
                import pynvml

                pynvml.nvmlInit()
                _state["initialised"] = pynvml
            except Exception as exc:  # NVMLError, ImportError, OSError: no NVIDIA driver here
                log.debug("NVML unavailable: %s", exc)
                _state["initialised"] = False
        return _state["initialised"] or None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def gpu_info() -> dict[str, GPUComputeInfo]:
    nvml = _nvml()
    if nvml is None:
        return {}
    out: dict[str, GPUComputeInfo] = {}
    try:
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
            out[str(index)] = GPUComputeInfo(
                id=_text(nvml.nvmlDeviceGetUUID(handle)),
                name=_text(nvml.nvmlDeviceGetName(handle)),
                memory_total=memory.total,
                memory_free=memory.free,
                major=major,
                minor=minor,
            )
    except Exception as exc:  # an NVML error mid-way: report what we have
        log.warning("NVML query failed: %s", exc)
    return out


def gpu_stats() -> dict[str, GPUUtilizationInfo]:
    nvml = _nvml()
    if nvml is None:
        return {}
    out: dict[str, GPUUtilizationInfo] = {}
    try:
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            rates = nvml.nvmlDeviceGetUtilizationRates(handle)
            out[str(index)] = GPUUtilizationInfo(
                id=_text(nvml.nvmlDeviceGetUUID(handle)),
                name=_text(nvml.nvmlDeviceGetName(handle)),
                memory_total=memory.total,
                memory_free=memory.free,
                utilization_compute=rates.gpu,
                utilization_memory=rates.memory,
            )
    except Exception as exc:
        log.warning("NVML query failed: %s", exc)
    return out
