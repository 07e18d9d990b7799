"""Audio in and out of pipelines: uploaded bytes → mono float32 samples, samples → WAV data URLs.

Decoding goes through PyAV (FFmpeg's demuxers and decoders, no ``ffmpeg`` binary needed), so any
container and codec FFmpeg reads works: WAV, MP3, FLAC, Ogg/Opus, M4A/MP4 (AAC), WebM, and the audio
track of a video file. Decoding stops as soon as the audio passes ``max_seconds``, so a small upload
that expands to hours of audio never fills memory.
"""

from __future__ import annotations

import base64
import io
import wave
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lpnode.errors import BadRequestError, UnsupportedMediaError
from lpnode.schemas.checks import audio_too_long

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

UNSUPPORTED_AUDIO = "Unsupported audio format or malformed file."
_FORMATS_HINT = "Send WAV, MP3, FLAC, Ogg/Opus, M4A/MP4 (AAC) or WebM audio."
# Nested opens (concat lists, playlists) name further files or URLs; "none" matches no protocol, so an
# upload can never make FFmpeg read a local file or fetch from the network.
_CONTAINER_OPTIONS = {"protocol_whitelist": "none"}


@dataclass(frozen=True)
class DecodedAudio:
    """Mono float32 samples in [-1, 1] at ``sampling_rate``."""

    samples: npt.NDArray[np.float32]
    sampling_rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sampling_rate


def _unsupported(reason: str) -> UnsupportedMediaError:
    return UnsupportedMediaError(f"{UNSUPPORTED_AUDIO.rstrip('.')}: {reason}. {_FORMATS_HINT}")


def decode_audio(data: bytes, sampling_rate: int = 16000, max_seconds: float | None = None) -> DecodedAudio:
    """Decode the first audio stream of ``data`` to mono float32 at ``sampling_rate``.

    UnsupportedMediaError (415) when the bytes are not audio FFmpeg can read; BadRequestError (400)
    when the audio is longer than ``max_seconds`` (decoding stops there) or has no samples.
    """
    import av

    if not data:
        raise _unsupported("the upload is empty")
    try:
        with av.open(io.BytesIO(data), mode="r", container_options=_CONTAINER_OPTIONS) as container:
            if not container.streams.audio:
                raise _unsupported("it has no audio track")
            stream = container.streams.audio[0]
            if max_seconds is not None:
                declared = _declared_seconds(stream, container)
                if declared is not None and declared > max_seconds + 1.0:
                    raise audio_too_long(max_seconds, declared)
            samples = _decode_stream(container, stream, sampling_rate, max_seconds)
    except av.FFmpegError as exc:
        raise _unsupported(f"FFmpeg could not read it ({exc.strerror or type(exc).__name__})") from None
    if len(samples) == 0:
        raise BadRequestError("The uploaded audio has no samples; send a file that contains sound.")
    return DecodedAudio(samples, sampling_rate)


def _declared_seconds(stream: Any, container: Any) -> float | None:
    """The length the container header claims, if any (it may be missing or wrong)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / 1_000_000  # AV_TIME_BASE
    return None


def _decode_stream(container: Any, stream: Any, sampling_rate: int, max_seconds: float | None) -> Any:
    import av
    import numpy as np

    limit = None if max_seconds is None else int(max_seconds * sampling_rate)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sampling_rate)
    chunks: list[npt.NDArray[np.float32]] = []
    total = 0

    def take(frames: list[Any]) -> None:
        nonlocal total
        for out in frames:
            chunk = out.to_ndarray().reshape(-1)
            chunks.append(chunk)
            total += len(chunk)
        if limit is not None and total > limit:
            raise audio_too_long(max_seconds or 0.0)

    for frame in container.decode(stream):
        take(resampler.resample(frame))
    take(resampler.resample(None))
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.clip(np.concatenate(chunks), -1.0, 1.0).astype(np.float32, copy=False)


def wav_bytes(samples: npt.NDArray[np.floating[Any]], sampling_rate: int) -> bytes:
    """16-bit PCM mono WAV of float samples in [-1, 1] (values outside are clipped)."""
    import numpy as np

    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sampling_rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def wav_data_url(samples: npt.NDArray[np.floating[Any]], sampling_rate: int) -> str:
    """``data:audio/wav;base64,...`` of :func:`wav_bytes` (the runner API's audio encoding)."""
    return "data:audio/wav;base64," + base64.b64encode(wav_bytes(samples, sampling_rate)).decode("ascii")
