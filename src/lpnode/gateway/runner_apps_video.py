"""An image-to-video runner app's answer made into what the classic path answers: one MP4 per video.

A runner answers image-to-video with its frames (``{"frames": [[{"url": "data:image/png;...", "seed", "nsfw"},
...]]}``); an orchestrator relaying a classic job encodes them into an MP4 and the gateway stores that. A runner
app's answer reaches the gateway as the runner gave it, so the gateway encodes it here, with the orchestrator's
encoder (:func:`lpnode.mp4.encode_mp4`, at its default frame rate), and answers ``{"images": [{"url", "seed",
"nsfw"}]}`` with the video under its own ``/stream/`` URL.
"""

from __future__ import annotations

import io
import json
from typing import Any

from PIL import Image

from lpnode.errors import PipelineFailedError
from lpnode.results import ResultStore, decode_data_url


def store_videos(answer: bytes, store: ResultStore, request_id: str, public_url: str) -> bytes:
    """The image-to-video answer for the runner's ``answer``, each video saved under ``request_id`` (blocking:
    run it in a thread). Raises :class:`PipelineFailedError` when the answer holds no readable frames."""
    try:
        data = json.loads(answer)
        videos: list[dict[str, Any]] = []
        for frames in data.get("frames") or []:
            if not frames:
                continue
            images = [_image(decode_data_url(frame["url"])[1]) for frame in frames]
            name = store.save(request_id, _mp4(images), "mp4")
            first = frames[0]
            url = f"{public_url}/stream/{request_id}/{name}"
            videos.append({"url": url, "seed": first.get("seed", 0), "nsfw": bool(first.get("nsfw", False))})
    except ImportError:
        raise PipelineFailedError("this gateway cannot encode video: install lpnode[media] (PyAV)") from None
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise PipelineFailedError(f"could not make a video of the runner app's frames: {exc}") from None
    if not videos:
        raise PipelineFailedError("the runner app returned no frames")
    return json.dumps({"images": videos}).encode()


def _image(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def _mp4(images: list[Image.Image]) -> bytes:
    from lpnode.mp4 import encode_mp4  # PyAV and numpy: the media extra (without it, no image-to-video app here)

    return encode_mp4(images)
