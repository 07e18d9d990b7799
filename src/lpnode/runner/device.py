"""Device and dtype choice: CUDA, then MPS, then CPU; fp16 on CUDA when fp16 weights exist."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lpnode.errors import ConfigError

if TYPE_CHECKING:
    import torch


def select_device(preferred: str = "") -> str:
    """The torch device to run on: ``preferred`` if given and present, else cuda, mps, cpu."""
    import torch

    if preferred:
        kind = preferred.split(":", 1)[0]
        if kind == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {preferred!r} requested but CUDA is not available")
        if kind == "mps" and not torch.backends.mps.is_available():
            raise ConfigError(f"device {preferred!r} requested but MPS is not available")
        if kind not in {"cuda", "mps", "cpu"}:
            raise ConfigError(f"device must be cuda[:N], mps or cpu, got {preferred!r}")
        return preferred
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def repo_folder(model_dir: Path, model_id: str) -> Path:
    """The Hugging Face cache folder of ``model_id`` (``models--org--name``)."""
    return model_dir / ("models--" + model_id.replace("/", "--"))


def has_fp16_weights(model_dir: Path, model_id: str) -> bool:
    """True when the cached repo holds ``*.fp16.safetensors`` variant files."""
    folder = repo_folder(model_dir, model_id)
    return folder.is_dir() and any(folder.rglob("*.fp16.safetensors"))


def weights_dtype(device: str, model_dir: Path, model_id: str, bfloat16: bool = False) -> torch.dtype:
    """float16 on CUDA when fp16 weights exist (or for SDXL-Lightning), bfloat16 when asked, else
    float32. CPU always computes in float32."""
    import torch

    if device.startswith("cpu"):
        return torch.float32
    if bfloat16:
        return torch.bfloat16
    if has_fp16_weights(model_dir, model_id) or "ByteDance/SDXL-Lightning" in model_id:
        return torch.float16
    return torch.float32
