"""The live runner's core: the pipeline process, the stream being served, and the 1 s monitor between them.

One stream at a time: a new start stops the running one. The monitor drains the process's errors and
logs, applies the state machine (:mod:`lpnode.live.status`), stops a stream that has had no input for
60 s, and on ERROR stops the stream and restarts the pipeline process (at most 3 times; then ERROR stays
and ``/health`` says so, so the orchestrator replaces the runner). When a stream ends the pipeline gets
its spec's initial params back.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from lpnode.errors import BadRequestError, PipelineFailedError, UnavailableError
from lpnode.live.pipeline import BaseParams, PipelineSpec
from lpnode.live.process import MAX_RESTARTS, PipelineProcess
from lpnode.live.registry import load_params_class, parse_params
from lpnode.live.status import PipelineState, StatusTracker, health_of
from lpnode.live.streamer import Streamer, StreamRequest
from lpnode.logs import log_event

log = logging.getLogger("lpnode.live")
MONITOR_INTERVAL = 1.0


class LiveService:
    def __init__(self, spec: PipelineSpec, log_level: str = "info", clock: Callable[[], float] = time.time) -> None:
        self.spec = spec
        self.log_level = log_level
        self.clock = clock
        """Wall-clock seconds for the state machine and the stream's frame times (tests pass a fake one)."""
        self.params_cls = load_params_class(spec)
        self.tracker = StatusTracker(pipeline=spec.name, start_time=clock())
        self.process: PipelineProcess | None = None
        self.streamer: Streamer | None = None
        self.params: BaseParams | None = None
        self.output_size = (0, 0)
        self._monitor: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._ever_ready = False

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        self._spawn()
        self._monitor = asyncio.create_task(self._monitor_loop(), name="live-monitor")

    def _spawn(self) -> None:
        self.process = PipelineProcess(self.spec, self.log_level)
        self.process.start()
        self._ever_ready = False
        self.tracker.loading(self.clock())

    async def shutdown(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(BaseException):
                await self._monitor
        if self.streamer is not None:
            await self.streamer.stop("runner shutting down")
            self.streamer = None
        if self.process is not None:
            await asyncio.to_thread(self.process.stop)
            # Release its queues' semaphores now: a runner stopped by a signal exits without finalizers.
            self.process = None
            gc.collect()

    def health(self) -> str:
        return health_of(self.tracker.state)

    # -- streams -------------------------------------------------------------------------------
    async def start_stream(self, request: StreamRequest, params: dict[str, Any]) -> None:
        """Start serving ``request`` with ``params`` (validated here: BadRequestError), stopping the stream
        that runs. UnavailableError while the pipeline loads; PipelineFailedError once it failed for good."""
        parsed = parse_params(self.spec, params)
        if self.tracker.state is PipelineState.ERROR and self.tracker.restart_count >= MAX_RESTARTS:
            raise PipelineFailedError(f"live pipeline {self.spec.name} failed: {self.tracker.last_error}")
        if not self._ever_ready:
            raise UnavailableError(f"live pipeline {self.spec.name} is still loading; retry shortly.", retry_after=5)
        async with self._lock:
            if self.streamer is not None:
                old, self.streamer = self.streamer, None
                await old.stop("a new stream started")
            width, height = parsed.width, parsed.height
            self.params = parsed
            self.output_size = parsed.get_output_resolution()
            key = request.request_id or uuid.uuid4().hex
            if self.process is not None:
                self.process.update_params(params, key)
            now = self.clock()
            self.tracker.params_updated(params, now)
            self.tracker.stream_started(now)
            self.streamer = Streamer(request, key, width, height, self)
            self.streamer.start()
            log_event(
                log,
                "live stream started",
                pipeline=self.spec.name,
                request_id=request.request_id,
                manifest_id=request.manifest_id,
                stream_id=request.stream_id,
                width=width,
                height=height,
            )

    async def stream_ended(self, streamer: Streamer, reason: str) -> None:
        """Stop ``streamer`` (if it is still the current one) and give the pipeline its initial params."""
        async with self._lock:
            await streamer.stop(reason)
            if self.streamer is streamer:
                self.streamer = None
                self.params = None
                if self.process is not None:
                    self.process.update_params(dict(self.spec.initial_params), "")

    def update_params(self, values: dict[str, Any]) -> None:
        """A control message: the full new params for the running stream."""
        streamer, current = self.streamer, self.params
        if streamer is None or current is None:
            return
        now = self.clock()
        try:
            parsed = parse_params(self.spec, values)
            if parsed.get_output_resolution() != current.get_output_resolution():
                old, new = current.get_output_resolution(), parsed.get_output_resolution()
                raise BadRequestError(
                    f"cannot change output resolution mid-stream (from {old[0]}x{old[1]} to {new[0]}x{new[1]}); "
                    "start a new stream for another size"
                )
        except BadRequestError as exc:
            self.tracker.error(exc.message, now)
            streamer.emit_error(exc.message)
            log_event(log, "params update refused", logging.WARNING, reason=exc.message)
            return
        self.params = parsed
        if self.process is not None:
            self.process.update_params(values, streamer.key)
        self.tracker.params_updated(values, now)
        streamer.status_soon()
        log_event(log, "params updated", pipeline=self.spec.name, keys=",".join(sorted(values)))

    # -- monitor -------------------------------------------------------------------------------
    async def _monitor_loop(self) -> None:
        while True:
            await asyncio.sleep(MONITOR_INTERVAL)
            try:
                await self._check()
            except Exception:  # the monitor must survive anything a stream throws at it
                log.exception("live monitor failed")

    async def _check(self) -> None:
        process = self.process
        now = self.clock()
        if process is None:
            return
        for when, message in process.drain():
            self.tracker.error(message, when)
            if self.streamer is not None:
                self.streamer.emit_error(message)
        # A reload Task clears ``ready`` for a while; the stream goes on (with the loading overlay), so
        # only the first load counts as LOADING.
        self._ever_ready = self._ever_ready or process.ready
        self.tracker.loaded(self._ever_ready)
        previous = self.tracker.state
        verdict = self.tracker.compute(now, process.alive())
        if verdict.state is not previous:
            log_event(log, "live state", state=verdict.state.value, previous=previous.value)
            if self.streamer is not None:
                self.streamer.status_soon()
        if verdict.stop_stream and self.streamer is not None:
            await self.stream_ended(self.streamer, "no input for 60 s")
        if verdict.state is PipelineState.ERROR:
            await self._recover(process)

    async def _recover(self, process: PipelineProcess) -> None:
        """ERROR: stop the stream so the gateway moves on, and restart the pipeline process if allowed."""
        if self.tracker.restart_count >= MAX_RESTARTS:
            if self.streamer is not None:
                await self.stream_ended(self.streamer, "pipeline failed")
            return
        for when, message in process.drain():
            self.tracker.error(message, when)
        if not process.alive():
            self.tracker.error(f"the pipeline process exited (code {process.process.exitcode})", self.clock())
        logs = list(process.logs)
        self.tracker.restarted(logs, self.clock())
        streamer = self.streamer
        if streamer is not None:
            streamer.emit(
                {
                    "type": "restart",
                    "pipeline": self.spec.name,
                    "restart_count": self.tracker.restart_count,
                    "restart_time": int(self.clock() * 1000),
                    "restart_logs": logs,
                }
            )
            await self.stream_ended(streamer, "pipeline error")
        log_event(
            log,
            "restarting the pipeline process",
            logging.WARNING,
            pipeline=self.spec.name,
            restart_count=self.tracker.restart_count,
            reason=self.tracker.last_error or "the pipeline stalled",
        )
        await asyncio.to_thread(process.stop)
        self._spawn()
