"""The trickle server: an ASGI app speaking go-livepeer's trickle protocol over HTTP.

Mount it at any prefix (the orchestrator uses ``/ai/trickle/``); paths below are relative to it.

    POST   /{channel}          create the channel (``Expect-Content``: its MIME type)
    POST   /{channel}/{seq}    publish segment seq (-1: the next one); the body streams through to readers
    GET    /{channel}/{seq}    read segment seq (-1: the next one, -2: the one being written)
    GET    /{channel}/next     the next seq to be written, as text and in ``Lp-Trickle-Latest``
    DELETE /{channel}/{seq}    close segment seq (wakes its readers)
    DELETE /{channel}          close and delete the channel

Status codes and headers follow go-livepeer (see docs/trickle.md): 404 for an unknown channel, 470 for a
seq the channel no longer (or not yet) holds, ``Lp-Trickle-Seq`` / ``Lp-Trickle-Latest`` /
``Lp-Trickle-Closed`` headers, a GET's headers sent only with its first body byte.

Channels are made in-process (:meth:`TrickleServer.create_channel`), by ``POST /{channel}`` or by the first
publish when ``autocreate`` is on, or by ``POST /{channel}`` carrying ``Authorization: <create_secret>``.
Channels with no new segment for ``idle_timeout`` seconds are deleted by a sweep that starts with the first
request (or the ASGI lifespan, when served on its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from lpnode.http_limits import head_refusal
from lpnode.logs import log_event
from lpnode.protocol.asgi import Receive, Scope, Send
from lpnode.trickle.channels import (
    CURRENT_SEQ,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CHANNELS,
    DEFAULT_MAX_SEGMENT_BYTES,
    DEFAULT_SWEEP_INTERVAL,
    NEXT_SEQ,
    Channel,
    ChannelRegistry,
    Segment,
    SegmentFullError,
    TooManyChannelsError,
)
from lpnode.trickle.headers import CLOSED, CLOSED_VALUE, EXPECT_CONTENT, LATEST, RESET, SEQ, STATUS_SEQ_GONE

log = logging.getLogger("lpnode.trickle")
_T = TypeVar("_T")

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class TrickleSettings:
    """How a trickle server behaves; the defaults are go-livepeer's, except the limits it does not have."""

    autocreate: bool = False
    """Create unknown channels on ``POST /{channel}`` and on a first publish (go-livepeer ``Autocreate``)."""
    create_secret: str = ""
    """When set, ``POST /{channel}`` with ``Authorization: <secret>`` creates the channel even without
    autocreate (a wrong secret gets 403)."""
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    sweep_interval: float = DEFAULT_SWEEP_INTERVAL
    max_segment_bytes: int = DEFAULT_MAX_SEGMENT_BYTES
    max_channels: int = DEFAULT_MAX_CHANNELS


class TrickleServer:
    """The channels of one server and the ASGI app serving them (the instance itself is the app)."""

    def __init__(self, settings: TrickleSettings | None = None) -> None:
        self.settings = settings or TrickleSettings()
        self.channels = ChannelRegistry(self.settings.max_segment_bytes, self.settings.max_channels)
        self._sweeper: asyncio.Task[None] | None = None

    # -- in-process API -------------------------------------------------------------------------------

    def create_channel(self, name: str, mime_type: str = "") -> Channel:
        """The channel ``name``, made if needed (an existing one keeps its MIME type)."""
        existed = self.channels.get(name) is not None
        channel = self.channels.create(name, mime_type)
        if not existed:
            log_event(log, "trickle channel created", channel=name, mime_type=mime_type)
        return channel

    def delete_channel(self, name: str) -> bool:
        """Close and delete ``name``: its readers end and its publishers are told it is closed."""
        deleted = self.channels.delete(name)
        if deleted:
            log_event(log, "trickle channel deleted", channel=name)
        return deleted

    def start(self) -> None:
        """Start the idle sweep (idempotent; needs a running event loop)."""
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def close(self) -> None:
        """Stop the sweep and close every channel."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        self.channels.close_all()

    def sweep(self) -> list[str]:
        """Delete idle channels now; their names."""
        swept = self.channels.sweep(self.settings.idle_timeout)
        for name in swept:
            log_event(log, "trickle channel idle; deleted", channel=name, idle_timeout=self.settings.idle_timeout)
        return swept

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval)
            self.sweep()

    # -- ASGI -----------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        refusal = head_refusal(scope)  # standalone, hypercorn caps the head's bytes but not its headers
        if refusal is not None:
            close = [(b"connection", b"close")] if str(scope.get("http_version")).startswith("1") else []
            await _respond(send, refusal.status_code, refusal.message, close)
            return
        self.start()
        route = _route_path(scope).strip("/")
        parts = route.split("/") if route else []
        method = scope["method"]
        handler: Callable[..., Awaitable[None]] | None
        if len(parts) == 1:
            handler = {"POST": self._create, "DELETE": self._delete_channel}.get(method)
        elif len(parts) == 2:
            handler = {"POST": self._publish, "GET": self._read, "DELETE": self._delete_segment}.get(method)
        else:
            await _respond(send, 404, "404 page not found")
            return
        if handler is None:
            await _respond(send, 405, "Method Not Allowed", [(b"allow", _allowed(len(parts)))])
            return
        await handler(scope, receive, send, *parts)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _create(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        if self.channels.get(name) is not None:
            await _respond(send, 200)
            return
        secret = self.settings.create_secret
        given = _header(scope, b"authorization")
        if secret and given:
            if not hmac.compare_digest(given.encode(), secret.encode()):
                await _respond(send, 403, "invalid Authorization secret for creating a channel")
                return
        elif not self.settings.autocreate:
            await _respond(send, 404, "Stream not found")
            return
        try:
            self.create_channel(name, _header(scope, EXPECT_CONTENT))
        except TooManyChannelsError as exc:
            await _respond(send, 503, str(exc), [(b"retry-after", b"60")])
            return
        await _respond(send, 200)

    async def _delete_channel(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        if not self.delete_channel(name):
            await _respond(send, 400, "Invalid stream")
            return
        await _respond(send, 200)

    async def _delete_segment(self, scope: Scope, receive: Receive, send: Send, name: str, seq_text: str) -> None:
        channel = self.channels.get(name)
        if channel is None:
            await _respond(send, 404, "Stream not found")
            return
        seq = _parse_seq(seq_text)
        if seq is None:
            await _respond(send, 400, "Invalid idx")
            return
        if not channel.close_segment(seq):
            await _respond(send, 400, "Nonexistent segment")
            return
        await _respond(send, 200)

    async def _publish(self, scope: Scope, receive: Receive, send: Send, name: str, seq_text: str) -> None:
        channel = self.channels.get(name)
        if channel is None and self.settings.autocreate:
            try:
                channel = self.create_channel(name, _header(scope, b"content-type"))
            except TooManyChannelsError as exc:
                await _respond(send, 503, str(exc), [(b"retry-after", b"60"), (b"connection", b"close")])
                return
        if channel is None:
            # Connection: close wakes Go publishers waiting on a preconnect.
            await _respond(send, 404, "Stream not found", [(b"connection", b"close")])
            return
        seq = _parse_seq(seq_text, lowest=NEXT_SEQ)
        if seq is None:
            await _respond(send, 400, "Invalid idx")
            return
        segment = channel.for_write(seq)
        if _header(scope, RESET):
            channel.reset_before(segment.seq)
        await _Upload(channel, segment, receive, send).run()

    async def _read(self, scope: Scope, receive: Receive, send: Send, name: str, seq_text: str) -> None:
        channel = self.channels.get(name)
        if channel is None:
            await _respond(send, 404, "Stream not found")
            return
        if seq_text == "next":
            headers: Headers = [(LATEST, str(channel.next_write).encode())]
            if channel.closed:
                headers.append((CLOSED, CLOSED_VALUE))
            await _respond(send, 200, str(channel.next_write), headers, newline=False)
            return
        seq = _parse_seq(seq_text, lowest=CURRENT_SEQ)
        if seq is None:
            await _respond(send, 400, "Invalid idx")
            return
        found = channel.for_read(seq)
        if found.segment is None:
            headers = [(LATEST, str(found.next_write).encode()), (SEQ, str(found.seq).encode())]
            if found.closed:
                headers.append((CLOSED, CLOSED_VALUE))
            await _respond(send, 200 if found.closed else STATUS_SEQ_GONE, "Entry not found", headers, newline=False)
            return
        await _first_of(_send_segment(channel, found.segment, found.next_write, send), _disconnected(receive))


class _Upload:
    """One publish: the request body, chunk by chunk, into ``segment``."""

    def __init__(self, channel: Channel, segment: Segment, receive: Receive, send: Send) -> None:
        self.channel = channel
        self.segment = segment
        self.receive = receive
        self.send = send
        self.received = 0

    async def run(self) -> None:
        seq = self.segment.seq
        while True:
            message = await _first_of(self.receive(), self.segment.wait_closed())
            if message is None:  # the segment was closed under us (DELETE, channel closed, replaced, reset)
                await self._closed_under_us()
                return
            if message["type"] == "http.disconnect":
                self.segment.abort()
                log_event(log, "trickle publisher went away", logging.DEBUG, channel=self.channel.name, seq=seq)
                return
            body: bytes = message.get("body", b"")
            if body:
                if self.received == 0:
                    self.channel.started(seq)
                self.received += len(body)
                try:
                    self.segment.write(body)
                except SegmentFullError as exc:
                    log_event(log, "trickle segment too large; cut off", logging.WARNING, channel=self.channel.name)
                    headers = [(SEQ, str(seq).encode()), (b"connection", b"close")]
                    await _respond(self.send, 413, f"segment {seq} is too large: {exc}", headers)
                    return
            if not message.get("more_body", False):
                self.segment.close()
                await _respond(self.send, 200, None, self._headers())
                return

    async def _closed_under_us(self) -> None:
        if self.received == 0:
            self.channel.given_up(self.segment.seq)
        await _respond(self.send, 200, None, [*self._headers(), (b"connection", b"close")])

    def _headers(self) -> Headers:
        headers: Headers = [(SEQ, str(self.segment.seq).encode())]
        if self.channel.closed:
            headers.append((CLOSED, CLOSED_VALUE))
        return headers


async def _send_segment(channel: Channel, segment: Segment, latest: int, send: Send) -> None:
    """Stream ``segment`` to a reader; headers go out with the first byte."""
    sent = 0
    async for chunk in segment.chunks():
        if sent == 0:
            headers: Headers = [(SEQ, str(segment.seq).encode())]
            if segment.seq != latest:
                headers.append((LATEST, str(latest).encode()))
            if channel.mime_type:
                headers.append((b"content-type", channel.mime_type.encode("latin-1", "replace")))
            await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        sent += len(chunk)
    if segment.aborted:
        # Returning without ending the body makes the server drop the response: the reader sees it cut off
        # (an incomplete body) rather than a short segment that looks whole.
        return
    if sent:
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    # Ended empty: given up by its publisher, or the channel closed.
    headers = [(SEQ, str(segment.seq).encode())]
    if channel.closed:
        await _respond(send, 200, None, [*headers, (CLOSED, CLOSED_VALUE)])
    else:
        await _respond(send, STATUS_SEQ_GONE, None, [*headers, (LATEST, str(channel.next_write).encode())])


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _first_of(work: Awaitable[_T], other: Awaitable[Any]) -> _T | None:
    """``work``'s result, or None when ``other`` finishes first (``work`` is then cancelled)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(other)
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
        await asyncio.wait({task, watcher})
    if task.cancelled():
        return None
    return task.result()


async def _respond(
    send: Send, status: int, text: str | None = "", headers: Headers | None = None, *, newline: bool = True
) -> None:
    """A whole response; ``text`` (when not None) is a plain-text body, with a newline like Go's http.Error."""
    all_headers = list(headers or [])
    body = b""
    if text:
        body = (text + ("\n" if newline else "")).encode()
        all_headers.append((b"content-type", b"text/plain; charset=utf-8"))
    all_headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :]
    return path


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key.lower() == name:
            text: str = value.decode("latin-1")
            return text.strip()
    return ""


def _parse_seq(text: str, lowest: int = 0) -> int | None:
    """``text`` as a seq, or None when it is not an integer or is below ``lowest`` (the aliases allowed)."""
    try:
        seq = int(text)
    except ValueError:
        return None
    return seq if seq >= lowest else None


def _allowed(depth: int) -> bytes:
    return b"POST, DELETE" if depth == 1 else b"GET, POST, DELETE"
