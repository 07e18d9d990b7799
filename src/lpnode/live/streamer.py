"""One live stream on the runner: its ingress, egress, control and events loops.

- **Ingress**: the input channel (``subscribe_url``) is read from the segment being written (seq -2) on;
  each segment's bytes go to the decoder thread as they arrive. The decoder hands frames to the
  pipeline process (a full queue drops the frame). The channel ending (closed or gone) ends the stream.
- **Egress**: a thread takes the pipeline's outputs (dropping those of another request), encodes them
  (:class:`~lpnode.live.media.SegmentEncoder`, with the input's audio) and streams each MPEG-TS segment
  to ``publish_url`` while it is encoded. At the end the output channel is closed (``DELETE``).
- **Control**: each segment of ``control_url`` is one JSON object of params, applied as a whole;
  ``{"keep":"alive"}`` is ignored. The control channel ending does not end the stream.
- **Events**: each event is one segment of ``events_url``, wrapped ``{"event": ..., "queue_event_type":
  ...}``: ``status`` at start, after each params update and every 10 s; ``error``; ``restart``; and
  ``stream_trace`` milestones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lpnode.live.media import (
    VIDEO_TIME_BASE,
    ByteStream,
    DecodedFrame,
    Decoder,
    MediaError,
    SegmentEncoder,
    max_framerate,
)
from lpnode.live.pacing import FramePacer
from lpnode.logs import log_event
from lpnode.trickle import TricklePublisher, TrickleSubscriber
from lpnode.trickle.errors import ChannelClosedError, ChannelNotFoundError, TrickleError

if TYPE_CHECKING:
    import av

    from lpnode.live.service import LiveService

log = logging.getLogger("lpnode.live")
STATUS_INTERVAL = 10.0
STATUS_MIN_GAP = 0.5
KEEPALIVE = {"keep": "alive"}
MAX_CONTROL_BYTES = 1024 * 1024
EVENT_QUEUE = 100
SINK_TIMEOUT = 10.0
AUDIO_QUEUE = 200
STOP_TIMEOUT = 10.0

_Item = tuple[str, bytes]


@dataclass(frozen=True)
class StreamRequest:
    """The trickle URLs and ids of one stream (``POST /live-video-to-video``)."""

    subscribe_url: str
    publish_url: str
    control_url: str = ""
    events_url: str = ""
    request_id: str = ""
    manifest_id: str = ""
    stream_id: str = ""


class _Sink:
    """Hands encoded segment bytes from the egress thread to the publishing task, waiting (bounded) when
    the publisher is behind."""

    def __init__(self, loop: asyncio.AbstractEventLoop, q: asyncio.Queue[_Item]) -> None:
        self.loop = loop
        self.q = q

    def _put(self, item: _Item) -> None:
        future: Future[None] = asyncio.run_coroutine_threadsafe(self.q.put(item), self.loop)
        future.result(SINK_TIMEOUT)

    def start(self) -> None:
        self._put(("start", b""))

    def write(self, data: bytes) -> None:
        self._put(("data", data))

    def end(self) -> None:
        self._put(("end", b""))


class Streamer:
    """Runs one stream until its input ends or :meth:`stop` is called."""

    def __init__(self, request: StreamRequest, stream_key: str, width: int, height: int, service: LiveService):
        self.request = request
        self.key = stream_key
        """Tags this stream's frames in the pipeline process; outputs with another key are dropped."""
        self.width = width
        self.height = height
        self.out_width, self.out_height = service.output_size
        self.service = service
        self.ended = asyncio.Event()
        self.reason = ""
        self._loop = asyncio.get_running_loop()
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=EVENT_QUEUE)
        self._segments: asyncio.Queue[_Item] = asyncio.Queue(maxsize=64)
        self._audio: queue.Queue[av.AudioFrame] = queue.Queue(maxsize=AUDIO_QUEUE)
        self._status_now = asyncio.Event()
        self._egress_stop = threading.Event()
        self._bytes = ByteStream()
        self._pacer = FramePacer()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._ending: asyncio.Future[None] | None = None
        self.frames_in = 0
        self.frames_out = 0

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self.emit_trace("runner_receive_stream_request")
        self.status_soon()
        self._tasks = [
            asyncio.create_task(self._ingress(), name="live-ingress"),
            asyncio.create_task(self._publish(), name="live-publish"),
            asyncio.create_task(self._events_loop(), name="live-events"),
            asyncio.create_task(self._status_loop(), name="live-status"),
        ]
        if self.request.control_url:
            self._tasks.append(asyncio.create_task(self._control(), name="live-control"))
        self._egress = asyncio.create_task(asyncio.to_thread(self._egress_thread), name="live-egress")

    async def stop(self, reason: str) -> None:
        """End the stream: stop reading input, flush the encoder, close the output and events channels."""
        if self._stopping:
            await self.ended.wait()
            return
        self._stopping = True
        self.reason = reason
        log_event(log, "live stream stopping", request_id=self.request.request_id, reason=reason)
        self.service.tracker.stream_stopped()
        ingress = self._tasks[0]
        ingress.cancel()
        self._bytes.close()
        self._egress_stop.set()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(self._egress, STOP_TIMEOUT)
        with contextlib.suppress(asyncio.QueueFull):
            self._segments.put_nowait(("close", b""))
        publish = self._tasks[1]
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(publish, STOP_TIMEOUT)
        self.emit_status()
        with contextlib.suppress(asyncio.QueueFull):
            self._events.put_nowait({})  # ends the events loop after what is queued
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(self._tasks[2], STOP_TIMEOUT)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        log_event(
            log,
            "live stream ended",
            request_id=self.request.request_id,
            reason=reason,
            frames_in=self.frames_in,
            frames_out=self.frames_out,
        )
        self.ended.set()

    def _end_soon(self, reason: str) -> None:
        if not self._stopping and self._ending is None:
            self._ending = asyncio.ensure_future(self.service.stream_ended(self, reason))

    # -- ingress -------------------------------------------------------------------------------
    async def _ingress(self) -> None:
        decoder = Decoder(self.width, self.height, self._on_frame, self._on_audio, max_fps=max_framerate())
        decoding = asyncio.create_task(asyncio.to_thread(decoder.run, self._bytes))
        reason = "input ended"
        first = True
        try:
            async with TrickleSubscriber(self.request.subscribe_url, start_seq=-2) as sub:
                async for segment in sub:
                    if first:
                        self.emit_trace("runner_receive_first_ingest_segment")
                        first = False
                    try:
                        async for chunk in segment:
                            self._bytes.feed(chunk)
                    except TrickleError as exc:
                        log_event(log, "input segment cut off", logging.WARNING, error=str(exc))
                    if decoding.done():
                        break
                reason = f"input channel {sub.end or 'ended'}"
        except TrickleError as exc:
            reason = f"input unreachable: {exc}"
        finally:
            self._bytes.close()
            decoding.add_done_callback(_retrieve)  # when cancelled, nobody awaits it
        try:
            await decoding
        except MediaError as exc:
            if self._bytes.fed:  # an input that ended before any byte is just an ended stream
                reason = str(exc)
                self.emit_error(reason)
        await self._settle()
        self._end_soon(reason)

    async def _settle(self, limit: float = 2.0, quiet: float = 0.3) -> None:
        """Let the frames still in the pipeline come out: until none came for ``quiet`` s (at most ``limit``)."""
        deadline = time.monotonic() + limit
        seen = -1
        while self.frames_out != seen and time.monotonic() < deadline:
            seen = self.frames_out
            await asyncio.sleep(quiet)

    def _on_frame(self, frame: DecodedFrame) -> None:
        """Decoder thread: a frame for the pipeline, when its presentation time comes (see :mod:`.pacing`)."""
        self._pacer.wait(frame.seconds)
        self.frames_in += 1
        self._loop.call_soon_threadsafe(self.service.tracker.input_frame, self.service.clock())
        process = self.service.process
        if process is not None:
            process.send_frame(frame, self.key)

    def _on_audio(self, frame: av.AudioFrame) -> None:
        with contextlib.suppress(queue.Full):
            self._audio.put_nowait(frame)

    # -- egress --------------------------------------------------------------------------------
    def _egress_thread(self) -> None:
        encoder = SegmentEncoder(self.out_width, self.out_height, _Sink(self._loop, self._segments))
        try:
            while not self._egress_stop.is_set():
                process = self.service.process
                if process is None:
                    time.sleep(0.05)
                    continue
                out = process.get_output(0.1)
                while not self._audio.empty():
                    encoder.add_audio(self._audio.get_nowait())
                if out is None or out.request_id != self.key:
                    continue
                pts = round(out.pts * out.time_base / VIDEO_TIME_BASE)
                encoder.add_video(out.array, pts)
                self.frames_out += 1
                self._loop.call_soon_threadsafe(self.service.tracker.output_frame, self.service.clock())
            encoder.close()
        except Exception as exc:  # publisher stuck, encoder failure: the stream cannot go on
            log.error("live output failed", exc_info=exc)
            self._loop.call_soon_threadsafe(self.emit_error, f"output failed: {exc}")
            self._loop.call_soon_threadsafe(self._end_soon, "output failed")

    async def _publish(self) -> None:
        first = True
        segment = None
        async with TricklePublisher(self.request.publish_url, "video/MP2T") as pub:
            _ = pub.session  # closing deletes the channel only if there is a session
            while True:
                kind, data = await self._segments.get()
                try:
                    if kind == "close":
                        return
                    if kind == "start":
                        segment = pub.segment()
                    elif kind == "data" and segment is not None:
                        await segment.write(data)
                    elif kind == "end" and segment is not None:
                        await segment.close()
                        segment = None
                        if first:
                            self.emit_trace("runner_send_first_processed_segment")
                            first = False
                except (ChannelNotFoundError, ChannelClosedError) as exc:
                    log_event(log, "output channel gone", logging.WARNING, error=str(exc))
                    self._end_soon("output channel gone")
                    self._drain_segments()
                    return
                except TrickleError as exc:
                    log_event(log, "output segment failed", logging.WARNING, error=str(exc))
                    if segment is not None:
                        await segment.abandon()
                    segment = None

    def _drain_segments(self) -> None:
        """Keep the egress thread from waiting on a publisher that is gone."""

        async def drain() -> None:
            while True:
                await self._segments.get()

        self._tasks.append(asyncio.create_task(drain()))

    # -- control -------------------------------------------------------------------------------
    async def _control(self) -> None:
        try:
            async with TrickleSubscriber(self.request.control_url, start_seq=-2) as sub:
                async for segment in sub:
                    try:
                        data = await segment.read()
                    except TrickleError:
                        continue
                    self._control_message(data[:MAX_CONTROL_BYTES])
        except TrickleError as exc:
            log_event(log, "control channel unreachable", logging.WARNING, error=str(exc))

    def _control_message(self, data: bytes) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            self.emit_error("control message is not JSON")
            return
        if message == KEEPALIVE:
            return
        if not isinstance(message, dict):
            self.emit_error("control message must be a JSON object of params")
            return
        self.service.update_params(message)

    # -- events --------------------------------------------------------------------------------
    def emit(self, event: dict[str, Any], queue_event_type: str = "ai_stream_events") -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._events.put_nowait({"event": event, "queue_event_type": queue_event_type})

    def emit_trace(self, kind: str) -> None:
        self.emit({"type": kind, "timestamp": int(time.time() * 1000)}, "stream_trace")

    def emit_error(self, message: str) -> None:
        now = time.time()
        self.emit({"type": "error", "pipeline": self.service.spec.name, "message": message, "time": int(now * 1000)})

    def emit_status(self) -> None:
        self.emit(self.service.tracker.status_event(self.service.clock()))

    def status_soon(self) -> None:
        self._status_now.set()

    async def _status_loop(self) -> None:
        # The flag as well as the cancel: Python 3.11's wait_for can lose a cancel that lands as its wait ends.
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._status_now.wait(), STATUS_INTERVAL)
            self._status_now.clear()
            self.emit_status()
            await asyncio.sleep(STATUS_MIN_GAP)

    async def _events_loop(self) -> None:
        if not self.request.events_url:
            while await self._events.get():
                pass
            return
        async with TricklePublisher(self.request.events_url, "application/json") as pub:
            _ = pub.session
            while True:
                item = await self._events.get()
                if not item:
                    return
                try:
                    await pub.write(json.dumps(item).encode())
                except (ChannelNotFoundError, ChannelClosedError):
                    while await self._events.get():
                        pass
                    return
                except TrickleError as exc:
                    log_event(log, "event not delivered", logging.DEBUG, error=str(exc))


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
