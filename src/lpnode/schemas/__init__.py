"""Pydantic models of the Livepeer AI Jobs API, one module per family.

Field names, types, defaults and required sets follow the ai-runner OpenAPI document, so that clients
generated from it (go-livepeer's runner client, the livepeer-ai SDK) talk to lpnode unchanged.
"""

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

__all__ = [
    "APIError",
    "GPUComputeInfo",
    "GPUUtilizationInfo",
    "HTTPError",
    "HardwareInformation",
    "HardwareStats",
    "HealthCheck",
    "HealthStatus",
    "ImageResponse",
    "ImageToImageForm",
    "ImageToVideoForm",
    "Media",
    "MediaURL",
    "TextToImageParams",
    "UpscaleForm",
    "Version",
    "VideoResponse",
]
