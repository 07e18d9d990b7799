"""``noop``: every input frame comes out unchanged (ai-runner's built-in of the same name)."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import Field

from lpnode.live.pipeline import BaseParams, Pipeline, VideoFrame, VideoOutput


class NoopParams(BaseParams):
    """BaseParams, with sizes down to 64 px (passing frames through costs nothing at any size)."""

    width: int = Field(default=512, ge=64, le=2048, multiple_of=8, description="Output width in pixels.")
    height: int = Field(default=512, ge=64, le=2048, multiple_of=8, description="Output height in pixels.")


class Noop(Pipeline):
    params_cls = NoopParams

    def __init__(self) -> None:
        super().__init__()
        self._frames: asyncio.Queue[VideoOutput] = asyncio.Queue(maxsize=1)

    async def initialize(self, **params: Any) -> None:
        pass

    async def put_video_frame(self, frame: VideoFrame, request_id: str) -> None:
        if self._frames.full():  # keep the newest: latency over completeness
            self._frames.get_nowait()
        self._frames.put_nowait(VideoOutput(frame, request_id))

    async def get_processed_video_frame(self) -> VideoOutput:
        return await self._frames.get()

    async def update_params(self, **params: Any) -> asyncio.Task[None] | None:
        return None
