"""One WHIP publisher: the tracks of a browser's (or any WHIP client's) peer connection become MPEG-TS
segments handed to a live session.

Each received track is read by its own task. Frames get timestamps in 1/90000 on one clock for both
tracks: a track's RTP timestamps (which aiortc starts at 0) anchored at the wall-clock moment its first frame
arrived, re-anchored if they drift from the wall clock by more than a second. Frames go through a small
bounded queue to one encoder task, which runs :class:`~lpnode.gateway.live.ts_segmenter.TsSegmenter` in a
worker thread; when the encoder falls behind, new frames are dropped rather than queued. Each finished
segment goes to :meth:`LiveSession.publish`.

The ingest ends when the peer connection fails or closes, when the video track ends or sends nothing for
``idle_timeout`` seconds, or when :meth:`WhipIngest.close` is called (``DELETE`` on the WHIP resource). At
the end the last partial segment is published and the live session is stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from fractions import Fraction

import av
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from lpnode.errors import LpnodeError
from lpnode.gateway.live.ts_segmenter import TIME_BASE, TsSegmenter
from lpnode.gateway.live.webrtc import LiveStream, stop_session
from lpnode.logs import log_event

log = logging.getLogger("lpnode.gateway.whip")
QUEUE_FRAMES = 8
STOP_TIMEOUT = 10.0
"""Seconds closing waits for the track readers and the encoder to finish."""
DRIFT_TICKS = 90000
"""How far (1/90000) a track's RTP clock may drift from the wall clock before it is re-anchored."""

_Item = tuple[str, av.VideoFrame | av.AudioFrame, int] | None


class _Timeline:
    """Maps one track's frame timestamps onto the ingest's 1/90000 clock."""

    def __init__(self, started: float) -> None:
        self._started = started
        self._anchor: tuple[int, int] | None = None  # (clock ticks, frame ticks) at the anchor
        self._last = -1

    def ticks(self, frame: av.VideoFrame | av.AudioFrame) -> int:
        wall = round((time.monotonic() - self._started) / TIME_BASE)
        if frame.pts is None or frame.time_base is None:
            own = wall
        else:
            own = round(frame.pts * Fraction(frame.time_base) / TIME_BASE)
        if self._anchor is None or abs(self._anchor[0] + own - self._anchor[1] - wall) > DRIFT_TICKS:
            self._anchor = (wall, own)
        ticks = max(self._last + 1, self._anchor[0] + own - self._anchor[1])
        self._last = ticks
        return ticks


class WhipIngest:
    """Feeds one live session from one WHIP peer connection (see the module docstring)."""

    def __init__(
        self,
        stream: str,
        session: LiveStream,
        pc: RTCPeerConnection,
        *,
        on_end: Callable[[WhipIngest], None] | None = None,
        idle_timeout: float = 30.0,
    ) -> None:
        self.stream = stream
        self.session = session
        self.pc = pc
        self.idle_timeout = idle_timeout
        self.segments_published = 0
        self.frames_dropped = 0
        self._on_end = on_end
        self._tracks: list[MediaStreamTrack] = []
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(QUEUE_FRAMES)
        self._tasks: list[asyncio.Task[None]] = []
        self._closing: asyncio.Task[None] | None = None
        self._started = time.monotonic()
        self.ended = asyncio.Event()
        pc.on("track", self._tracks.append)
        pc.on("connectionstatechange", self._state_changed)

    @property
    def has_video(self) -> bool:
        return any(track.kind == "video" for track in self._tracks)

    def start(self) -> None:
        """Start reading the tracks the offer announced (call after the answer is made)."""
        audio = any(track.kind == "audio" for track in self._tracks)
        segmenter = TsSegmenter(audio=audio)
        self._tasks.append(asyncio.ensure_future(self._encode(segmenter)))
        for track in self._tracks:
            self._tasks.append(asyncio.ensure_future(self._read(track)))
        log_event(log, "whip ingest started", stream=self.stream, audio=audio)

    def close(self, reason: str = "closed") -> Awaitable[None]:
        """End the ingest (idempotent): publish the last segment, close the peer, stop the live session."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close(reason))
        return asyncio.shield(self._closing)

    def _state_changed(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self.close(f"peer connection {self.pc.connectionState}")

    async def _read(self, track: MediaStreamTrack) -> None:
        timeline = _Timeline(self._started)
        reason = f"{track.kind} track ended"
        try:
            # Checked as well as cancelled: Python 3.11's wait_for loses a cancel that lands as a frame arrives.
            while self._closing is None:
                frame = await asyncio.wait_for(track.recv(), self.idle_timeout)
                assert isinstance(frame, av.VideoFrame | av.AudioFrame)
                try:
                    self._queue.put_nowait((track.kind, frame, timeline.ticks(frame)))
                except asyncio.QueueFull:
                    self.frames_dropped += 1
        except MediaStreamError:
            pass
        except TimeoutError:
            reason = f"no {track.kind} for {self.idle_timeout:g} s"
        if track.kind == "video":
            self.close(reason)

    async def _encode(self, segmenter: TsSegmenter) -> None:
        try:
            while (item := await self._queue.get()) is not None:
                _, frame, ticks = item
                if isinstance(frame, av.VideoFrame):
                    segments = await asyncio.to_thread(segmenter.push_video, frame, ticks)
                else:
                    segments = await asyncio.to_thread(segmenter.push_audio, frame, ticks)
                self._publish(segments)
            self._publish(await asyncio.to_thread(segmenter.close))
        except Exception as exc:  # a frame that cannot be encoded: end the ingest rather than go on silently
            log.exception("whip encoding failed", extra={"fields": {"stream": self.stream}})
            self.close(f"encoding failed: {type(exc).__name__}: {exc}")
        finally:
            self.frames_dropped += segmenter.frames_dropped

    def _publish(self, segments: list[bytes]) -> None:
        for segment in segments:
            try:
                self.session.publish(segment)
            except LpnodeError as exc:
                log_event(log, "whip segment not published", stream=self.stream, problem=str(exc))
                self.close("the live session refused a segment")
                return
            self.segments_published += 1

    async def _close(self, reason: str) -> None:
        readers = self._tasks[1:]
        for task in readers:
            task.cancel()
        if readers:
            await asyncio.wait(readers, timeout=STOP_TIMEOUT)
        if self._tasks:
            while True:
                try:
                    self._queue.put_nowait(None)
                    break
                except asyncio.QueueFull:
                    self._queue.get_nowait()  # make room for the end marker by dropping the oldest frame
            await asyncio.wait([self._tasks[0]], timeout=STOP_TIMEOUT)
        await self.pc.close()
        try:
            await stop_session(self.session)
        except Exception as exc:  # the stream ends either way; say why it did not end cleanly
            log_event(log, "live session stop failed", stream=self.stream, problem=f"{type(exc).__name__}: {exc}")
        log_event(
            log, "whip ingest ended", stream=self.stream, reason=reason, segments=self.segments_published,
            dropped=self.frames_dropped,
        )  # fmt: skip
        self.ended.set()
        if self._on_end is not None:
            self._on_end(self)
