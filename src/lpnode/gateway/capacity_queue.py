"""Waiting for capacity: when every orchestrator offering a (pipeline, model) is at capacity, a request waits
here instead of failing, and goes out as capacity frees.

One queue per (pipeline, model), bounded (``size``) and deadline-aware: a request waits at most ``max_wait``
seconds and never past its own deadline. Capacity is learned, not polled: the gateway wakes the next waiter when
one of its own jobs on that (pipeline, model) ends (:meth:`CapacityQueues.freed`), when a refresh shows an
orchestrator with free capacity, or when the ``Retry-After`` an orchestrator gave with its ``insufficient
capacity`` has passed (other gateways' jobs end unseen). Waiters are woken fairly between API keys: round robin
over the keys waiting, first come first served within a key. A full queue answers 503, a wait past ``max_wait``
503, a wait past the deadline 504 — each with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from lpnode.errors import GatewayTimeoutError, UnavailableError

DEFAULT_SIZE = 256
DEFAULT_MAX_WAIT = 60.0


@dataclass
class _Queue:
    """The waiters of one (pipeline, model), per API key (``None``: no key), in arrival order."""

    by_key: collections.OrderedDict[int | None, collections.deque[asyncio.Future[None]]] = field(
        default_factory=collections.OrderedDict
    )
    waiting: int = 0

    def add(self, key: int | None, waiter: asyncio.Future[None], *, first: bool) -> None:
        line = self.by_key.setdefault(key, collections.deque())
        if first:
            line.appendleft(waiter)
        else:
            line.append(waiter)
        self.waiting += 1

    def remove(self, key: int | None, waiter: asyncio.Future[None]) -> None:
        line = self.by_key.get(key)
        if line is not None and waiter in line:
            line.remove(waiter)
            self.waiting -= 1
            if not line:
                del self.by_key[key]

    def wake_next(self) -> bool:
        """Wake the first waiter of the next key in turn; that key goes to the back of the round."""
        while self.by_key:
            key, line = next(iter(self.by_key.items()))
            waiter = line.popleft()
            self.waiting -= 1
            del self.by_key[key]
            if line:
                self.by_key[key] = line  # to the back: the other keys go first
            if not waiter.done():
                waiter.set_result(None)
                return True
        return False


class CapacityQueues:
    """The gateway's capacity queues, one per (pipeline, model), created as needed."""

    def __init__(self, size: int = DEFAULT_SIZE, max_wait: float = DEFAULT_MAX_WAIT) -> None:
        self.size = size
        self.max_wait = max_wait
        self._queues: dict[tuple[str, str], _Queue] = {}

    def waiting(self, pipeline: str, model_id: str) -> int:
        queue = self._queues.get((pipeline, model_id))
        return queue.waiting if queue is not None else 0

    def freed(self, pipeline: str, model_id: str, slots: int = 1) -> None:
        """Capacity for (pipeline, model) freed up: wake up to ``slots`` waiters."""
        queue = self._queues.get((pipeline, model_id))
        for _ in range(slots):
            if queue is None or not queue.wake_next():
                return

    async def wait(
        self,
        pipeline: str,
        model_id: str,
        key: int | None,
        deadline: float,
        *,
        retry_after: float | None = None,
        again: bool = False,
    ) -> None:
        """Wait for a turn to try (pipeline, model) again. ``retry_after``: the orchestrators' hint, after which a
        try is due even without news; ``again``: this request has waited before, and keeps its place at the head
        of its key's line. Raises :class:`UnavailableError` (queue full, or waited ``max_wait``) or
        :class:`GatewayTimeoutError` (the deadline came first)."""
        async with self._place(pipeline, model_id, key, again=again) as waiter:
            left = deadline - time.monotonic()
            limit = min(left, self.max_wait)
            by_deadline = left <= self.max_wait
            wake = limit if retry_after is None else min(limit, max(0.05, retry_after))
            if wake <= 0:
                raise self._expired(pipeline, model_id, by_deadline)
            try:
                done, _ = await asyncio.wait({waiter}, timeout=wake)
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self.freed(pipeline, model_id)  # woken, then cancelled (the caller left): hand the turn on
                raise
            if waiter in done or wake < limit:
                return  # capacity freed, or the orchestrators' Retry-After has passed: try again
            raise self._expired(pipeline, model_id, by_deadline)

    @contextlib.asynccontextmanager
    async def _place(
        self, pipeline: str, model_id: str, key: int | None, *, again: bool
    ) -> AsyncIterator[asyncio.Future[None]]:
        queue = self._queues.setdefault((pipeline, model_id), _Queue())
        if queue.waiting >= self.size:
            raise UnavailableError(
                f"every orchestrator serving {pipeline} model {model_id!r} is at capacity and the gateway's queue "
                f"for it is full ({self.size} waiting); retry later",
                retry_after=1,
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.add(key, waiter, first=again)
        try:
            yield waiter
        finally:
            queue.remove(key, waiter)
            if not queue.waiting and self._queues.get((pipeline, model_id)) is queue:
                del self._queues[(pipeline, model_id)]

    def _expired(self, pipeline: str, model_id: str, by_deadline: bool) -> Exception:
        if by_deadline:
            return GatewayTimeoutError(
                f"every orchestrator serving {pipeline} model {model_id!r} stayed at capacity until the deadline",
                retry_after=1,
            )
        return UnavailableError(
            f"every orchestrator serving {pipeline} model {model_id!r} stayed at capacity for {self.max_wait:g}s, "
            "the longest a request waits here; retry later",
            retry_after=max(1, round(self.max_wait / 10)),
        )
