"""The NSFW safety check: Stable Diffusion's safety checker, used only to flag images.

The checker model (default ``CompVis/stable-diffusion-safety-checker``, whose repo also holds the CLIP
image processor) is read from the models dir like any other model. When it is missing, generation
still works with ``safety_check=false``; a request that asks for the check (the default) gets a 500 that
names the model to pull, rather than an unchecked image flagged as safe. The runner says so once in its
log when the model loads and on every ``/health`` (:attr:`SafetyChecker.problem`), so the operator hears of
it before the first request fails. ``lpnode models pull --ai-models aiModels.json`` fetches the checker
with the models that need it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import Any

from PIL import Image

from lpnode.errors import PipelineFailedError
from lpnode.logs import log_event
from lpnode.runner.device import repo_folder
from lpnode.runner.model_files import pull_hint
from lpnode.runner.pipelines.base import LoadContext

log = logging.getLogger("lpnode.runner")


class SafetyChecker:
    """Loads once on first use (or :meth:`preload`); thread-safe."""

    def __init__(self, model_id: str, model_dir: Path, device: str, allow_downloads: bool = False) -> None:
        self.model_id = model_id
        self._model_dir = model_dir
        self._device = device
        self._allow_downloads = allow_downloads
        self._lock = threading.Lock()
        self._model: Any = None
        self._processor: Any = None
        self._error = ""

    @property
    def problem(self) -> str:
        """Why the checker cannot run, with the fix; empty while it is loaded or not yet tried."""
        return self._error

    def preload(self) -> None:
        """Load now; log (not raise) when the checker is unavailable."""
        with contextlib.suppress(PipelineFailedError):
            self._ensure_loaded()

    def _ensure_loaded(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            if self._error:
                raise PipelineFailedError(self._error)
            import torch
            from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
            from transformers import CLIPImageProcessor

            dtype = torch.float16 if self._device.startswith("cuda") else torch.float32
            options: dict[str, Any] = {"cache_dir": str(self._model_dir)}
            if not self._allow_downloads:
                options["local_files_only"] = True
            try:
                processor = CLIPImageProcessor.from_pretrained(self.model_id, **options)
                model: Any = StableDiffusionSafetyChecker.from_pretrained(self.model_id, dtype=dtype, **options)
            except (OSError, ValueError) as exc:
                where = (
                    "could not be loaded from" if repo_folder(self._model_dir, self.model_id).is_dir() else "is not in"
                )
                self._error = (
                    f"Safety checker unavailable: model {self.model_id!r} {where} the models dir "
                    f"{self._model_dir}, so requests with safety_check=true (the default) fail; "
                    f"{pull_hint(self.model_id, self._model_dir)} (or all an aiModels.json needs: "
                    f"lpnode models pull --ai-models aiModels.json --models-dir {self._model_dir}). "
                    "Callers can send safety_check=false meanwhile."
                )
                log_event(
                    log,
                    "safety checker unavailable",
                    logging.WARNING,
                    model_id=self.model_id,
                    reason=str(exc).splitlines()[0],
                )
                raise PipelineFailedError(self._error) from exc
            self._model = model.to(self._device).eval()
            self._processor = processor
            log_event(log, "safety checker loaded", model_id=self.model_id, device=self._device)

    def flags(self, images: list[Image.Image]) -> list[bool]:
        """One NSFW flag per image. The images themselves are never modified."""
        import numpy as np
        import torch

        self._ensure_loaded()
        pixels = self._processor(images=images, return_tensors="pt").pixel_values
        pixels = pixels.to(self._device, dtype=self._model.dtype)
        arrays = [np.asarray(img, dtype=np.float32) / 255.0 for img in images]
        with torch.no_grad():
            _, has_nsfw = self._model(images=arrays, clip_input=pixels)
        return [bool(flag) for flag in has_nsfw]


def safety_checker_for(ctx: LoadContext) -> SafetyChecker:
    """The pipeline's safety checker, preloaded (on ``SAFETY_CHECKER_DEVICE`` when that flag is set)."""
    device = ctx.optimization_flags.get("SAFETY_CHECKER_DEVICE") or ctx.device
    checker = SafetyChecker(ctx.safety_checker_id, ctx.model_dir, device, ctx.allow_downloads)
    checker.preload()
    return checker
