"""An image-to-video runner app's answer made into what the classic path answers: one MP4 per video.

A runner answers image-to-video with its frames (``{"frames": [[{"url": "data:image/png;...", "seed", "nsfw"},
...]]}``); an orchestrator relaying a classic job encodes them into an MP4 and the gateway stores that. A runner
app's answer reaches the gateway as the runner gave it, so the gateway encodes it here, with the orchestrator's
settings (:data:`VIDEO_FPS`, H.264 in yuv420p, ``+faststart``), and answers ``{"images": [{"url", "seed",
"nsfw"}]}`` with the video under its own ``/stream/`` URL.
"""

from __future__ import annotations

import io
import json
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from PIL import Image

from lpnode.errors import PipelineFailedError
from lpnode.results import ResultStore, decode_data_url

if TYPE_CHECKING:
    pass

VIDEO_FPS = 7
BITRATE = 6_000_000


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
    import av  # PyAV and numpy: the media extra (a gateway without it serves no image-to-video app)
    import numpy as np

    first = images[0]
    size = (max(2, first.width - first.width % 2), max(2, first.height - first.height % 2))
    with tempfile.TemporaryDirectory(prefix="lpnode-mp4-") as folder:
        path = Path(folder) / "video.mp4"  # +faststart rewrites the file: it needs a real one
        with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream(_encoder(), rate=VIDEO_FPS)
            stream.width, stream.height = size
            stream.pix_fmt = "yuv420p"
            stream.bit_rate = BITRATE
            for index, image in enumerate(images):
                if image.size != size:
                    canvas = Image.new("RGB", size)
                    canvas.paste(image.resize(size) if image.size != first.size else image)
                    image = canvas
                frame = av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24").reformat(format="yuv420p")
                frame.pts, frame.time_base = index, Fraction(1, VIDEO_FPS)
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        return path.read_bytes()


def _encoder() -> Literal["libx264", "mpeg4"]:
    import av

    try:
        av.codec.Codec("libx264", "w")
    except av.codec.codec.UnknownCodecError:
        return "mpeg4"
    return "libx264"
