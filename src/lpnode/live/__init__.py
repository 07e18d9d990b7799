"""Live video-to-video: the live pipeline interface and the live runner.

- :mod:`lpnode.live.pipeline`: what a live pipeline implements (ai-runner's interface and names).
- :mod:`lpnode.live.registry`: built-in live pipelines (``noop``, ``img2img``) and ``module:Class`` ones.
- The runner: :mod:`~lpnode.live.runner_app` (HTTP routes), :mod:`~lpnode.live.streamer` (one stream's
  trickle loops), :mod:`~lpnode.live.process` (the pipeline in its own process), :mod:`~lpnode.live.media`
  (MPEG-TS/H.264 decode and encode), :mod:`~lpnode.live.status` (the health state machine and events).

See docs/live.md.
"""

from lpnode.live.pipeline import (
    AudioFrame,
    AudioOutput,
    BaseParams,
    Pipeline,
    PipelineSpec,
    VideoFrame,
    VideoOutput,
    start_app,
)

__all__ = [
    "AudioFrame",
    "AudioOutput",
    "BaseParams",
    "Pipeline",
    "PipelineSpec",
    "VideoFrame",
    "VideoOutput",
    "start_app",
]
