"""What every lpnode HTTP server allows one connection and one request, whatever the role: the size of a
request head, how long a client may take to send it, and how slowly it may send a body.

The limits (:class:`HttpLimits`, finite defaults, documented in docs/protocol.md "Connection limits"):

- a request head (request line and headers) of at most ``max_header_bytes`` (64 KiB) and ``max_headers``
  (100) header lines; beyond either the answer is ``431 Request Header Fields Too Large`` and the connection
  is closed;
- a client has ``head_timeout`` (10 s) to send a complete request head, counted from connecting or from the
  end of the previous answer on a kept-alive connection; after that the connection is closed (with a ``408``
  when part of a head had arrived);
- a connection idle between requests is closed after ``keep_alive_timeout`` (5 s) (the orchestrator's
  same-port server keeps its own, longer one for gRPC clients);
- a request body must arrive at ``min_body_rate`` (1 KiB/s) on average once ``body_grace`` (10 s) has been
  spent waiting for it; a slower one is answered ``408 Request Timeout`` and the connection closed. Only the
  time the server spends waiting for the client counts, never the time the app takes to read.

The servers enforce the head limits while parsing (:mod:`lpnode.uvicorn_config` for uvicorn, hypercorn's own
settings in :mod:`lpnode.protocol.same_port`); :class:`RequestLimits` is the ASGI middleware that enforces the
body rate, and the header count where a server has no count of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from lpnode.errors import JobError, RequestHeaderFieldsTooLargeError, RequestTimeoutError, go_text_response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class HttpLimits:
    """Per-connection and per-request limits of an HTTP server; every field has a finite default."""

    max_header_bytes: int = 64 * 1024
    """Request line plus every header name and value, in bytes."""
    max_headers: int = 100
    """Header lines in one request."""
    head_timeout: float = 10.0
    """Seconds a client has to send a complete request head, from connecting or from the previous answer."""
    keep_alive_timeout: float = 5.0
    """Seconds an idle kept-alive connection stays open (uvicorn servers)."""
    body_grace: float = 10.0
    """Seconds of waiting for a body allowed before ``min_body_rate`` applies."""
    min_body_rate: float = 1024.0
    """Bytes per second a body must average, over the time spent waiting for it, once past ``body_grace``."""


DEFAULT_LIMITS = HttpLimits()
TRICKLE_PATHS = ("/ai/trickle/",)
"""Where go-livepeer (and every lpnode role that hosts trickle channels) serves trickle: a publisher there opens
its next segment's upload before it has data for it, so these bodies are exempt from the body rate."""


def head_refusal(scope: Scope, limits: HttpLimits = DEFAULT_LIMITS) -> JobError | None:
    """The error for a request whose head is over ``limits`` (too many headers or too many bytes), else None."""
    headers: list[tuple[bytes, bytes]] = scope.get("headers") or []
    if len(headers) > limits.max_headers:
        return RequestHeaderFieldsTooLargeError(
            f"the request has {len(headers)} headers; at most {limits.max_headers} are accepted"
        )
    size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
    size += sum(len(name) + len(value) for name, value in headers)
    if size > limits.max_header_bytes:
        return RequestHeaderFieldsTooLargeError(
            f"the request head is over {limits.max_header_bytes // 1024} KiB; send less in headers"
        )
    return None


class RequestLimits:
    """ASGI middleware: refuses a request head over ``limits`` (431) and a body sent slower than
    ``limits.min_body_rate`` (408, connection closed), for every HTTP request to ``app``.

    Requests whose path starts with one of ``unmetered`` keep the head check but not the body rate: streams
    that are meant to idle (by default trickle's, :data:`TRICKLE_PATHS`).
    """

    def __init__(
        self, app: ASGIApp, limits: HttpLimits = DEFAULT_LIMITS, *, unmetered: tuple[str, ...] = TRICKLE_PATHS
    ) -> None:
        self.app = app
        self.limits = limits
        self.unmetered = unmetered

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = head_refusal(scope, self.limits)
        if refusal is not None:
            await _answer(refusal, scope, receive, send)
            return
        path: str = scope.get("path", "")
        if any(path.startswith(prefix) for prefix in self.unmetered):
            await self.app(scope, receive, send)
            return
        await _BodyRate(self.app, self.limits, scope, receive, send).run()


class _BodyRate:
    """One request whose body must keep to the minimum rate; see :class:`RequestLimits`."""

    def __init__(self, app: ASGIApp, limits: HttpLimits, scope: Scope, receive: Receive, send: Send) -> None:
        self.app, self.limits, self.scope = app, limits, scope
        self._receive, self._send = receive, send
        self.received = 0
        self.waited = 0.0
        self.body_done = False
        self.started = False  # the app has sent its answer's head
        self.refused = False  # we answered 408: the app's own answer is dropped

    async def run(self) -> None:
        try:
            await self.app(self.scope, self.receive, self.send)
        except Exception:
            if not self.refused:
                raise
            # The app failed on the disconnect we handed it; the client already has its 408.

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        if self.body_done:
            return await self._receive()
        allowed = self.limits.body_grace + self.received / self.limits.min_body_rate - self.waited
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            async with asyncio.timeout(max(allowed, 0.0)):
                message = await self._receive()
        except TimeoutError:
            self.waited += loop.time() - began
            await self._too_slow()
            return {"type": "http.disconnect"}
        self.waited += loop.time() - began
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self.body_done = not message.get("more_body", False)
        return message

    async def send(self, message: Message) -> None:
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

    async def _too_slow(self) -> None:
        self.refused = True
        if self.started:
            return  # too late for a 408; the app sees the disconnect and ends its answer
        rate = self.limits.min_body_rate
        error = RequestTimeoutError(
            f"the request body arrived too slowly ({self.received} bytes in {self.waited:.0f} s); "
            f"send at least {rate / 1024:g} KiB/s"
        )
        await _answer(error, self.scope, self._no_body, self._send)

    @staticmethod
    async def _no_body() -> Message:
        return {"type": "http.disconnect"}


async def _answer(error: JobError, scope: Scope, receive: Receive, send: Send) -> None:
    """``error`` in plain text; an HTTP/1 connection is closed after it (its body may be half-read)."""
    response = go_text_response(error)
    if str(scope.get("http_version", "1.1")).startswith("1"):
        response.headers["connection"] = "close"
    await response(scope, receive, send)
