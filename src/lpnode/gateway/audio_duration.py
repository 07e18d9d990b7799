"""How long an audio-to-text upload is, read at the gateway before the job is paid (go-livepeer's gateway asks
ffprobe; here PyAV reads the same FFmpeg demuxers, no binary needed).

A paid audio-to-text job costs ``int(seconds) × 1000`` units (:func:`lpnode.pipelines.audio_units`), so the
gateway must know the length before it sends tickets. The container's declared length is used when it has one;
otherwise the audio is decoded and its samples counted (:func:`lpnode.audio_length.audio_seconds`, the measure
the orchestrator takes too).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from lpnode.audio_length import audio_seconds
from lpnode.errors import BadRequestError

DURATION_ERROR = "Unable to calculate duration of file"
"""go-livepeer's words when it cannot tell an upload's length (a 400)."""


async def upload_seconds(body: bytes, content_type: str, field: str = "audio") -> float:
    """The length in seconds of the ``field`` upload in a multipart ``body``; :class:`BadRequestError` (400,
    go-livepeer's ``Unable to calculate duration of file``) when there is none or it cannot be read."""
    data = await _upload(body, content_type, field)
    seconds = await asyncio.to_thread(audio_seconds, data)
    if not seconds > 0:
        raise BadRequestError(f"{DURATION_ERROR}: the {field} upload has no length")
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
