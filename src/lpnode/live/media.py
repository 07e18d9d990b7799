"""Live media: MPEG-TS/H.264 in, RGB frames for the pipeline, MPEG-TS/H.264 segments out (PyAV).

- :class:`ByteStream`: a blocking, thread-safe file object that segments' bytes are fed into while they
  arrive, so decoding starts before a segment has finished arriving.
- :class:`Decoder`: demuxes and decodes one MPEG-TS stream (the input segments, back to back). Video is
  capped at ``max_fps`` (24) by PTS, resized keeping its aspect ratio and centre-cropped to the stream's
  width × height, and handed on as (H, W, 3) uint8 RGB with its PTS; audio is resampled to 48 kHz mono.
- :class:`SegmentEncoder`: encodes frames with libx264 (``preset=superfast``, ``tune=zerolatency``, no
  B-frames, forced IDR) and audio with libopus, and cuts an MPEG-TS segment at an IDR every
  ``gop_seconds`` (2) of PTS. The encoders live for the whole stream; each segment is a fresh MPEG-TS
  container holding its packets, so every segment starts with an IDR and plays on its own. Video PTS
  are the input's, in 1/90000 (frames whose PTS does not increase are dropped).
- Helpers for tools and tests: :func:`encode_file_segments` cuts a video file into MPEG-TS segments
  (re-encoded, one per ``gop_seconds``) and :func:`decode_segments` decodes segments back into frames.

Nothing here touches asyncio: the runner calls these from threads.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np

from lpnode.errors import ConfigError, LpnodeError

VIDEO_TIME_BASE = Fraction(1, 90000)
AUDIO_RATE = 48000
AUDIO_TIME_BASE = Fraction(1, AUDIO_RATE)
MAX_FRAMERATE = 24.0
"""ai-runner's cap on the frames per second a stream's pipeline sees; ``LPNODE_LIVE_MAX_FPS`` changes it."""
MAX_FPS_VAR = "LPNODE_LIVE_MAX_FPS"
GOP_SECONDS = 2.0
MAX_DECODE_ERRORS = 10
MAX_AUDIO_BACKLOG = 100
"""Audio frames held while video lags behind; older ones are dropped."""
X264_OPTIONS = {"preset": "superfast", "tune": "zerolatency", "forced-idr": "1"}
DEMUX_OPTIONS = {"analyzeduration": "1000000", "fpsprobesize": "0"}
"""Probe briefly: MPEG-TS declares its streams up front, and estimating the frame rate (FFmpeg reads ~20
frames for it by default) would hold the first frames back and then release them in a burst."""


class MediaError(LpnodeError):
    """The input cannot be read as MPEG-TS with a video stream, or decoding failed too often."""


# -- input --------------------------------------------------------------------------------------


class ByteStream:
    """Bytes fed by one thread, read by another (PyAV) as a file. ``read`` blocks until data or EOF."""

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.fed = 0

    def feed(self, data: bytes) -> None:
        if not data:
            return
        with self._cond:
            self._chunks.append(bytes(data))
            self.fed += len(data)
            self._cond.notify_all()

    def close(self) -> None:
        """End of input: ``read`` returns what is left, then ``b""``."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def read(self, size: int = -1) -> bytes:
        with self._cond:
            while not self._chunks and not self._closed:
                self._cond.wait()
            if not self._chunks:
                return b""
            chunk = self._chunks.popleft()
            if 0 < size < len(chunk):
                self._chunks.appendleft(chunk[size:])
                chunk = chunk[:size]
            return chunk


@dataclass
class DecodedFrame:
    """An RGB frame ((H, W, 3) uint8) and its PTS in ``time_base``."""

    array: np.ndarray
    pts: int
    time_base: Fraction

    @property
    def seconds(self) -> float:
        return float(self.pts * self.time_base)


def fit_frame(frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
    """``frame`` as (height, width, 3) RGB: scaled to cover the size keeping its aspect, centre-cropped."""
    scale = max(width / frame.width, height / frame.height)
    scaled_w = max(width, round(frame.width * scale))
    scaled_h = max(height, round(frame.height * scale))
    rgb = frame.reformat(width=scaled_w, height=scaled_h, format="rgb24").to_ndarray()
    left = (scaled_w - width) // 2
    top = (scaled_h - height) // 2
    return np.ascontiguousarray(rgb[top : top + height, left : left + width])


def max_framerate(env: Mapping[str, str] | None = None) -> float:
    """The frame-rate cap: ``LPNODE_LIVE_MAX_FPS`` (1 to 120) or ai-runner's 24."""
    text = (os.environ if env is None else env).get(MAX_FPS_VAR, "").strip()
    if not text:
        return MAX_FRAMERATE
    try:
        fps = float(text)
    except ValueError:
        fps = 0.0
    if not 1 <= fps <= 120:
        raise ConfigError(f"{MAX_FPS_VAR} must be a number of frames per second from 1 to 120, got {text!r}")
    return fps


class FrameRateCap:
    """Keeps at most ``fps`` frames per second of PTS: a frame earlier than the next slot is dropped; a
    late frame is kept and the slots restart from it."""

    def __init__(self, fps: float = MAX_FRAMERATE) -> None:
        self.interval = 1.0 / fps
        self._next: float | None = None

    def keep(self, seconds: float) -> bool:
        slack = self.interval * 0.05  # PTS rounding
        if self._next is not None and seconds < self._next - slack:
            return False
        if self._next is None or seconds - self._next >= self.interval:
            self._next = seconds + self.interval
        else:
            self._next += self.interval
        return True


class Decoder:
    """Decodes one MPEG-TS stream read from a file object; call :meth:`run` in a thread."""

    def __init__(
        self,
        width: int,
        height: int,
        on_video: Callable[[DecodedFrame], None],
        on_audio: Callable[[av.AudioFrame], None] | None = None,
        max_fps: float = MAX_FRAMERATE,
    ) -> None:
        self.width = width
        self.height = height
        self.on_video = on_video
        self.on_audio = on_audio
        self.cap = FrameRateCap(max_fps)
        self.frames = 0
        self.capped = 0
        self.errors = 0

    def run(self, source: Any) -> None:
        """Decode until ``source`` ends. Raises :class:`MediaError` if it is not MPEG-TS with video."""
        try:
            container = av.open(source, mode="r", format="mpegts", options=DEMUX_OPTIONS)
        except (av.FFmpegError, OSError) as exc:
            raise MediaError(f"the input is not a readable MPEG-TS stream: {exc}") from None
        with container:
            video = container.streams.video[0] if container.streams.video else None
            if video is None:
                raise MediaError("the input has no video stream")
            audio = container.streams.audio[0] if container.streams.audio and self.on_audio else None
            resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_RATE) if audio else None
            streams = [s for s in (video, audio) if s is not None]
            for packet in container.demux(*streams):
                try:
                    decoded = packet.decode()
                except av.FFmpegError:
                    self.errors += 1
                    if self.errors > MAX_DECODE_ERRORS:
                        raise MediaError(f"the input failed to decode {self.errors} times") from None
                    continue
                for frame in decoded:
                    if isinstance(frame, av.VideoFrame):
                        self._video(frame)
                    elif isinstance(frame, av.AudioFrame) and resampler is not None and self.on_audio:
                        for chunk in resampler.resample(frame):
                            self.on_audio(_stamped(chunk, frame))

    def _video(self, frame: av.VideoFrame) -> None:
        if frame.pts is None or frame.time_base is None:
            return
        if not self.cap.keep(float(frame.pts * frame.time_base)):
            self.capped += 1
            return
        self.frames += 1
        self.on_video(DecodedFrame(fit_frame(frame, self.width, self.height), frame.pts, frame.time_base))


def _stamped(chunk: av.AudioFrame, source: av.AudioFrame) -> av.AudioFrame:
    """Carry the source frame's time, in seconds, on the resampled chunk (``chunk.time`` is unreliable
    across a resampler)."""
    if source.pts is not None and source.time_base is not None:
        chunk.opaque = float(source.pts * source.time_base)
    return chunk


# -- output -------------------------------------------------------------------------------------


class SegmentSink(Protocol):
    """Where encoded segments go: ``start`` a segment, ``write`` its bytes as they come, ``end`` it."""

    def start(self) -> None: ...

    def write(self, data: bytes) -> None: ...

    def end(self) -> None: ...


class _SinkFile:
    """The file object a segment's MPEG-TS container writes to."""

    def __init__(self, sink: SegmentSink) -> None:
        self.sink = sink

    def write(self, data: bytes) -> int:
        self.sink.write(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


class SegmentEncoder:
    """Encodes frames into MPEG-TS segments of ``gop_seconds`` each, cut at IDRs (see module docstring).
    Not thread-safe: one thread feeds it."""

    def __init__(
        self, width: int, height: int, sink: SegmentSink, gop_seconds: float = GOP_SECONDS, fps: float = 24.0
    ) -> None:
        self.width = width
        self.height = height
        self.sink = sink
        self.gop = round(gop_seconds / VIDEO_TIME_BASE)
        self.video = av.CodecContext.create("libx264", "w")
        self.video.width = width
        self.video.height = height
        self.video.pix_fmt = "yuv420p"
        self.video.time_base = VIDEO_TIME_BASE
        self.video.framerate = Fraction(fps).limit_denominator(1001)
        self.video.max_b_frames = 0
        self.video.gop_size = 100_000  # IDRs only where a segment starts
        self.video.options = dict(X264_OPTIONS)
        self.video.open()
        self.audio: Any = None
        self._audio_pts: int | None = None
        self._audio_backlog: deque[av.AudioFrame] = deque(maxlen=MAX_AUDIO_BACKLOG)
        self._container: Any = None
        self._streams: dict[str, Any] = {}
        self._segment_start: int | None = None
        self._last_pts: int | None = None
        self.segments = 0
        self.frames = 0
        self.dropped = 0

    def add_video(self, array: np.ndarray, pts: int) -> None:
        """Encode an (H, W, 3) uint8 RGB frame at ``pts`` (1/90000); a new segment starts when due."""
        if self._last_pts is not None and pts <= self._last_pts:
            self.dropped += 1
            return
        self._last_pts = pts
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
        if frame.width != self.width or frame.height != self.height:
            frame = frame.reformat(width=self.width, height=self.height)
        frame = frame.reformat(format="yuv420p")
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE
        if self._segment_start is None or pts - self._segment_start >= self.gop:
            self._new_segment(pts)
            frame.pict_type = av.video.frame.PictureType.I
        self._mux_audio_until(pts)
        for packet in self.video.encode(frame):
            self._mux(packet, "video")
        self.frames += 1

    def add_audio(self, frame: av.AudioFrame) -> None:
        """Queue a 48 kHz mono s16 frame; it is encoded once video has reached its time."""
        if self.audio is None:
            self.audio = av.CodecContext.create("libopus", "w")
            self.audio.sample_rate = AUDIO_RATE
            self.audio.layout = "mono"
            self.audio.format = "s16"
            self.audio.time_base = AUDIO_TIME_BASE
            self.audio.open()
        start = frame.opaque if isinstance(frame.opaque, float) else None
        expected = self._audio_pts
        if start is not None and (expected is None or abs(start * AUDIO_RATE - expected) > AUDIO_RATE // 10):
            expected = round(start * AUDIO_RATE)  # first frame, or a jump in the input: follow the input
        if expected is None:
            return
        frame.pts = expected
        frame.time_base = AUDIO_TIME_BASE
        frame.opaque = None
        self._audio_pts = expected + frame.samples
        self._audio_backlog.append(frame)

    def close(self) -> None:
        """Flush the encoders and end the segment being written."""
        if self._container is not None:
            for packet in self.video.encode(None):
                self._mux(packet, "video")
            self._end_segment()

    def _mux_audio_until(self, video_pts: int) -> None:
        limit = float(video_pts * VIDEO_TIME_BASE)
        while self._audio_backlog and float((self._audio_backlog[0].pts or 0) * AUDIO_TIME_BASE) <= limit:
            frame = self._audio_backlog.popleft()
            for packet in self.audio.encode(frame):
                if packet.pts is not None and packet.pts >= 0:  # skip the priming packet (negative PTS)
                    self._mux(packet, "audio")

    def _mux(self, packet: Any, kind: str) -> None:
        stream = self._streams.get(kind)
        if stream is None or self._container is None:
            return
        packet.stream = stream
        self._container.mux(packet)

    def _new_segment(self, pts: int) -> None:
        self._end_segment()
        self.sink.start()
        container = av.open(_SinkFile(self.sink), mode="w", format="mpegts", options={"flush_packets": "1"})
        video = container.add_mux_stream("h264", width=self.width, height=self.height)
        video.time_base = VIDEO_TIME_BASE
        self._streams = {"video": video}
        if self.audio is not None:
            self._streams["audio"] = container.add_mux_stream("opus", rate=AUDIO_RATE)
        self._container = container
        self._segment_start = pts
        self.segments += 1

    def _end_segment(self) -> None:
        if self._container is None:
            return
        container, self._container = self._container, None
        container.close()
        self.sink.end()


# -- helpers for tools and tests ----------------------------------------------------------------


class _Collect:
    def __init__(self) -> None:
        self.done: list[bytes] = []
        self._parts: list[bytes] = []

    def start(self) -> None:
        self._parts = []

    def write(self, data: bytes) -> None:
        self._parts.append(data)

    def end(self) -> None:
        self.done.append(b"".join(self._parts))


def encode_file_segments(
    path: str | Path, width: int | None = None, height: int | None = None, gop_seconds: float = 1.0
) -> Iterator[bytes]:
    """The video file at ``path`` as complete MPEG-TS segments (H.264 + Opus), each starting at an IDR and
    ``gop_seconds`` long; the video is resized and centre-cropped to width × height when given (both
    made even). Raises :class:`MediaError` for a file without video."""
    collect = _Collect()
    encoder: SegmentEncoder | None = None
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(f"{path}: not a readable video file: {exc}") from None
    with container:
        if not container.streams.video:
            raise MediaError(f"{path}: no video stream")
        stream = container.streams.video[0]
        w = (width or stream.codec_context.width) // 2 * 2
        h = (height or stream.codec_context.height) // 2 * 2
        rate = float(stream.average_rate or 24)
        encoder = SegmentEncoder(w, h, collect, gop_seconds, fps=rate)
        audio = container.streams.audio[0] if container.streams.audio else None
        resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_RATE) if audio else None
        for frame in container.decode(*[s for s in (stream, audio) if s is not None]):
            if isinstance(frame, av.VideoFrame) and frame.pts is not None and frame.time_base is not None:
                pts = round(frame.pts * frame.time_base / VIDEO_TIME_BASE)
                encoder.add_video(fit_frame(frame, w, h), pts)
            elif isinstance(frame, av.AudioFrame) and resampler is not None:
                for chunk in resampler.resample(frame):
                    encoder.add_audio(_stamped(chunk, frame))
            yield from collect.done
            collect.done.clear()
        encoder.close()
    yield from collect.done


def decode_segments(segments: Iterable[bytes]) -> Iterator[DecodedFrame]:
    """The video frames of MPEG-TS segments played back to back, as RGB with their PTS."""
    stream = ByteStream()
    for segment in segments:
        stream.feed(segment)
    stream.close()
    out: list[DecodedFrame] = []
    try:
        container = av.open(stream, mode="r", format="mpegts", options=DEMUX_OPTIONS)
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(f"not a readable MPEG-TS stream: {exc}") from None
    with container:
        if not container.streams.video:
            return
        for frame in container.decode(video=0):
            if frame.pts is not None and frame.time_base is not None:
                out.append(DecodedFrame(frame.to_ndarray(format="rgb24"), frame.pts, frame.time_base))
    yield from out
