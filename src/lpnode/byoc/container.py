"""An external BYOC container as a capability target: a URL, an optional bearer token, a capacity bound
and a health poll.

``capacity`` is an upper bound (go-livepeer counts jobs but never refuses one): a job past it gets 503
``No capacity available`` with ``Retry-After`` at once. The container is advertised only while healthy:
its ``/health`` is polled every few seconds (:mod:`lpnode.byoc.health`), and a job whose connection is
refused withdraws it at once; the next good poll restores it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import aiohttp

from lpnode.byoc.health import HEALTH_INTERVAL, HealthPoll
from lpnode.byoc.registry import TargetLease
from lpnode.errors import UnavailableError
from lpnode.logs import log_event

log = logging.getLogger("lpnode.byoc")


class ContainerTarget:
    kind = "container"

    def __init__(
        self,
        name: str,
        url: str,
        capacity: int,
        session: Callable[[], aiohttp.ClientSession],
        *,
        token: str = "",
        interval: float = HEALTH_INTERVAL,
    ) -> None:
        self.name = name
        self.url = url.rstrip("/")
        self.capacity = capacity
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._in_use = 0
        self._healthy = False
        self._last_error = "not checked yet"
        self._poll = HealthPoll(session, self.url, self.headers, self._report, interval)

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def last_error(self) -> str:
        return self._last_error

    @contextlib.asynccontextmanager
    async def lease(self, deadline: float | None) -> AsyncIterator[TargetLease]:
        if not self._healthy:
            raise UnavailableError(
                f"No capacity available for capability {self.name}: its container is unhealthy ({self._last_error})",
                retry_after=2,
            )
        if self._in_use >= self.capacity:
            raise UnavailableError(
                f"No capacity available for capability {self.name}: all {self.capacity} slots are busy", retry_after=1
            )
        self._in_use += 1
        try:
            yield TargetLease(self.url, dict(self.headers))
        finally:
            self._in_use -= 1

    def unreachable(self, problem: str) -> None:
        self._report(problem or "the container refused the connection")

    async def start(self) -> None:
        """Check health once now (so the state is known when registration answers), then poll."""
        await self._poll.check()
        self._poll.start()

    async def close(self) -> None:
        await self._poll.stop()

    def _report(self, problem: str) -> None:
        healthy = not problem
        if healthy != self._healthy:
            event = "capability healthy again" if healthy else "capability unhealthy; not advertised"
            level = logging.INFO if healthy else logging.WARNING
            log_event(log, event, level, name=self.name, url=self.url, problem=problem or "-")
        self._healthy = healthy
        if problem:
            self._last_error = problem
        elif self._last_error == "not checked yet":
            self._last_error = ""
