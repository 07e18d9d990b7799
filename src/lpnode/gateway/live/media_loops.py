"""The media loops of one live stream on one orchestrator (go-livepeer's ``ai_live_video.go``).

An :class:`Attempt` runs, against the four trickle channels an orchestrator gave:

- **publish**: each input segment is one trickle segment on ``publish_url``. At most ``max_in_flight``
  segments are being sent at once; a segment arriving beyond that is dropped, never queued (a slow
  orchestrator must not add latency). A segment whose request failed before any byte was taken is sent
  again by the trickle publisher; one that failed part-way is dropped.
- **subscribe**: each complete output segment on ``subscribe_url`` goes to the stream's sink (its output
  ring), from seq 0 of the fresh channel on.
- **control**: ``{"keep":"alive"}`` every ``keepalive`` seconds; parameter updates as one segment each.
- **events**: every JSON event on ``events_url`` goes to the sink (which keeps the latest status).
- **watch**: the :class:`~lpnode.gateway.live.policy.StallWatch` rules.

The first failure of any loop (the orchestrator deleted a channel, stopped answering, or stalled) ends the
attempt: :meth:`Attempt.failed` returns why, and the stream decides whether to swap orchestrators.
:meth:`Attempt.close` stops every loop and deletes the input and control channels, which ends the stream on
the orchestrator and its runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Coroutine
from typing import Any, Protocol

from lpnode.gateway.live.orch_start import LiveUrls
from lpnode.gateway.live.policy import LiveSettings, StallWatch
from lpnode.gateway.live.ring import OutputSegment
from lpnode.logs import log_event
from lpnode.trickle import (
    ChannelClosedError,
    ChannelNotFoundError,
    SegmentCutOffError,
    SegmentWriter,
    TrickleError,
    TricklePublisher,
    TrickleSubscriber,
    TrickleUnreachableError,
)

log = logging.getLogger("lpnode.gateway.live")
KEEPALIVE = b'{"keep":"alive"}'
CONTROL_TRIES = 3
CONTROL_RETRY_DELAY = 0.1
EVENT_LIMIT = 1024 * 1024


class Sink(Protocol):
    """Where an attempt delivers what it reads, and how it learns about input."""

    @property
    def last_input(self) -> float: ...

    def output_start(self) -> OutputSegment: ...

    def event(self, event: dict[str, Any]) -> None: ...

    def dropped(self, count: int = 1) -> None: ...


class Attempt:
    """One orchestrator serving one stream; start with :meth:`start`, end with :meth:`close`."""

    def __init__(self, urls: LiveUrls, sink: Sink, settings: LiveSettings) -> None:
        self.urls = urls
        self.sink = sink
        self.settings = settings
        self.watch = StallWatch(settings.output_gap, settings.event_gap)
        self.input = TricklePublisher(urls.publish_url, "video/MP2T")
        self.control = TricklePublisher(urls.control_url, "application/json")
        self.sent = 0
        self.output_segments = 0
        self._in_flight: dict[asyncio.Task[None], SegmentWriter] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._output: asyncio.Task[None] | None = None
        self._failed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._control_lock = asyncio.Lock()
        self._closed = False

    @property
    def orchestrator(self) -> str:
        return self.urls.orchestrator

    def start(self) -> None:
        self._output = asyncio.ensure_future(self._guard(self._subscribe()))
        self._loops.append(self._output)
        for loop in (self._events(), self._keepalive(), self._watch()):
            self._loops.append(asyncio.ensure_future(self._guard(loop)))

    async def failed(self) -> str:
        """Wait until a loop fails; why."""
        return await asyncio.shield(self._failed)

    @property
    def has_failed(self) -> bool:
        return self._failed.done()

    def fail(self, reason: str) -> None:
        if not self._failed.done() and not self._closed:
            log_event(log, "live orchestrator failed", logging.WARNING, orchestrator=self.orchestrator, reason=reason)
            self._failed.set_result(reason)

    # --- publish ---------------------------------------------------------------------------------------

    def publish(self, segment: bytes) -> bool:
        """Start sending ``segment``; False when it was dropped (too many in flight, or the attempt ended)."""
        if self._closed or self._failed.done():
            return False
        self._in_flight = {t: w for t, w in self._in_flight.items() if not t.done()}
        if len(self._in_flight) >= self.settings.max_in_flight:
            return False
        try:
            writer = self.input.segment()  # takes the next seq now, so segments keep their order
        except TrickleError as exc:
            self.fail(f"input channel: {exc}")
            return False
        task = asyncio.ensure_future(self._send(writer, segment))
        self._in_flight[task] = writer
        return True

    @property
    def in_flight(self) -> int:
        return sum(1 for t in self._in_flight if not t.done())

    async def _send(self, writer: SegmentWriter, segment: bytes) -> None:
        try:
            async with writer:
                await writer.write(segment)
            self.sent += 1
        except (ChannelNotFoundError, ChannelClosedError):
            self.fail("stream no longer exists on the orchestrator (input channel gone)")
        except TrickleUnreachableError as exc:
            self.fail(f"input channel unreachable: {exc}")
        except TrickleError as exc:  # one segment failed part-way: dropped
            self.sink.dropped()
            log_event(log, "input segment dropped", logging.DEBUG, orchestrator=self.orchestrator, problem=str(exc))

    # --- control ---------------------------------------------------------------------------------------

    async def send_control(self, message: bytes, tries: int = CONTROL_TRIES) -> None:
        """Write one control message (3 tries, 100 ms apart); raises the last trickle error."""
        async with self._control_lock:
            for attempt in range(1, tries + 1):
                try:
                    await self.control.write(message)
                    return
                except (ChannelNotFoundError, ChannelClosedError):
                    self.fail("control channel gone")
                    raise
                except TrickleError:
                    if attempt == tries:
                        raise
                    await asyncio.sleep(CONTROL_RETRY_DELAY)

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.settings.keepalive)
            try:
                await self.send_control(KEEPALIVE)
            except TrickleError as exc:
                self.fail(f"control channel: {exc}")
                return

    # --- output and events -----------------------------------------------------------------------------

    async def _subscribe(self) -> None:
        async with TrickleSubscriber(self.urls.subscribe_url, start_seq=0) as sub:
            async for segment in sub:
                out = self.sink.output_start()  # relayed to followers as its bytes arrive
                cut = True
                try:
                    async for chunk in segment:
                        if not out.size:
                            self.watch.output()
                        out.append(chunk)
                    cut = False
                except SegmentCutOffError:
                    continue
                finally:
                    out.finish(cut=cut)
                if out.size:
                    self.watch.output()
                    self.output_segments += 1
            self.fail(f"output channel {sub.end or 'ended'}")

    async def _events(self) -> None:
        async with TrickleSubscriber(self.urls.events_url, start_seq=0) as sub:
            async for segment in sub:
                try:
                    data = await segment.read()
                except SegmentCutOffError:
                    continue
                self.watch.event()
                if len(data) > EVENT_LIMIT:
                    continue
                try:
                    event = json.loads(data)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    self.sink.event(event)
            self.fail(f"events channel {sub.end or 'ended'}")

    async def _watch(self) -> None:
        period = max(0.1, min(1.0, self.settings.output_gap / 4, self.settings.event_gap / 4))
        while True:
            await asyncio.sleep(period)
            problem = self.watch.problem(self.sink.last_input)
            if problem is not None:
                self.fail(problem)
                return

    async def _guard(self, loop: Coroutine[Any, Any, None]) -> None:
        try:
            await loop
        except asyncio.CancelledError:
            raise
        except TrickleError as exc:
            self.fail(str(exc))
        except Exception as exc:  # a bug in a loop must end the attempt, not vanish
            log.exception("live media loop failed", extra={"fields": {"orchestrator": self.orchestrator}})
            self.fail(f"internal error: {type(exc).__name__}")

    # --- end -------------------------------------------------------------------------------------------

    async def close(self, drain: float = 0.0) -> None:
        """Stop every loop and send; delete the input and control channels (ends the stream upstream).

        With ``drain``, the input ends first (segments being sent finish, then the input channel is deleted)
        and the output is read for up to ``drain`` seconds more, until the runner closes it: the output of the
        last input is not lost."""
        if self._closed:
            return
        self._closed = True
        if not self._failed.done():
            self._failed.set_result("closed")
        if drain > 0:
            deadline = asyncio.get_running_loop().time() + drain
            if self._in_flight:
                await asyncio.wait(set(self._in_flight), timeout=drain / 2)
            with contextlib.suppress(TrickleError, TimeoutError):
                await asyncio.wait_for(self.input.close(), drain / 2)
            if self._output is not None:
                await asyncio.wait({self._output}, timeout=max(0.0, deadline - asyncio.get_running_loop().time()))
        tasks = [*self._loops, *self._in_flight]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # A send cancelled before it ran never ended its segment's request: end it here.
        await asyncio.gather(*(w.abandon() for w in self._in_flight.values()), return_exceptions=True)
        with contextlib.suppress(TrickleError, TimeoutError):
            await asyncio.wait_for(self.control.close(), 10)
        with contextlib.suppress(TrickleError, TimeoutError):
            await asyncio.wait_for(self.input.close(), 10)
