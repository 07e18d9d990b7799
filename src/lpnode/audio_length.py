"""How long an audio upload is, read the way both sides of a paid audio-to-text job read it.

A paid audio-to-text job costs ``int(seconds) × 1000`` units (:func:`lpnode.pipelines.audio_units`). The
gateway measures the upload before it pays and the orchestrator measures it again for a job a remote worker
serves (a worker does not report the length), so both must get the same seconds from the same bytes: this is
that one measure. PyAV reads the same FFmpeg demuxers go-livepeer's ffprobe does, no binary needed. The
container's declared length is used when it has one; otherwise the audio is decoded (at most
:data:`MAX_SECONDS`) and its samples counted.
"""

from __future__ import annotations

import io
from typing import Any

MAX_SECONDS = 4 * 3600.0
_OPTIONS = {"protocol_whitelist": "none"}  # an upload never makes FFmpeg open another file or URL


def audio_seconds(data: bytes) -> float:
    """Blocking (run it in a worker thread): the length of the first audio stream in ``data``; 0.0 when it has
    none or FFmpeg cannot read it."""
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
