"""The runner's pipelines: pipeline name → the class that serves it, imported lazily.

What a network pipeline is (route, capability, request, checks) is in :mod:`lpnode.pipelines`; how this
runner serves it is a class here. Adding a built-in pipeline is one module here plus one line in
``_BUILTIN`` (and, for a network pipeline, its spec in :mod:`lpnode.pipelines`).

Pipelines outside lpnode are named by import path (``--pipeline-class pkg.module:Class``) or declared by an
installed package in the entry-point group ``lpnode.pipelines``; :func:`served_pipeline` resolves both (see
``docs/custom-pipelines.md``). Built-in names always win over an installed pipeline of the same name.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from lpnode.errors import ConfigError
from lpnode.pipelines import NETWORK_PIPELINES  # re-exported: every network pipeline, live included
from lpnode.runner.pipelines.base import BatchPipeline, Job, LoadContext, RouteSpec, StreamingPipeline
from lpnode.runner.pipelines.custom import CustomPipeline, check_name, default_name, route_for
from lpnode.runner.pipelines.loader import (
    ENTRY_POINT_GROUP,
    installed_pipelines,
    installed_target,
    is_import_path,
    load_pipeline_class,
)

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


def pipeline_names() -> list[str]:
    """Names of the built-in batch pipelines, in route order."""
    return list(_BUILTIN)


def pipeline_class(name: str) -> type[BatchPipeline[Any]]:
    """The class serving built-in pipeline ``name``; ConfigError naming the choices when there is none."""
    target = _BUILTIN.get(name)
    if target is None:
        choices = ", ".join(_BUILTIN)
        raise ConfigError(f"unknown pipeline {name!r}; choose one of: {choices}")
    module_name, _, attr = target.partition(":")
    cls: type[BatchPipeline[Any]] = getattr(importlib.import_module(module_name), attr)
    return cls


@dataclass(frozen=True)
class ServedPipeline:
    """What a runner serves: the route name, the class, its route, and notes for the operator (e.g. an
    installed package declaring a built-in name, which is ignored)."""

    name: str
    cls: type[BatchPipeline[Any]]
    route: RouteSpec
    builtin: bool
    notes: tuple[str, ...] = ()


def served_pipeline(name: str = "", target: str = "") -> ServedPipeline:
    """Resolve ``--pipeline NAME`` and ``--pipeline-class TARGET``. With a target, NAME (default: the
    class's own name) is its route; without one, NAME is a built-in pipeline or an installed entry point."""
    if target:
        if not is_import_path(target):
            raise ConfigError(
                f"--pipeline-class {target!r} must be written module:Class, e.g. my_pipelines.edges:EdgeDetect "
                "(to serve a pipeline an installed package declares, pass --pipeline NAME instead)"
            )
        cls: type[BatchPipeline[Any]] = load_pipeline_class(target, BatchPipeline)
        route_name = check_name(name or default_name(cls))
        if route_name in _BUILTIN or route_name in NETWORK_PIPELINES:
            raise ConfigError(
                f"{route_name!r} is a built-in pipeline; serve {target} under its own name, "
                f"e.g. --pipeline my-{route_name}"
            )
        return ServedPipeline(route_name, cls, route_for(cls, route_name), builtin=False)
    if not name:
        raise ConfigError(
            "no pipeline given: set PIPELINE or pass --pipeline (e.g. text-to-image), "
            "or name a class with --pipeline-class module:Class"
        )
    if name in _BUILTIN:
        cls = pipeline_class(name)
        shadowed = installed_pipelines().get(name, [])
        notes = tuple(
            f"installed package {i.distribution} declares a pipeline named {name!r} ({i.target}); "
            "the built-in one is served"
            for i in shadowed
        )
        return ServedPipeline(name, cls, cls.route, builtin=True, notes=notes)
    if is_import_path(name):
        raise ConfigError(f"--pipeline {name!r} looks like a class; pass it as --pipeline-class {name}")
    if installed_target(name) is None:
        installed = ", ".join(sorted(installed_pipelines()))
        raise ConfigError(
            f"unknown pipeline {name!r}; choose one of: {', '.join(_BUILTIN)}"
            + (f"; installed: {installed}" if installed else "")
            + "; or serve a class of your own with --pipeline-class module:Class"
        )
    cls = load_pipeline_class(name, BatchPipeline)
    return ServedPipeline(check_name(name), cls, route_for(cls, name), builtin=False)


__all__ = [
    "ENTRY_POINT_GROUP",
    "NETWORK_PIPELINES",
    "BatchPipeline",
    "CustomPipeline",
    "Job",
    "LoadContext",
    "RouteSpec",
    "ServedPipeline",
    "StreamingPipeline",
    "default_name",
    "installed_pipelines",
    "load_pipeline_class",
    "pipeline_class",
    "pipeline_names",
    "served_pipeline",
]
