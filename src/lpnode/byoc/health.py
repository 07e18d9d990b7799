"""Checking a BYOC container's health: ``GET <url>/health``, once (:func:`probe`) or every few seconds
(:class:`HealthPoll`).

A 200 means healthy. A 404 means the container has no ``/health`` route (go-livepeer does not require
one), so answering at all is taken as healthy. Any other status, no answer within the timeout, or a
refused connection is unhealthy, with the reason kept for ``/status``. The poll never stops on an error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping

import aiohttp

HEALTH_INTERVAL = 2.0
HEALTH_TIMEOUT = 2.0


async def probe(
    session: aiohttp.ClientSession, url: str, headers: Mapping[str, str], timeout: float = HEALTH_TIMEOUT
) -> str:
    """Why ``url`` is unhealthy, or ``""`` when it is healthy."""
    try:
        async with session.get(
            f"{url}/health", headers=headers, timeout=aiohttp.ClientTimeout(total=timeout), ssl=False
        ) as answer:
            if answer.status in (200, 404):
                return ""
            text = (await answer.content.read(200)).decode(errors="replace").strip()
            return f"/health answered {answer.status}" + (f": {text}" if text else "")
    except TimeoutError:
        return f"/health did not answer within {timeout:g}s"
    except aiohttp.ClientError as exc:
        return f"cannot reach {url}: {exc or type(exc).__name__}"


class HealthPoll:
    """Calls ``report(problem)`` with each probe's result, every ``interval`` seconds, until stopped."""

    def __init__(
        self,
        session: Callable[[], aiohttp.ClientSession],
        url: str,
        headers: Mapping[str, str],
        report: Callable[[str], None],
        interval: float = HEALTH_INTERVAL,
    ) -> None:
        self.session = session
        self.url = url
        self.headers = dict(headers)
        self.report = report
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def check(self) -> None:
        self.report(await probe(self.session(), self.url, self.headers, min(HEALTH_TIMEOUT, self.interval * 2)))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.check()
