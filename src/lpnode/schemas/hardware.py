"""Schemas of the hardware and version routes that orchestrators read at start-up."""

from __future__ import annotations

from pydantic import BaseModel, Field


class GPUComputeInfo(BaseModel):
    """Static facts about one GPU."""

    id: str = Field(..., description="NVML UUID of the device.")
    name: str = Field(..., description="Device name.")
    memory_total: int = Field(..., description="Total memory in bytes.")
    memory_free: int = Field(..., description="Free memory in bytes.")
    major: int = Field(..., description="CUDA compute capability, major.")
    minor: int = Field(..., description="CUDA compute capability, minor.")


class GPUUtilizationInfo(BaseModel):
    """Live utilisation of one GPU."""

    id: str = Field(..., description="NVML UUID of the device.")
    name: str = Field(..., description="Device name.")
    memory_total: int = Field(..., description="Total memory in bytes.")
    memory_free: int = Field(..., description="Free memory in bytes.")
    utilization_compute: int = Field(..., description="Compute utilisation in percent.")
    utilization_memory: int = Field(..., description="Memory utilisation in percent.")


class HardwareInformation(BaseModel):
    """GPUs visible to the runner, keyed by device index."""

    pipeline: str = Field(..., description="The pipeline this runner serves.")
    model_id: str = Field(..., description="The model this runner serves.")
    gpu_info: dict[str, GPUComputeInfo] = Field(..., description="GPU facts by device index.")


class HardwareStats(BaseModel):
    """GPU utilisation, keyed by device index."""

    pipeline: str = Field(..., description="The pipeline this runner serves.")
    model_id: str = Field(..., description="The model this runner serves.")
    gpu_stats: dict[str, GPUUtilizationInfo] = Field(..., description="GPU utilisation by device index.")


class Version(BaseModel):
    """What this runner is and serves."""

    pipeline: str = Field(..., description="The pipeline this runner serves.")
    model_id: str = Field(..., description="The model this runner serves.")
    version: str = Field(..., description="The runner's version.")
