"""Media in and out of pipelines: uploaded image bytes → PIL images, PIL images → PNG data URLs."""

from __future__ import annotations

import base64
import io

from PIL import Image, ImageFile, UnidentifiedImageError

from lpnode.errors import BadRequestError
from lpnode.schemas.checks import open_image

# Match the reference runner: accept truncated uploads rather than fail on a missing trailer.
ImageFile.LOAD_TRUNCATED_IMAGES = True


def decode_image(data: bytes, field: str = "image") -> Image.Image:
    """Decode uploaded bytes into an RGB image; BadRequestError (400) when they are not an image.

    The header is read by :func:`lpnode.schemas.checks.open_image`, the check a request passed before it
    was queued (same messages); here the pixels are decoded."""
    image = open_image(data, field)
    try:
        image.load()
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise BadRequestError(f"The uploaded {field} is not a readable image: {exc}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise BadRequestError(f"The uploaded {field} could not be decoded: {exc}") from None
    return image.convert("RGB")


def png_data_url(image: Image.Image) -> str:
    """Encode an image as ``data:image/png;base64,...`` (the runner API's image encoding)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
