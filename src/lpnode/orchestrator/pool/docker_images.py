"""Which ai-runner image serves a pipeline: go-livepeer's image tables and its ``-aiRunnerImageOverrides``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from lpnode.errors import ConfigError

DEFAULT_IMAGE = "livepeer/ai-runner:latest"
# go-livepeer's images for the batch pipelines that do not use the default image, and for live pipelines.
PIPELINE_IMAGES: Mapping[str, str] = {
    "segment-anything-2": "livepeer/ai-runner:segment-anything-2",
    "text-to-speech": "livepeer/ai-runner:text-to-speech",
    "audio-to-text": "livepeer/ai-runner:audio-to-text",
    "llm": "livepeer/ai-runner:llm",
}
LIVE_PIPELINE_IMAGES: Mapping[str, str] = {
    "streamdiffusion": "livepeer/ai-runner:live-app-streamdiffusion",
    "streamdiffusion-sd15": "livepeer/ai-runner:live-app-streamdiffusion-sd15",
    "streamdiffusion-sd15-v2v": "livepeer/ai-runner:live-app-streamdiffusion-sd15-v2v",
    "streamdiffusion-sdxl": "livepeer/ai-runner:live-app-streamdiffusion-sdxl",
    "streamdiffusion-sdxl-v2v": "livepeer/ai-runner:live-app-streamdiffusion-sdxl-v2v",
    "streamdiffusion-sdxl-faceid": "livepeer/ai-runner:live-app-streamdiffusion-sdxl-faceid",
    "comfyui": "livepeer/ai-runner:live-app-comfyui",
    "segment_anything_2": "livepeer/ai-runner:live-app-segment_anything_2",
    "noop": "livepeer/ai-runner:live-app-noop",
    "scope": "daydreamlive/scope-runner",
}
_OVERRIDES_EXAMPLE = '{"default": "img", "batch": {"<pipeline>": "img"}, "live": {"<live pipeline>": "img"}}'


@dataclass(frozen=True)
class ImageOverrides:
    """go-livepeer's ``-aiRunnerImageOverrides``: a default image, and images per batch pipeline and per live
    pipeline (the model id of a ``live-video-to-video`` entry)."""

    default: str = ""
    batch: Mapping[str, str] = field(default_factory=dict)
    live: Mapping[str, str] = field(default_factory=dict)


def parse_image_overrides(text: str) -> ImageOverrides:
    """Parse ``-aiRunnerImageOverrides`` JSON; blank text means none. Raises :class:`ConfigError`."""
    if not text.strip():
        return ImageOverrides()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"runner image overrides are not valid JSON ({exc}); expected {_OVERRIDES_EXAMPLE}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"runner image overrides must be a JSON object like {_OVERRIDES_EXAMPLE}")
    for key, value in data.items():
        if key not in ("default", "batch", "live"):
            raise ConfigError(f"runner image overrides: unknown key {key!r}; the keys are default, batch and live")
        if key == "default" and value is not None and not isinstance(value, str):
            raise ConfigError(f'runner image overrides: "default" must be an image name, got {json.dumps(value)}')
        if key != "default" and not (value is None or _is_image_map(value)):
            raise ConfigError(f'runner image overrides: "{key}" must map names to images, got {json.dumps(value)[:80]}')
    return ImageOverrides(data.get("default") or "", dict(data.get("batch") or {}), dict(data.get("live") or {}))


def _is_image_map(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(image, str) and image for image in value.values())


def container_image(pipeline: str, model_id: str, overrides: ImageOverrides, default: str = DEFAULT_IMAGE) -> str:
    """go-livepeer's image choice. Live (the model id names the live pipeline): ``overrides.live``, then its
    live map, else :class:`ConfigError`. Batch: ``overrides.batch``, its pipeline map, ``overrides.default``,
    then ``default``."""
    if pipeline == "live-video-to-video":
        image = overrides.live.get(model_id, LIVE_PIPELINE_IMAGES.get(model_id))
        if image is None:
            raise ConfigError(
                f'no container image found for live pipeline {model_id}; add it to the overrides\' "live"'
            )
        return image
    if pipeline in overrides.batch:
        return overrides.batch[pipeline]
    return PIPELINE_IMAGES.get(pipeline) or overrides.default or default
