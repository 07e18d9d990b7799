"""How long an audio-to-text upload is, read at the gateway before the job is paid (go-livepeer's gateway asks
ffprobe; here PyAV reads the same FFmpeg demuxers, no binary needed).

A paid audio-to-text job costs ``int(seconds) × 1000`` units (:func:`lpnode.pipelines.audio_units`), so the
gateway must know the length before it sends tickets. The container's declared length is used when it has one;
otherwise the audio is decoded (at most :data:`MAX_SECONDS`) and its samples counted.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncGenerator
from typing import Any

from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from lpnode.errors import BadRequestError

MAX_SECONDS = 4 * 3600.0
DURATION_ERROR = "Unable to calculate duration of file"
"""go-livepeer's words when it cannot tell an upload's length (a 400)."""
_OPTIONS = {"protocol_whitelist": "none"}  # an upload never makes FFmpeg open another file or URL


async def upload_seconds(body: bytes, content_type: str, field: str = "audio") -> float:
    """The length in seconds of the ``field`` upload in a multipart ``body``; :class:`BadRequestError` (400,
    go-livepeer's ``Unable to calculate duration of file``) when there is none or it cannot be read."""
    data = await _upload(body, content_type, field)
    seconds = await asyncio.to_thread(audio_seconds, data)
    if not seconds > 0:
        raise BadRequestError(f"{DURATION_ERROR}: the {field} upload has no length")
    return seconds


def audio_seconds(data: bytes) -> float:
    """Blocking: the length of the first audio stream in ``data`` (0.0 when it has none or FFmpeg cannot read
    it)."""
    import av

    try:
        with av.open(io.BytesIO(data), mode="r", container_options=_OPTIONS) as container:
            if not container.streams.audio:
                return 0.0
            stream = container.streams.audio[0]
            declared = _declared(stream, container)
            if declared is not None and declared > 0:
                return declared
            return _decoded(container, stream)
    except (av.FFmpegError, ValueError):
        return 0.0


def _declared(stream: Any, container: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / 1_000_000  # AV_TIME_BASE
    return None


def _decoded(container: Any, stream: Any) -> float:
    seconds = 0.0
    for frame in container.decode(stream):
        if frame.sample_rate:
            seconds += frame.samples / frame.sample_rate
        if seconds > MAX_SECONDS:
            break
    return seconds


async def _upload(body: bytes, content_type: str, field: str) -> bytes:
    async def chunks() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(Headers({"content-type": content_type}), chunks(), max_part_size=len(body) + 1)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise BadRequestError(f"{DURATION_ERROR}: the multipart body cannot be read: {exc.message}") from None
    try:
        upload = form.get(field)
        if not isinstance(upload, UploadFile):
            raise BadRequestError(f"{DURATION_ERROR}: no {field} upload")
        return await upload.read()
    finally:
        await form.close()
