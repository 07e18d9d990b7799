"""One WHEP viewer: a live session's output segments, decoded and sent over a peer connection.

A feeder task reads :meth:`LiveSession.output` (MPEG-TS segments from the live edge on), demuxes and decodes
each segment with PyAV in a worker thread, one frame at a time, and queues the frames for the viewer's
tracks. The tracks (aiortc re-encodes what they return for the codec the viewer chose) release each frame
when its moment comes: a :class:`PlaybackClock` shared by video and audio maps source PTS to wall-clock time,
so both stay in step and play at the source's pace. When the viewer falls behind by more than
``MAX_LATE`` seconds, or the source's timestamps jump (an orchestrator swap restarts them), the clock is
re-anchored at the frame in hand rather than rushing to catch up.

The video queue is small and blocks the feeder (so no more than a few frames are decoded ahead); audio,
when the viewer asked for it, is queued without blocking and the oldest frames are dropped if the viewer's
audio sender stops taking them. Frames go out with fresh timestamps that only move forward.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Callable, Iterator
from fractions import Fraction

import av
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import SessionDescription
from av.stream import Stream

from lpnode.errors import BadRequestError
from lpnode.gateway.live.webrtc import LiveStream
from lpnode.logs import log_event

log = logging.getLogger("lpnode.gateway.whep")
VIDEO_QUEUE = 4
AUDIO_QUEUE = 100
MAX_LATE = 0.5
"""Seconds a frame may be overdue before the clock is re-anchored at it."""
MAX_JUMP = 5.0
"""Seconds of source PTS between two frames that count as a discontinuity."""
STOP_TIMEOUT = 10.0
"""Seconds closing waits for the feeder to finish."""
VIDEO_CLOCK = 90000
AUDIO_RATE = 48000

_Frame = tuple[av.VideoFrame | av.AudioFrame, float]


class PlaybackClock:
    """Maps source PTS (seconds) to ``time.monotonic()`` moments, shared by a viewer's tracks."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._anchor: tuple[float, float] | None = None  # (monotonic time, source seconds)
        self._last_source: float | None = None

    def due(self, source: float) -> float:
        """When the frame at ``source`` seconds should play."""
        now = time.monotonic()
        jumped = self._last_source is not None and abs(source - self._last_source) > MAX_JUMP
        self._last_source = source
        if self._anchor is None or jumped:
            self._anchor = (now, source)
        moment = self._anchor[0] + source - self._anchor[1]
        if moment < now - MAX_LATE:
            self._anchor = (now, source)
            moment = now
        return moment


class _PacedTrack(MediaStreamTrack):
    """A track that returns queued frames at their playback moment, restamped on its own clock."""

    def __init__(self, kind: str, clock: PlaybackClock, queue: asyncio.Queue[_Frame | None], rate: int) -> None:
        super().__init__()
        self.kind = kind
        self._clock = clock
        self._queue = queue
        self._rate = rate
        self._last_pts = -1

    async def recv(self) -> av.VideoFrame | av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        item = await self._queue.get()
        if item is None:
            self.stop()
            raise MediaStreamError
        frame, source = item
        moment = self._clock.due(source)
        delay = moment - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        pts = max(self._last_pts + 1, round((moment - self._clock.started) * self._rate))
        self._last_pts = pts
        frame.pts = pts
        frame.time_base = Fraction(1, self._rate)
        return frame


def decode_segment(data: bytes, resampler: av.AudioResampler | None) -> Iterator[_Frame]:
    """Decoded frames of one MPEG-TS segment with their source PTS in seconds; audio only with a
    ``resampler`` (which turns it into what aiortc's Opus encoder takes: s16 stereo 48 kHz). Frames
    without a timestamp, and undecodable data, are skipped."""
    try:
        with av.open(io.BytesIO(data), "r", format="mpegts") as container:
            streams: list[Stream] = [*container.streams.video[:1]]
            if resampler is not None:
                streams += container.streams.audio[:1]
            if not streams:
                return
            for packet in container.demux(*streams):
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    continue
                for frame in frames:
                    if not isinstance(frame, av.VideoFrame | av.AudioFrame) or frame.pts is None:
                        continue
                    if frame.time_base is None:
                        continue
                    source = float(frame.pts * frame.time_base)
                    if isinstance(frame, av.VideoFrame):
                        yield frame, source
                    elif resampler is not None:
                        for converted in resampler.resample(frame):
                            yield converted, source
    except av.FFmpegError as exc:
        log_event(log, "whep segment not decodable", problem=str(exc))


class WhepViewer:
    """Plays one live session to one WHEP peer connection (see the module docstring)."""

    def __init__(
        self,
        stream: str,
        session: LiveStream,
        pc: RTCPeerConnection,
        *,
        on_end: Callable[[WhepViewer], None] | None = None,
        connect_timeout: float = 30.0,
    ) -> None:
        self.stream = stream
        self.session = session
        self.pc = pc
        self.connect_timeout = connect_timeout
        self.video_frames = 0
        self._on_end = on_end
        self._clock = PlaybackClock()
        self._video: asyncio.Queue[_Frame | None] = asyncio.Queue(VIDEO_QUEUE)
        self._audio: asyncio.Queue[_Frame | None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing: asyncio.Task[None] | None = None
        self.ended = asyncio.Event()
        pc.on("connectionstatechange", self._state_changed)

    def attach(self, pc: RTCPeerConnection) -> None:
        """Add the outgoing tracks for the kinds the offer asks to receive (called during negotiation)."""
        offer = SessionDescription.parse(pc.remoteDescription.sdp)
        kinds = {m.kind for m in offer.media if (m.direction or "sendrecv") in ("recvonly", "sendrecv")}
        if "video" not in kinds:
            raise BadRequestError("the WHEP offer must ask to receive video (a recvonly video m= line)")
        pc.addTrack(_PacedTrack("video", self._clock, self._video, VIDEO_CLOCK))
        if "audio" in kinds:
            self._audio = asyncio.Queue(AUDIO_QUEUE)
            pc.addTrack(_PacedTrack("audio", self._clock, self._audio, AUDIO_RATE))

    def start(self) -> None:
        self._tasks.append(asyncio.ensure_future(self._feed()))
        self._tasks.append(asyncio.ensure_future(self._watch_connect()))
        log_event(log, "whep viewer started", stream=self.stream, audio=self._audio is not None)

    def close(self, reason: str = "closed") -> asyncio.Future[None]:
        """End playback (idempotent) and close the peer connection."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close(reason))
        return asyncio.shield(self._closing)

    def _state_changed(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self.close(f"peer connection {self.pc.connectionState}")

    async def _watch_connect(self) -> None:
        await asyncio.sleep(self.connect_timeout)
        if self.pc.connectionState != "connected":
            self.close(f"not connected after {self.connect_timeout:g} s")

    async def _feed(self) -> None:
        resampler = av.AudioResampler(format="s16", layout="stereo", rate=AUDIO_RATE) if self._audio else None
        reason = "the live stream ended"
        try:
            async for segment in self.session.output():
                frames = decode_segment(segment, resampler)
                while (item := await asyncio.to_thread(next, frames, None)) is not None:
                    if isinstance(item[0], av.VideoFrame):
                        await self._video.put(item)
                        self.video_frames += 1
                    elif self._audio is not None:
                        if self._audio.full():
                            self._audio.get_nowait()
                        self._audio.put_nowait(item)
        except Exception as exc:  # the live session failed under us: end this viewer, say why
            reason = f"output failed: {type(exc).__name__}: {exc}"
        self.close(reason)

    async def _close(self, reason: str) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT)
        await self.pc.close()
        log_event(log, "whep viewer ended", stream=self.stream, reason=reason, frames=self.video_frames)
        self.ended.set()
        if self._on_end is not None:
            self._on_end(self)
