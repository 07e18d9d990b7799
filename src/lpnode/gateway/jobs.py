"""The gateway's view of each batch pipeline: its request model, body kind, model field, default model, and
how many billing units a request is (go-livepeer's units, ``research`` §4.3).

Request models are the runner's own schemas, so a request the gateway accepts is one the runner accepts.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image
from pydantic import BaseModel

from lpnode.errors import BadRequestError
from lpnode.schemas.audio import AudioToTextForm, TextToSpeechParams
from lpnode.schemas.images import ImageToImageForm, ImageToVideoForm, TextToImageParams, UpscaleForm
from lpnode.schemas.llm import LLMRequest
from lpnode.schemas.vision import ImageToTextForm, SegmentAnything2Form


@dataclass(frozen=True)
class PipelineRoute:
    name: str
    params: type[BaseModel]
    multipart: bool
    default_model: str  # go-livepeer's default when a request names none
    model_field: str = "model_id"
    rehosted: bool = False  # answers carry result URLs the gateway stores and serves itself


ROUTES: Mapping[str, PipelineRoute] = {
    r.name: r
    for r in (
        PipelineRoute("text-to-image", TextToImageParams, False, "stabilityai/sdxl-turbo", rehosted=True),
        PipelineRoute("image-to-image", ImageToImageForm, True, "stabilityai/sdxl-turbo", rehosted=True),
        PipelineRoute(
            "image-to-video", ImageToVideoForm, True, "stabilityai/stable-video-diffusion-img2vid-xt", rehosted=True
        ),
        PipelineRoute("upscale", UpscaleForm, True, "stabilityai/stable-diffusion-x4-upscaler", rehosted=True),
        PipelineRoute("audio-to-text", AudioToTextForm, True, "openai/whisper-large-v3"),
        PipelineRoute("segment-anything-2", SegmentAnything2Form, True, "facebook/sam2-hiera-large"),
        PipelineRoute("llm", LLMRequest, False, "meta-llama/Meta-Llama-3.1-8B-Instruct", model_field="model"),
        PipelineRoute("image-to-text", ImageToTextForm, True, "Salesforce/blip-image-captioning-large"),
        PipelineRoute("text-to-speech", TextToSpeechParams, False, "parler-tts/parler-tts-large-v1", rehosted=True),
    )
}


def units(route: PipelineRoute, params: BaseModel, fields: Mapping[str, Any]) -> int:
    """Billing units of a request before it runs (audio-to-text: 0 here; the answer's duration sets them)."""
    name = route.name
    if name == "text-to-image":
        p = params.model_dump()
        return (
            int(p.get("height") or 576) * int(p.get("width") or 1024) * max(1, int(p.get("num_images_per_prompt") or 1))
        )
    if name == "image-to-video":
        p = params.model_dump()
        return int(p.get("height") or 576) * int(p.get("width") or 1024) * 25
    if name == "llm":
        return int(getattr(params, "max_tokens", 0) or 0)
    if name == "text-to-speech":
        return 1000 * len(str(getattr(params, "text", "")))
    if name == "audio-to-text":
        return 0
    image = fields.get("image")
    if isinstance(image, bytes):
        try:
            with Image.open(io.BytesIO(image)) as decoded:
                width, height = decoded.size
        except (OSError, Image.DecompressionBombError) as exc:
            raise BadRequestError(f"The uploaded image is not a readable image: {exc}") from None
        count = int(fields.get("num_images_per_prompt") or 1) if name == "image-to-image" else 1
        return width * height * max(1, count)
    return 0


def audio_units(seconds_header: str | None) -> int:
    """audio-to-text units from the runner's ``X-Audio-Duration`` (go-livepeer: whole seconds × 1000)."""
    try:
        return int(float(seconds_header or 0)) * 1000
    except ValueError:
        return 0
