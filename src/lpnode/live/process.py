"""The pipeline in a process of its own, and the runner's handle on it.

The runner (HTTP, trickle, decode, encode) and the pipeline (torch, models) live in different processes,
started with multiprocessing's ``spawn``: a pipeline that crashes, hangs or leaks cannot take the runner
down, and the runner restarts it (at most :data:`MAX_RESTARTS` times). Between them:

- input and output queues of **one** frame each; a frame that finds its queue full is dropped (the
  newest is dropped: at 24 fps every queued frame is ~41 ms of latency, so nothing waits);
- a params queue, drained to the latest message by the child (intermediate updates are skipped);
- error and log queues the runner drains (errors become ``error`` events; the last log lines go into
  the ``restart`` event when the process died);
- ``ready`` (set once ``initialize`` returned, cleared while a reload Task runs) and ``done`` events.

Frames cross as (H, W, 3) uint8 arrays, so the runner process never imports torch; the child turns them
into the (1, H, W, 3) float tensors pipelines see. The child dies with the runner (``PR_SET_PDEATHSIG``
and a parent watch).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import queue
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from lpnode.live.media import DecodedFrame
from lpnode.live.pipeline import PipelineSpec
from lpnode.logs import log_event

log = logging.getLogger("lpnode.live")
MAX_RESTARTS = 3
STOP_TIMEOUT = 5.0
MAX_LOG_LINES = 100


@dataclass
class ProcessedFrame:
    """An output frame from the pipeline process."""

    request_id: str
    array: np.ndarray
    pts: int
    time_base: Fraction
    is_loading_frame: bool


def put_or_drop(q: Any, item: Any) -> bool:
    """Put ``item`` if ``q`` has room; False (dropped) if it is full."""
    try:
        q.put_nowait(item)
    except queue.Full:
        return False
    return True


def latest(q: Any, timeout: float) -> Any:
    """Wait up to ``timeout`` for an item, then drain ``q``: the newest item, or None."""
    try:
        item = q.get(timeout=timeout)
    except queue.Empty:
        return None
    while True:
        try:
            item = q.get_nowait()
        except queue.Empty:
            return item


class PipelineProcess:
    """One pipeline process. :meth:`start` it; it loads in the background (watch :attr:`ready`)."""

    def __init__(self, spec: PipelineSpec, log_level: str = "info") -> None:
        ctx = multiprocessing.get_context("spawn")
        self.spec = spec
        self.input_queue = ctx.Queue(maxsize=1)
        self.output_queue = ctx.Queue(maxsize=1)
        self.param_queue = ctx.Queue()
        self.error_queue = ctx.Queue(maxsize=100)
        self.log_queue = ctx.Queue(maxsize=MAX_LOG_LINES)
        self.ready_event = ctx.Event()
        self.done = ctx.Event()
        self.logs: deque[str] = deque(maxlen=MAX_LOG_LINES)
        self.started = 0.0
        self.input_dropped = 0
        self.output_dropped = 0
        from lpnode.live import _child

        self.process = ctx.Process(
            target=_child.main,
            args=(
                spec.model_dump_json(),
                self.input_queue,
                self.output_queue,
                self.param_queue,
                self.error_queue,
                self.log_queue,
                self.ready_event,
                self.done,
                log_level,
            ),
            name=f"lpnode-live-{spec.name}",
            daemon=True,
        )

    def start(self) -> None:
        self.started = time.time()
        self.process.start()
        log_event(log, "pipeline process started", pipeline=self.spec.name, pid=self.process.pid)

    @property
    def ready(self) -> bool:
        return self.ready_event.is_set()

    def alive(self) -> bool:
        return self.process.is_alive()

    def send_frame(self, frame: DecodedFrame, request_id: str) -> bool:
        """Hand a frame over; False if the pipeline is busy with the last one (the frame is dropped)."""
        item = (request_id, frame.pts, frame.time_base.numerator, frame.time_base.denominator, frame.array)
        if put_or_drop(self.input_queue, item):
            return True
        self.input_dropped += 1
        return False

    def get_output(self, timeout: float) -> ProcessedFrame | None:
        try:
            request_id, pts, num, den, array, loading = self.output_queue.get(timeout=timeout)
        except (queue.Empty, EOFError, OSError):
            return None
        return ProcessedFrame(request_id, array, pts, Fraction(num, den), loading)

    def update_params(self, params: dict[str, Any], request_id: str) -> None:
        """Queue the full ``params`` for the pipeline's ``update_params`` (intermediate ones are skipped)."""
        self.param_queue.put({"request_id": request_id, "params": params})

    def drain(self) -> list[tuple[float, str]]:
        """Collect new log lines; the errors reported since the last call, as (time, message)."""
        while True:
            try:
                self.logs.append(self.log_queue.get_nowait())
            except (queue.Empty, EOFError, OSError):
                break
        errors = []
        while True:
            try:
                errors.append(self.error_queue.get_nowait())
            except (queue.Empty, EOFError, OSError):
                return errors

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Ask the process to stop (``done``); terminate, then kill, if it lingers."""
        self.done.set()
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(2)
        for q in (self.input_queue, self.output_queue, self.param_queue, self.error_queue, self.log_queue):
            q.cancel_join_thread()
            with contextlib.suppress(Exception):
                q.close()
