"""Media in and out of pipelines: uploaded image bytes → PIL images, PIL images → PNG data URLs."""

from __future__ import annotations

import base64
import io
import warnings

from PIL import Image, ImageFile, UnidentifiedImageError

from lpnode.errors import BadRequestError

# Match the reference runner: accept truncated uploads rather than fail on a missing trailer.
ImageFile.LOAD_TRUNCATED_IMAGES = True
# Refuse images whose decoded size would exhaust memory (about 8k x 8k RGB).
MAX_IMAGE_PIXELS = 8192 * 8192


def decode_image(data: bytes, field: str = "image") -> Image.Image:
    """Decode uploaded bytes into an RGB image; BadRequestError (400) when they are not an image."""
    if not data:
        raise BadRequestError(f"The uploaded {field} is empty.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise BadRequestError(
                    f"The uploaded {field} is {image.width}x{image.height} pixels; "
                    f"the limit is {MAX_IMAGE_PIXELS} pixels."
                )
            image.load()
    except BadRequestError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadRequestError(f"The uploaded {field} is not a readable image: {exc}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise BadRequestError(f"The uploaded {field} could not be decoded: {exc}") from None
    return image.convert("RGB")


def png_data_url(image: Image.Image) -> str:
    """Encode an image as ``data:image/png;base64,...`` (the runner API's image encoding)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
