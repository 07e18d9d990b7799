"""Pydantic models of the Livepeer AI Jobs API, one module per family.

Field names, types, defaults and required sets follow the ai-runner OpenAPI document, so that clients
generated from it (go-livepeer's runner client, the livepeer-ai SDK) talk to lpnode unchanged. The checks
a request must pass beyond its model (sizes, seeds, readable uploads, ...) are in :mod:`lpnode.schemas.checks`.
"""

from lpnode.schemas.audio import AudioResponse, AudioToTextForm, Chunk, TextResponse, TextToSpeechParams
from lpnode.schemas.common import (
    APIError,
    HealthCheck,
    HealthStatus,
    HTTPError,
    Media,
    MediaURL,
)
from lpnode.schemas.hardware import (
    GPUComputeInfo,
    GPUUtilizationInfo,
    HardwareInformation,
    HardwareStats,
    Version,
)
from lpnode.schemas.images import (
    ImageResponse,
    ImageToImageForm,
    ImageToVideoForm,
    TextToImageParams,
    UpscaleForm,
    VideoResponse,
)
from lpnode.schemas.llm import LLMChoice, LLMMessage, LLMRequest, LLMResponse, LLMTokenUsage
from lpnode.schemas.vision import ImageToTextForm, ImageToTextResponse, MasksResponse, SegmentAnything2Form

__all__ = [
    "APIError",
    "AudioResponse",
    "AudioToTextForm",
    "Chunk",
    "GPUComputeInfo",
    "GPUUtilizationInfo",
    "HTTPError",
    "HardwareInformation",
    "HardwareStats",
    "HealthCheck",
    "HealthStatus",
    "ImageResponse",
    "ImageToImageForm",
    "ImageToTextForm",
    "ImageToTextResponse",
    "ImageToVideoForm",
    "LLMChoice",
    "LLMMessage",
    "LLMRequest",
    "LLMResponse",
    "LLMTokenUsage",
    "MasksResponse",
    "Media",
    "MediaURL",
    "SegmentAnything2Form",
    "TextResponse",
    "TextToImageParams",
    "TextToSpeechParams",
    "UpscaleForm",
    "Version",
    "VideoResponse",
]
