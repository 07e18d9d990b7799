"""Image-to-video results: a runner's frames encoded as one MP4.

The video is H.264 (libx264) when PyAV has it, else MPEG-4 part 2, in yuv420p at the size of the first frame
rounded down to even numbers (a 1-pixel side is padded to 2); other frames are resized to it. The ``moov`` box is
moved in front of the media data (FFmpeg's ``movflags=+faststart``, which needs a real file, so the video is
written to a temporary file first), so players can start before the whole file has arrived.
"""

from __future__ import annotations

import functools
import io
import tempfile
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
from PIL import Image

DEFAULT_FPS = 7
DEFAULT_BITRATE = 6_000_000


@functools.cache
def video_encoder() -> Literal["libx264", "mpeg4"]:
    """The encoder ``encode_mp4`` uses here: ``libx264`` if this PyAV build has it, else ``mpeg4``."""
    try:
        av.codec.Codec("libx264", "w")
    except av.codec.codec.UnknownCodecError:
        return "mpeg4"
    return "libx264"


def encode_mp4(
    frames: Sequence[bytes | Image.Image], *, fps: int = DEFAULT_FPS, bitrate: int = DEFAULT_BITRATE
) -> bytes:
    """Encode ``frames`` (encoded images or PIL images), shown ``fps`` per second, as MP4 bytes.

    Raises :class:`ValueError` for no frames, a frame that is not a readable image or ``fps`` below 1.
    """
    if not frames:
        raise ValueError("no frames to encode: image-to-video needs at least one frame")
    if fps < 1:
        raise ValueError(f"fps must be at least 1, got {fps}")
    first = _image(frames[0], 0)
    size = (max(2, first.width - first.width % 2), max(2, first.height - first.height % 2))
    with tempfile.TemporaryDirectory(prefix="lpnode-mp4-") as folder:
        path = Path(folder) / "video.mp4"
        _write(path, frames, first, size, fps, bitrate)
        return path.read_bytes()


def _write(
    path: Path, frames: Sequence[bytes | Image.Image], first: Image.Image, size: tuple[int, int], fps: int, bitrate: int
) -> None:
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream(video_encoder(), rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = bitrate
        for index, frame in enumerate(frames):
            image = first if index == 0 else _image(frame, index)
            if image.size != first.size:
                image = image.resize(size)
            elif image.size != size:
                canvas = Image.new("RGB", size)
                canvas.paste(image)  # crops the odd row/column or pads a 1-pixel side
                image = canvas
            video_frame = av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24").reformat(format="yuv420p")
            video_frame.pts = index
            video_frame.time_base = Fraction(1, fps)
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode(None))


def _image(frame: bytes | Image.Image, index: int) -> Image.Image:
    if isinstance(frame, Image.Image):
        return frame.convert("RGB")
    try:
        with Image.open(io.BytesIO(frame)) as image:
            return image.convert("RGB")
    except (OSError, Image.DecompressionBombError) as exc:
        raise ValueError(f"frame {index} is not a readable image: {exc}") from None
