"""The pipeline registry: pipeline name → the class that serves it, imported lazily.

Adding a pipeline is one module here plus one line in ``_BUILTIN``.
"""

from __future__ import annotations

import importlib
from typing import Any

from lpnode.errors import ConfigError
from lpnode.runner.pipelines.base import BatchPipeline, Job, LoadContext, RouteSpec, StreamingPipeline

_BUILTIN: dict[str, str] = {
    "text-to-image": "lpnode.runner.pipelines.text_to_image:TextToImagePipeline",
    "image-to-image": "lpnode.runner.pipelines.image_to_image:ImageToImagePipeline",
    "image-to-video": "lpnode.runner.pipelines.image_to_video:ImageToVideoPipeline",
    "upscale": "lpnode.runner.pipelines.upscale:UpscalePipeline",
    "audio-to-text": "lpnode.runner.pipelines.audio_to_text:AudioToTextPipeline",
    "segment-anything-2": "lpnode.runner.pipelines.segment_anything_2:SegmentAnything2Pipeline",
    "llm": "lpnode.runner.pipelines.llm:LLMPipeline",
    "image-to-text": "lpnode.runner.pipelines.image_to_text:ImageToTextPipeline",
    "text-to-speech": "lpnode.runner.pipelines.text_to_speech:TextToSpeechPipeline",
}


# Every pipeline of the Livepeer AI network, in the upstream route order: the batch ones above plus
# live-video-to-video, which the live runner serves.
NETWORK_PIPELINES: tuple[str, ...] = (*list(_BUILTIN)[:-1], "live-video-to-video", list(_BUILTIN)[-1])


def pipeline_names() -> list[str]:
    """Names of the built-in batch pipelines, in route order."""
    return list(_BUILTIN)


def pipeline_class(name: str) -> type[BatchPipeline[Any]]:
    """The class serving pipeline ``name``; ConfigError naming the choices when there is none."""
    target = _BUILTIN.get(name)
    if target is None:
        choices = ", ".join(_BUILTIN)
        raise ConfigError(f"unknown pipeline {name!r}; choose one of: {choices}")
    module_name, _, attr = target.partition(":")
    cls: type[BatchPipeline[Any]] = getattr(importlib.import_module(module_name), attr)
    return cls


__all__ = [
    "NETWORK_PIPELINES",
    "BatchPipeline",
    "Job",
    "LoadContext",
    "RouteSpec",
    "StreamingPipeline",
    "pipeline_class",
    "pipeline_names",
]
