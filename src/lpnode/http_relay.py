"""Pieces every HTTP relay in lpnode uses: racing an upstream call against the client leaving (or the upstream
going away), closing an upstream answer properly, a streamed answer whose clean-up always runs, and relaying a
WebSocket both ways."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from lpnode.errors import CANCELLED_STATUS, JobCancelledError, PipelineFailedError

_T = TypeVar("_T")


CUT_OFF_STATUS = 502
"""What a :class:`RelayedStream` counts as when its producer broke off (:meth:`RelayedStream.cut_off`)."""


class RelayedStream(StreamingResponse):
    """A streamed answer whose ``on_close`` (release the runner, count the job) runs however it ends.

    ``on_close`` gets the status the stream ended with: its ``status_code`` once the whole body was sent;
    ``CANCELLED_STATUS`` (499) if the client went away before that; ``CUT_OFF_STATUS`` (502) if the body
    ended early otherwise (its producer raised, or called :meth:`cut_off`). The client saw the status line
    in every case; what is counted is whether it got the whole answer.
    """

    on_close: Callable[[int], Awaitable[None]] | None = None
    relays: RelayedStream | None = None
    """The stream whose body this one's producer reads (e.g. to translate it): its cut-off is this one's."""
    _cut_off = False

    def cut_off(self) -> None:
        """The producer lost its upstream and ended the body early: the stream was not served whole."""
        self._cut_off = True

    @property
    def was_cut_off(self) -> bool:
        """Whether :meth:`cut_off` was called, here or on the stream this one relays."""
        return self._cut_off or (self.relays is not None and self.relays.was_cut_off)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sent_whole = client_gone = False

        async def watched_receive() -> Message:
            nonlocal client_gone
            message = await receive()
            # A server also reports a disconnect once the answer is complete; only one before counts.
            if message["type"] == "http.disconnect" and not sent_whole:
                client_gone = True
            return message

        async def watched_send(message: Message) -> None:
            nonlocal sent_whole
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                sent_whole = True

        try:
            await super().__call__(scope, watched_receive, watched_send)
        except (OSError, ClientDisconnect):  # ASGI 2.4: a send after the client left raises
            client_gone = True
            raise
        finally:
            if self.on_close is not None:
                if client_gone:
                    status = CANCELLED_STATUS
                elif not sent_whole or self.was_cut_off:
                    status = CUT_OFF_STATUS
                else:
                    status = self.status_code
                await self.on_close(status)


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


def websocket_url(url: str) -> str:
    """``http(s)://`` → ``ws(s)://``."""
    if url.startswith("https://"):
        return "wss://" + url.removeprefix("https://")
    if url.startswith("http://"):
        return "ws://" + url.removeprefix("http://")
    return url


async def pump_websocket(receive: Receive, send: Send, upstream: aiohttp.ClientWebSocketResponse) -> None:
    """Accept the caller's WebSocket (with ``upstream``'s subprotocol) and pass messages both ways until either
    side closes; the other side is then closed with the same code, and ``upstream`` is closed in every case."""
    accept: dict[str, Any] = {"type": "websocket.accept"}
    if upstream.protocol:
        accept["subprotocol"] = upstream.protocol
    await send(accept)
    to_upstream = asyncio.ensure_future(_caller_to_upstream(receive, upstream))
    to_caller = asyncio.ensure_future(_upstream_to_caller(upstream, send))
    try:
        await asyncio.wait({to_upstream, to_caller}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (to_upstream, to_caller):
            task.cancel()
        await asyncio.gather(to_upstream, to_caller, return_exceptions=True)
        await upstream.close()


async def _caller_to_upstream(receive: Receive, upstream: aiohttp.ClientWebSocketResponse) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            await upstream.close(code=int(message.get("code", 1000)))
            return
        if message.get("bytes") is not None:
            await upstream.send_bytes(message["bytes"])
        elif message.get("text") is not None:
            await upstream.send_str(message["text"])


async def _upstream_to_caller(upstream: aiohttp.ClientWebSocketResponse, send: Send) -> None:
    async for message in upstream:
        if message.type == aiohttp.WSMsgType.TEXT:
            await send({"type": "websocket.send", "text": message.data})
        elif message.type == aiohttp.WSMsgType.BINARY:
            await send({"type": "websocket.send", "bytes": message.data})
        else:
            break
    with contextlib.suppress(Exception):  # the caller may be gone already
        await send({"type": "websocket.close", "code": upstream.close_code or 1000})
