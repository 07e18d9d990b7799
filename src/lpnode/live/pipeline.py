"""The live pipeline interface: what a live video-to-video pipeline implements, and how it is named.

The names and semantics are ai-runner's (``runner.live.pipelines`` / ``runner.live.trickle``), so a
pipeline written for ai-runner runs here after changing its imports (``docs/live.md``):

- :class:`Pipeline`: ``initialize(**params)`` once when the pipeline process starts, then per frame
  ``put_video_frame(frame, request_id)`` and, on a separate loop, ``get_processed_video_frame()``. Input
  and output are decoupled: a pipeline may buffer, skip, or emit several outputs per input.
  ``update_params(**params)`` always gets the *whole* params (a full replacement, never a patch); it
  returns ``None`` when the change was applied at once, or a Task for a slow reload, during which the
  runner answers each input frame with a loading overlay (when ``show_reloading_frame``).
- :class:`VideoFrame`: ``tensor`` is float32, shape (1, H, W, 3), RGB in [0, 1], on the CPU (a pipeline
  moves it to its device); ``timestamp`` and ``time_base`` are the input's PTS, which the output reuses.
- :class:`BaseParams`: ``width``/``height`` (the output size, fixed for a stream) and
  ``show_reloading_frame``. Subclass it for a pipeline's own params.
- :class:`PipelineSpec`: a pipeline by name and import path; :func:`start_app` serves one.

This module imports neither torch nor PyAV, so params classes built on it stay cheap to import.
"""

from __future__ import annotations

import asyncio
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    import numpy as np
    import torch


@dataclass
class VideoFrame:
    """One decoded input frame: ``tensor`` (1, H, W, 3) float32 RGB in [0, 1], with the input's PTS."""

    tensor: torch.Tensor
    timestamp: int
    time_base: Fraction
    log_timestamps: dict[str, float] = field(default_factory=dict)
    side_data: dict[str, Any] = field(default_factory=dict)

    def replace_tensor(self, tensor: torch.Tensor) -> VideoFrame:
        """The same frame (PTS, side data) holding ``tensor``: what a pipeline returns as its output."""
        return VideoFrame(tensor, self.timestamp, self.time_base, dict(self.log_timestamps), dict(self.side_data))


@dataclass
class AudioFrame:
    """Decoded audio. Audio does not go through the pipeline: the runner passes it to the output."""

    samples: np.ndarray
    timestamp: int
    time_base: Fraction
    format: str = "fltp"
    layout: str = "mono"
    rate: int = 48000
    nb_samples: int = 0


@dataclass
class VideoOutput:
    """A processed frame for request ``request_id``; outputs of another request are dropped."""

    frame: VideoFrame
    request_id: str = ""
    is_loading_frame: bool = False

    @property
    def tensor(self) -> torch.Tensor:
        return self.frame.tensor

    @property
    def timestamp(self) -> int:
        return self.frame.timestamp

    @property
    def time_base(self) -> Fraction:
        return self.frame.time_base


@dataclass
class AudioOutput:
    frames: list[AudioFrame]
    request_id: str = ""


class BaseParams(BaseModel):
    """Params every live pipeline understands. Extra keys are kept (a pipeline without a params class
    still sees them in ``update_params``); subclasses may forbid them with ``extra="forbid"``."""

    model_config = ConfigDict(extra="allow")

    width: int = Field(default=512, ge=384, le=1024, multiple_of=64, description="Output width in pixels.")
    height: int = Field(default=512, ge=384, le=1024, multiple_of=64, description="Output height in pixels.")
    show_reloading_frame: bool = Field(
        default=True, description="Show a loading overlay on the output while the pipeline reloads."
    )

    def get_output_resolution(self) -> tuple[int, int]:
        """(width, height) of the output; pipelines that resize (upscalers) override it."""
        return self.width, self.height


class Pipeline(ABC):
    """A live video pipeline. It runs in a process of its own, one stream at a time, on one event loop:
    its methods are never called concurrently with themselves, but input and output loops interleave."""

    def __init__(self) -> None:  # noqa: B027 - ai-runner pipelines call super().__init__()
        pass

    @abstractmethod
    async def initialize(self, **params: Any) -> None:
        """Load models and warm up, with the spec's initial params. Raising fails the process start."""

    @abstractmethod
    async def put_video_frame(self, frame: VideoFrame, request_id: str) -> None:
        """Take one input frame. Return quickly (queue it) if processing is slow."""

    @abstractmethod
    async def get_processed_video_frame(self) -> VideoOutput:
        """Wait for and return the next output frame."""

    @abstractmethod
    async def update_params(self, **params: Any) -> asyncio.Task[None] | None:
        """Apply the full new params. Return a Task for a slow reload (the runner shows a loading
        overlay until it finishes), None when done. Raising rejects the update: the old params stay."""

    async def stop(self) -> None:  # noqa: B027 - optional
        """Release resources; called when the pipeline process shuts down."""

    @classmethod  # noqa: B027 - optional
    def prepare_models(cls) -> None:
        """Download or build what the pipeline needs (run by :func:`start_app` with ``PREPARE_MODELS=1``).
        The default has nothing to prepare."""


_SUFFIX = re.compile(r"pipeline$", re.IGNORECASE)


def default_pipeline_name(pipeline_cls: str) -> str:
    """ai-runner's default name for ``module:Class``: the class name lower-cased, without ``pipeline``."""
    class_name = pipeline_cls.partition(":")[2].rsplit(".", 1)[-1]
    return _SUFFIX.sub("", class_name.lower()) or class_name.lower()


class PipelineSpec(BaseModel):
    """A live pipeline by import path. ``name`` (default: from the class name) is the model id the
    orchestrator asks for; ``initial_params`` are what the pipeline process starts and idles with."""

    name: str = ""
    pipeline_cls: str = Field(description="module.path:ClassName of the Pipeline subclass")
    params_cls: str | None = Field(default=None, description="module.path:ClassName of its BaseParams subclass")
    initial_params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fill_name(self) -> PipelineSpec:
        if not self.name:
            self.name = default_pipeline_name(self.pipeline_cls)
        return self


def start_app(pipeline: PipelineSpec | None = None, host: str | None = None, port: int | None = None, **_: Any) -> None:
    """Serve ``pipeline`` as a live runner (ai-runner's ``runner.app.start_app``). ``HOST``/``PORT`` (default
    0.0.0.0:8000), ``MODEL_DIR``, ``AUTH_TOKEN`` and ``VERSION`` are read as a runner reads them. With
    ``PREPARE_MODELS=1`` or ``--prepare-models`` in argv it runs the pipeline's ``prepare_models()`` and
    returns instead."""
    from lpnode.live.runner_app import serve_spec

    if pipeline is None:
        raise TypeError("start_app needs pipeline=PipelineSpec(...)")
    serve_spec(pipeline, host=host, port=port)
