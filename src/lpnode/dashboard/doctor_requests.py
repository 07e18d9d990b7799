"""The small real requests ``lpnode doctor`` sends through a gateway: per batch pipeline, the cheapest request
that still runs the model (64×64 images, one step, a couple of tokens).

The body's shape (JSON or multipart, the name of the model field) comes from the pipeline registry; only the
field values are the doctor's own.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from lpnode.pipelines import PIPELINES


@dataclass(frozen=True)
class SmallRequest:
    fields: Mapping[str, Any]
    """The request's fields besides the model (strings for a multipart pipeline)."""
    image_size: int = 64
    """A multipart pipeline's uploaded ``image`` is a square PNG this many pixels wide."""


SMALL_REQUESTS: Mapping[str, SmallRequest] = MappingProxyType(
    {
        "text-to-image": SmallRequest({"prompt": "a lighthouse", "width": 64, "height": 64, "num_inference_steps": 1}),
        "llm": SmallRequest({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
        "image-to-text": SmallRequest({"prompt": "a"}),
        "segment-anything-2": SmallRequest({"point_coords": "[[10,20]]", "point_labels": "[1]"}),
        "text-to-speech": SmallRequest({"text": "Hi."}),
        "upscale": SmallRequest({"prompt": "a", "num_inference_steps": "1"}, image_size=32),
        "image-to-image": SmallRequest({"prompt": "a", "num_inference_steps": "1"}),
    }
)
"""Pipeline -> its small request, in the order the doctor tries them (cheapest first)."""


def small_request(pipeline: str, model_id: str) -> tuple[bytes, dict[str, str]]:
    """``(body, headers)`` of the small request for ``model_id`` of ``pipeline`` (a key of SMALL_REQUESTS)."""
    spec, wanted = PIPELINES[pipeline], SMALL_REQUESTS[pipeline]
    fields = {spec.model_field: model_id, **wanted.fields}
    if spec.multipart:
        return _multipart({k: str(v) for k, v in fields.items()}, _png(wanted.image_size))
    return json.dumps(fields).encode(), {"Content-Type": "application/json"}


def _png(size: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (40, 120, 160)).save(buffer, format="PNG")
    return buffer.getvalue()


def _multipart(fields: dict[str, str], image: bytes) -> tuple[bytes, dict[str, str]]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="doctor.png"\r\n'
        "Content-Type: image/png\r\n\r\n".encode()
        + image
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), {"Content-Type": f"multipart/form-data; boundary={boundary}"}
