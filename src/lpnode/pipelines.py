"""The network pipelines of the Livepeer AI network, one table: every fact about a pipeline that more than
one role needs lives in its :class:`PipelineSpec`.

A spec says what the pipeline is called on the wire (its route and go-livepeer capability number), what
its request looks like (request and response models, JSON or multipart body, the model field and the
model used when a request names none), how a request is billed (:meth:`PipelineSpec.units`), which cheap
checks refuse a request before any model runs (:meth:`PipelineSpec.precheck`, the runner's own checks, within
the pipeline's :attr:`PipelineSpec.limits`, which the operator sets with ``LPNODE_LIMITS``),
what happens to its results on the way back (:class:`Results`), its typical output for price displays,
and the port block its managed runners use.

This module is a leaf: it imports only the request schemas, the error tree and pydantic, so every role can
read it. How a runner serves a pipeline (the model code) is the runner's business, not this
table's.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel

from lpnode.errors import ConfigError
from lpnode.schemas import checks
from lpnode.schemas.audio import AudioResponse, AudioToTextForm, TextResponse, TextToSpeechParams
from lpnode.schemas.images import (
    ImageResponse,
    ImageToImageForm,
    ImageToVideoForm,
    TextToImageParams,
    UpscaleForm,
    VideoResponse,
)
from lpnode.schemas.limits import Limits, limits_for
from lpnode.schemas.llm import LLMRequest, LLMResponse
from lpnode.schemas.vision import ImageToTextForm, ImageToTextResponse, MasksResponse, SegmentAnything2Form


class Results(enum.Enum):
    """What a pipeline answers, and so what the hops between runner and caller do with the answer."""

    JSON = "json"
    """The runner's JSON is the answer, passed through (audio-to-text, segment-anything-2, llm,
    image-to-text; live-video-to-video, whose media travels over trickle, not in an answer)."""
    MEDIA = "media"
    """Images or audio as ``data:`` URLs: answered inline, or stored and served as URLs."""
    VIDEO = "video"
    """Frames, encoded into one MP4 per video and served as a URL (image-to-video)."""


@dataclass(frozen=True)
class OutputUnit:
    """``units`` billing units make one ``label`` (e.g. 1,048,576 units = one 1024×1024 image)."""

    label: str
    units: int


UnitsRule = Callable[[BaseModel, Mapping[str, Any]], int]
Precheck = Callable[[Any, Limits], None]


def _no_units(params: BaseModel, fields: Mapping[str, Any]) -> int:
    return 0


def _no_checks(params: Any, limits: Limits) -> None:
    return None


@dataclass(frozen=True)
class PipelineSpec:
    """One network pipeline. Instances are immutable and shared; read them through :data:`PIPELINES`."""

    name: str
    """The route and the name in ``aiModels.json``: ``text-to-image``."""
    capability: int
    """go-livepeer's capability number (27–36); it travels as a plain integer and never changes."""
    params: type[BaseModel] | None
    """The request model; None for live-video-to-video, which has no batch request."""
    response: type[BaseModel] | None
    multipart: bool
    """True: multipart/form-data (``bytes`` fields are file uploads); False: a JSON body."""
    model_field: str
    """The request field naming the model: ``model_id``, or ``model`` for llm."""
    default_model: str
    """go-livepeer's model when a request names none."""
    results: Results
    output_unit: OutputUnit
    """A typical output, for showing a price per unit as a price per image, minute, ..."""
    port_base: int
    """First port of the block of 100 its managed runners use (go-livepeer's bases)."""
    batch: bool
    """False for live-video-to-video (a stream, not a request and an answer)."""
    units_rule: UnitsRule = field(repr=False, compare=False, default=_no_units)
    """How :meth:`units` counts; read :meth:`units`, not this."""
    checks: Precheck = field(repr=False, compare=False, default=_no_checks)
    """What :meth:`precheck` runs; read :meth:`precheck`, not this."""

    def units(self, params: BaseModel, fields: Mapping[str, Any]) -> int:
        """Billing units of a request before it runs, as go-livepeer counts them: pixels for images and
        video, ``max_tokens`` for llm, ``1000 × characters`` for text-to-speech. audio-to-text is 0 here;
        the answer's duration sets its units (:func:`audio_units`). ``fields`` are the request's raw body
        fields; an uploaded ``image`` there is opened to read its size (400 when it is not an image)."""
        return self.units_rule(params, fields)

    def precheck(self, params: BaseModel, fields: Mapping[str, Any]) -> None:
        """The cheap checks the runner applies before it queues a request (sizes divisible by 8, seed
        range, an empty prompt, an unreadable image, ...) and the pipeline's :attr:`limits` (steps, sizes,
        counts, text lengths, uploads): BadRequestError with the runner's message, naming the limit and the
        value for a value over one (PayloadTooLargeError, 413, for an upload). ``params`` is a validated
        instance of :attr:`params`; no model is loaded, no pixels decoded."""
        del fields  # the params carry every field a check reads; kept for symmetry with units()
        self.checks(params, self.limits)

    @property
    def limits(self) -> Limits:
        """What one request may ask of this pipeline on this node: the defaults of
        :data:`lpnode.schemas.limits.DEFAULTS`, changed by the operator's ``LPNODE_LIMITS``."""
        return limits_for(self.name)

    @property
    def file_field(self) -> str | None:
        """The multipart field that holds the uploaded file (``image``, ``audio``); None without one."""
        if self.params is None or not self.multipart:
            return None
        return next((n for n, f in self.params.model_fields.items() if f.annotation is bytes), None)

    @property
    def asks_inline(self) -> bool:
        """A gateway asks the orchestrator for ``data:`` URLs inline (it stores the files itself)."""
        return self.results is Results.MEDIA

    @property
    def rehosted(self) -> bool:
        """The answer carries files the gateway stores and serves under its own URLs."""
        return self.results in (Results.MEDIA, Results.VIDEO)


# -- billing units --------------------------------------------------------------------------------------
def _generated_pixels(params: BaseModel, frames: int, counted: bool) -> int:
    # Attributes, not model_dump(): an orchestrator builds ``params`` from raw form fields without validation
    # (model_construct), and serializing those strings as ints would warn.
    count = max(1, int(getattr(params, "num_images_per_prompt", None) or 1)) if counted else 1
    height = int(getattr(params, "height", None) or 576)
    return height * int(getattr(params, "width", None) or 1024) * frames * count


def _text_to_image_units(params: BaseModel, fields: Mapping[str, Any]) -> int:
    return _generated_pixels(params, 1, counted=True)


def _image_to_video_units(params: BaseModel, fields: Mapping[str, Any]) -> int:
    return _generated_pixels(params, 25, counted=False)  # go-livepeer bills 25 frames


def _uploaded_image_units(counted: bool) -> UnitsRule:
    """Pixels of the uploaded image (times ``num_images_per_prompt`` when ``counted``); 0 without one."""

    def rule(params: BaseModel, fields: Mapping[str, Any]) -> int:
        image = fields.get("image")
        if not isinstance(image, bytes):
            return 0
        # precheck() has applied the pipeline's limits; here only the size is read (400 if not an image).
        with checks.open_image(image, max_pixels=None) as opened:
            width, height = opened.size
        count = int(fields.get("num_images_per_prompt") or 1) if counted else 1
        return width * height * max(1, count)

    return rule


def _llm_units(params: BaseModel, fields: Mapping[str, Any]) -> int:
    return int(getattr(params, "max_tokens", 0) or 0)


def _text_to_speech_units(params: BaseModel, fields: Mapping[str, Any]) -> int:
    return 1000 * len(str(getattr(params, "text", "")))


def audio_units(seconds_header: str | None) -> int:
    """audio-to-text units from the runner's ``X-Audio-Duration`` (go-livepeer: whole seconds × 1000)."""
    try:
        return int(float(seconds_header or 0)) * 1000
    except ValueError:
        return 0


# -- the table ------------------------------------------------------------------------------------------
_MEGAPIXEL_IMAGE = OutputUnit("1024×1024 image", 1024 * 1024)

_SPECS = (
    PipelineSpec(
        name="text-to-image",
        capability=27,
        params=TextToImageParams,
        response=ImageResponse,
        multipart=False,
        model_field="model_id",
        default_model="stabilityai/sdxl-turbo",
        results=Results.MEDIA,
        output_unit=_MEGAPIXEL_IMAGE,
        port_base=8000,
        batch=True,
        units_rule=_text_to_image_units,
        checks=checks.check_text_to_image,
    ),
    PipelineSpec(
        name="image-to-image",
        capability=28,
        params=ImageToImageForm,
        response=ImageResponse,
        multipart=True,
        model_field="model_id",
        default_model="stabilityai/sdxl-turbo",
        results=Results.MEDIA,
        output_unit=_MEGAPIXEL_IMAGE,
        port_base=8100,
        batch=True,
        units_rule=_uploaded_image_units(counted=True),
        checks=checks.check_image_to_image,
    ),
    PipelineSpec(
        name="image-to-video",
        capability=29,
        params=ImageToVideoForm,
        response=VideoResponse,
        multipart=True,
        model_field="model_id",
        default_model="stabilityai/stable-video-diffusion-img2vid-xt",
        results=Results.VIDEO,
        output_unit=OutputUnit("1024×576 video (25 frames)", 1024 * 576 * 25),
        port_base=8200,
        batch=True,
        units_rule=_image_to_video_units,
        checks=checks.check_image_to_video,
    ),
    PipelineSpec(
        name="upscale",
        capability=30,
        params=UpscaleForm,
        response=ImageResponse,
        multipart=True,
        model_field="model_id",
        default_model="stabilityai/stable-diffusion-x4-upscaler",
        results=Results.MEDIA,
        output_unit=OutputUnit("512×512 input image", 512 * 512),
        port_base=8300,
        batch=True,
        units_rule=_uploaded_image_units(counted=False),
        checks=checks.check_upscale,
    ),
    PipelineSpec(
        name="audio-to-text",
        capability=31,
        params=AudioToTextForm,
        response=TextResponse,
        multipart=True,
        model_field="model_id",
        default_model="openai/whisper-large-v3",
        results=Results.JSON,
        output_unit=OutputUnit("audio minute", 60 * 1000),
        port_base=8400,
        batch=True,
        units_rule=_no_units,  # set by the answer's duration: audio_units()
        checks=checks.check_audio_to_text,
    ),
    PipelineSpec(
        name="segment-anything-2",
        capability=32,
        params=SegmentAnything2Form,
        response=MasksResponse,
        multipart=True,
        model_field="model_id",
        default_model="facebook/sam2-hiera-large",
        results=Results.JSON,
        output_unit=_MEGAPIXEL_IMAGE,
        port_base=8600,
        batch=True,
        units_rule=_uploaded_image_units(counted=False),
        checks=checks.check_segment_anything_2,
    ),
    PipelineSpec(
        name="llm",
        capability=33,
        params=LLMRequest,
        response=LLMResponse,
        multipart=False,
        model_field="model",
        default_model="meta-llama/Meta-Llama-3.1-8B-Instruct",
        results=Results.JSON,
        output_unit=OutputUnit("1k tokens", 1000),
        port_base=8500,
        batch=True,
        units_rule=_llm_units,
        checks=checks.check_llm,
    ),
    PipelineSpec(
        name="image-to-text",
        capability=34,
        params=ImageToTextForm,
        response=ImageToTextResponse,
        multipart=True,
        model_field="model_id",
        default_model="Salesforce/blip-image-captioning-large",
        results=Results.JSON,
        output_unit=_MEGAPIXEL_IMAGE,
        port_base=8700,
        batch=True,
        units_rule=_uploaded_image_units(counted=False),
        checks=checks.check_image_to_text,
    ),
    PipelineSpec(
        name="live-video-to-video",
        capability=35,
        params=None,
        response=None,
        multipart=False,
        model_field="model_id",
        default_model="noop",
        results=Results.JSON,
        output_unit=OutputUnit("minute of 720p30 video", 1280 * 720 * 30 * 60),
        port_base=8900,
        batch=False,
    ),
    PipelineSpec(
        name="text-to-speech",
        capability=36,
        params=TextToSpeechParams,
        response=AudioResponse,
        multipart=False,
        model_field="model_id",
        default_model="parler-tts/parler-tts-large-v1",
        results=Results.MEDIA,
        output_unit=OutputUnit("1k characters", 1000 * 1000),
        port_base=8800,
        batch=True,
        units_rule=_text_to_speech_units,
        checks=checks.check_text_to_speech,
    ),
)

PIPELINES: Mapping[str, PipelineSpec] = MappingProxyType({s.name: s for s in _SPECS})
"""Every network pipeline, live-video-to-video included, in upstream route order."""
NETWORK_PIPELINES: tuple[str, ...] = tuple(PIPELINES)
BATCH_PIPELINES: tuple[str, ...] = tuple(s.name for s in _SPECS if s.batch)
FALLBACK_PORT_BASE = 9000
"""Port block of a pipeline that has none of its own (custom pipelines)."""


def spec(name: str) -> PipelineSpec:
    """The spec of network pipeline ``name``; ConfigError naming the known pipelines when there is none."""
    found = PIPELINES.get(name)
    if found is None:
        raise ConfigError(f"unknown pipeline {name!r}; use one of: {', '.join(PIPELINES)}")
    return found


def model_field(pipeline: str) -> str:
    """The request field naming the model: ``model`` for llm, ``model_id`` for every other pipeline (custom
    and unknown names included)."""
    found = PIPELINES.get(pipeline)
    return found.model_field if found is not None else "model_id"


__all__ = [
    "BATCH_PIPELINES",
    "FALLBACK_PORT_BASE",
    "NETWORK_PIPELINES",
    "PIPELINES",
    "OutputUnit",
    "PipelineSpec",
    "Results",
    "audio_units",
    "model_field",
    "spec",
]
