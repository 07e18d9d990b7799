"""What one request may ask of a pipeline: steps, sizes, counts, text lengths, tokens, audio length, uploads.

Every batch pipeline has a :class:`Limits` with finite defaults (:data:`DEFAULTS`; the table in
``docs/runner.md``). The cheap checks in :mod:`lpnode.schemas.checks` refuse a request beyond them with a 400
that names the field, the limit and the value, at the gateway and again at the runner, before any model runs.

An operator changes them with one environment variable, read the same way by every role::

    LPNODE_LIMITS='{"text-to-image": {"max_steps": 60, "max_images": 2}}'
    LPNODE_LIMITS=/etc/lpnode/limits.json          # or a file holding that JSON object

Pipelines and limits left out keep their defaults. :func:`configured` reads the variable when its value
changes (so a role reads it at start-up and tests can set it), and raises :class:`~lpnode.errors.ConfigError`
naming the mistake when it cannot be used.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from lpnode.errors import ConfigError

ENV_VAR = "LPNODE_LIMITS"
MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """One pipeline's limits. Every field is a positive integer; a pipeline reads only the fields of
    :data:`APPLIES` (a request of text-to-image has no ``max_tokens``)."""

    max_steps: int = 150
    """``num_inference_steps`` (image-to-image's default is 100)."""
    max_width: int = 2048
    """``width`` of the generated image or video frames, pixels."""
    max_height: int = 2048
    """``height`` of the generated image or video frames, pixels."""
    max_pixels: int = 2048 * 2048
    """``width × height`` of the generated image or video frames."""
    max_images: int = 4
    """``num_images_per_prompt``."""
    max_prompt_chars: int = 2000
    """Characters of ``prompt`` and of ``negative_prompt`` (each); llm: of all message contents together."""
    max_input_pixels: int = 8192 * 8192
    """``width × height`` of an uploaded image (its header is read, its pixels are not decoded)."""
    max_upload_bytes: int = 50 * MiB
    """Bytes of an uploaded file (``image``, ``audio``)."""
    max_tokens: int = 4096
    """llm: ``max_tokens``."""
    max_messages: int = 256
    """llm: number of ``messages``."""
    max_text_chars: int = 10_000
    """text-to-speech: characters of ``text``."""
    max_description_chars: int = 2000
    """text-to-speech: characters of the speaker ``description``."""
    max_audio_seconds: int = 3600
    """audio-to-text: length of the audio, seconds (the declared ``metadata`` duration, then the decoded audio)."""


_IMAGE_UPLOAD = ("max_input_pixels", "max_upload_bytes")
APPLIES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "text-to-image": ("max_steps", "max_width", "max_height", "max_pixels", "max_images", "max_prompt_chars"),
        "image-to-image": ("max_steps", "max_images", "max_prompt_chars", *_IMAGE_UPLOAD),
        "image-to-video": ("max_steps", "max_width", "max_height", "max_pixels", *_IMAGE_UPLOAD),
        "upscale": ("max_steps", "max_prompt_chars", *_IMAGE_UPLOAD),
        "audio-to-text": ("max_audio_seconds", "max_upload_bytes"),
        "segment-anything-2": _IMAGE_UPLOAD,
        "llm": ("max_tokens", "max_messages", "max_prompt_chars"),
        "image-to-text": ("max_prompt_chars", *_IMAGE_UPLOAD),
        "text-to-speech": ("max_text_chars", "max_description_chars"),
    }
)
"""Pipeline -> the limits its requests are checked against, in the order of the docs' table."""

DEFAULTS: Mapping[str, Limits] = MappingProxyType(
    {
        "text-to-image": Limits(),
        # The output is as large as the uploaded image, so the upload's size is the work.
        "image-to-image": Limits(max_input_pixels=2048 * 2048),
        # 25 frames (the model's own count) of width x height each.
        "image-to-video": Limits(max_steps=100, max_pixels=1024 * 1024),
        # The output is 4x the upload on each side: 1024x1024 in, 4096x4096 out.
        "upscale": Limits(max_input_pixels=1024 * 1024),
        "audio-to-text": Limits(),
        "segment-anything-2": Limits(),
        "llm": Limits(max_prompt_chars=200_000),
        "image-to-text": Limits(),
        "text-to-speech": Limits(),
    }
)
"""Pipeline -> its limits when the operator sets none."""


def parse(text: str, source: str = ENV_VAR) -> Mapping[str, Limits]:
    """Every pipeline's limits: :data:`DEFAULTS` with the JSON object ``text`` laid over them.

    ConfigError, naming ``source``, for anything but ``{"<pipeline>": {"<limit>": <positive integer>}}`` over
    the pipelines and limits of :data:`APPLIES`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source} is not valid JSON: {exc}") from None
    example = '{"text-to-image": {"max_steps": 60}}'
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a JSON object of pipelines, e.g. {example}")
    merged = dict(DEFAULTS)
    for pipeline, values in data.items():
        if pipeline not in APPLIES:
            raise ConfigError(f"{source}: unknown pipeline {pipeline!r}; use one of: {', '.join(APPLIES)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: {pipeline} must be a JSON object of limits, e.g. {example}")
        for name, value in values.items():
            if name not in APPLIES[pipeline]:
                raise ConfigError(
                    f"{source}: {pipeline} has no limit {name!r}; its limits are: {', '.join(APPLIES[pipeline])}"
                )
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{source}: {pipeline}.{name} must be a positive integer, got {value!r}")
        merged[pipeline] = dataclasses.replace(merged[pipeline], **values)
    return MappingProxyType(merged)


def from_env(env: Mapping[str, str]) -> Mapping[str, Limits]:
    """Every pipeline's limits as ``env[LPNODE_LIMITS]`` sets them: a JSON object, or the path of a file holding
    one; :data:`DEFAULTS` when unset or empty. ConfigError saying what is wrong otherwise."""
    raw = env.get(ENV_VAR, "").strip()
    if not raw:
        return DEFAULTS
    if raw.startswith(("{", "[")):  # JSON written inline; anything else names a file
        return parse(raw)
    path = Path(raw).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{ENV_VAR}={raw}: cannot read the limits file: {exc}") from None
    return parse(text, f"{ENV_VAR} file {path}")


_cache: tuple[str | None, Mapping[str, Limits]] = (None, DEFAULTS)


def configured() -> Mapping[str, Limits]:
    """Every pipeline's limits in this process (:func:`from_env` on ``os.environ``), read again only when the
    variable's value changes. Call it at start-up so a bad value stops the process with its ConfigError."""
    global _cache
    raw = os.environ.get(ENV_VAR)
    if raw != _cache[0]:
        _cache = (raw, from_env(os.environ))
    return _cache[1]


def limits_for(pipeline: str) -> Limits:
    """``pipeline``'s configured limits; the general defaults for a pipeline without a row (custom ones)."""
    return configured().get(pipeline, Limits())


__all__ = ["APPLIES", "DEFAULTS", "ENV_VAR", "Limits", "configured", "from_env", "limits_for", "parse"]
