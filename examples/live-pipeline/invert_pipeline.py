"""An out-of-tree live pipeline: colour inversion with an edge overlay, in plain torch ops.

Serve it with::

    lpnode runner --pipeline live-video-to-video --pipeline-class invert_pipeline:InvertPipeline

(from this directory, or with it on PYTHONPATH). The runner's model id is then ``invert`` (the class name,
lower-cased, without ``pipeline``); ``--model-id NAME`` picks another.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field

from lpnode.live.pipelines import BaseParams, Pipeline
from lpnode.live.trickle import VideoFrame, VideoOutput

log = logging.getLogger("invert_pipeline")


class InvertParams(BaseParams):
    # Small sizes are fine for tensor ops (ai-runner's BaseParams starts at 384 px).
    width: int = Field(default=512, ge=64, le=2048, multiple_of=8)
    height: int = Field(default=512, ge=64, le=2048, multiple_of=8)
    invert: bool = Field(default=True, description="Invert the colours.")
    edges: float = Field(default=0.0, ge=0.0, le=1.0, description="Strength of a white edge overlay.")
    warmup_seconds: float = Field(
        default=0.0, ge=0.0, le=30.0, description="Changing it simulates a slow model reload (loading overlay)."
    )


_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


class InvertPipeline(Pipeline):
    params_cls = InvertParams  # how lpnode finds the params class of a --pipeline-class pipeline

    def __init__(self) -> None:
        super().__init__()
        self.params = InvertParams()
        self.frames: asyncio.Queue[VideoOutput] = asyncio.Queue(maxsize=1)
        self.kernels = torch.stack([_SOBEL, _SOBEL.T]).unsqueeze(1)  # (2, 1, 3, 3)

    async def initialize(self, **params: Any) -> None:
        self.params = InvertParams(**params)
        log.info("invert pipeline ready")

    async def put_video_frame(self, frame: VideoFrame, request_id: str) -> None:
        image = frame.tensor  # (1, H, W, 3) float32 RGB in [0, 1]
        if self.params.edges > 0:
            grey = image.mean(dim=3).unsqueeze(1)  # (1, 1, H, W)
            gradient = F.conv2d(grey, self.kernels, padding=1).pow(2).sum(dim=1).sqrt()  # (1, H, W)
            image = (image + self.params.edges * gradient.unsqueeze(3)).clamp(0, 1)
        if self.params.invert:
            image = 1.0 - image
        if self.frames.full():
            self.frames.get_nowait()
        self.frames.put_nowait(VideoOutput(frame.replace_tensor(image), request_id))

    async def get_processed_video_frame(self) -> VideoOutput:
        return await self.frames.get()

    async def update_params(self, **params: Any) -> asyncio.Task[None] | None:
        new = InvertParams(**params)  # the full params: omitted keys go back to their defaults
        old, self.params = self.params, new
        if new.warmup_seconds != old.warmup_seconds and new.warmup_seconds > 0:
            return asyncio.create_task(asyncio.sleep(new.warmup_seconds))  # a stand-in for loading a model
        return None
