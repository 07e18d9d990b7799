"""Admission control: a bounded number of jobs in flight plus a bounded queue.

A request that finds the queue full is refused at once (503 with Retry-After) instead of waiting
without bound. A queued request whose client goes away leaves the queue (its task is cancelled).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from lpnode.errors import UnavailableError


class Admission:
    def __init__(self, max_in_flight: int, max_queue: int, on_change: Callable[[], None] | None = None) -> None:
        if max_in_flight < 1 or max_queue < 0:
            raise ValueError("max_in_flight must be >= 1 and max_queue >= 0")
        self.max_in_flight = max_in_flight
        self.max_queue = max_queue
        self._slots = asyncio.Semaphore(max_in_flight)
        self.in_flight = 0
        self.queued = 0
        self._mean_seconds = 1.0  # running mean of job duration, for Retry-After
        self._on_change = on_change or (lambda: None)

    def record_duration(self, seconds: float) -> None:
        self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * seconds

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: queue depth x mean job time / slots, at least 1."""
        waiting = self.queued + self.in_flight
        return max(1, math.ceil(self._mean_seconds * waiting / self.max_in_flight))

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the ``max_in_flight`` slots; UnavailableError when the queue is full."""
        if self.in_flight + self.queued >= self.max_in_flight + self.max_queue:
            raise UnavailableError(
                f"Runner is at capacity ({self.in_flight} in flight, {self.queued} queued); retry later.",
                retry_after=self.retry_after(),
            )
        self.queued += 1
        self._on_change()
        try:
            await self._slots.acquire()
        finally:
            self.queued -= 1
        self.in_flight += 1
        self._on_change()
        try:
            yield
        finally:
            self.in_flight -= 1
            self._slots.release()
            self._on_change()
