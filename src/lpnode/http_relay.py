"""Pieces every HTTP relay in lpnode uses: racing an upstream call against the client leaving (or the upstream
going away), closing an upstream answer properly, and a streamed answer whose clean-up always runs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import TypeVar

import aiohttp
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from lpnode.errors import JobCancelledError, PipelineFailedError

_T = TypeVar("_T")


class RelayedStream(StreamingResponse):
    """A streamed answer whose ``on_close`` (release the runner, count the job) runs however it ends."""

    on_close: Callable[[int], Awaitable[None]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.on_close is not None:
                await self.on_close(self.status_code)


async def first_of(
    work: Awaitable[_T],
    lost: asyncio.Event,
    disconnected: Awaitable[None],
    lost_message: str = "the runner failed while serving this request; retry",
) -> _T:
    """``work``'s result, unless ``lost`` is set (a 500 saying ``lost_message``) or the client leaves
    (:class:`JobCancelledError`) first."""
    task = asyncio.ensure_future(work)
    lost_wait = asyncio.ensure_future(lost.wait())
    gone = asyncio.ensure_future(disconnected)
    try:
        await asyncio.wait({task, lost_wait, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in (lost_wait, gone):
            waiter.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    if gone.done() and not gone.cancelled():
        raise JobCancelledError("the client went away")
    raise PipelineFailedError(lost_message)


async def disconnected(request: Request, body_done: asyncio.Event) -> None:
    """Returns when the client disconnects (only listened for once its body has been read)."""
    await body_done.wait()
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def release(upstream: aiohttp.ClientResponse) -> None:
    """Reuse the runner connection only after a complete answer; otherwise close it, which also tells
    the runner to stop (e.g. an LLM stream whose client went away)."""
    if upstream.content.at_eof():
        upstream.release()
    else:
        upstream.close()


def when_sent(response: Response, done: Callable[[int], None]) -> Response:
    """Call ``done(status)`` once ``response`` has been sent: at once for a whole answer, at the end of the
    stream (however it ends) for a :class:`RelayedStream`."""
    if not isinstance(response, RelayedStream):
        done(response.status_code)
        return response
    inner = response.on_close

    async def close(status: int) -> None:
        if inner is not None:
            await inner(status)
        done(status)

    response.on_close = close
    return response


async def read_at_most(chunks: AsyncIterable[bytes], limit: int, too_large: Callable[[], Exception]) -> bytes:
    """A body read whole from ``chunks``; ``too_large()`` is raised as soon as it passes ``limit`` bytes."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise too_large()
    return bytes(body)
