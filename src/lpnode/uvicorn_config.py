"""uvicorn as every lpnode role runs it: httptools, with :mod:`lpnode.http_limits` applied to each connection.

uvicorn's httptools server has no limit on a request head's size or header count (llhttp parses a 32 MB head
and uvicorn keeps every header) and no timeout for a client that never finishes its head: a connection that
sends nothing, or a byte now and then, stays open for ever. :class:`LimitedHttpToolsProtocol` adds both, while
parsing, so an oversize head is refused before it is held whole; :func:`uvicorn_config` builds the
``uvicorn.Config`` with that protocol, the keep-alive timeout and :class:`~lpnode.http_limits.RequestLimits`
around the app (the header count again, and the body rate).
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from lpnode.errors import JobError, RequestHeaderFieldsTooLargeError, RequestTimeoutError
from lpnode.http_limits import DEFAULT_LIMITS, TRICKLE_PATHS, ASGIApp, HttpLimits, RequestLimits

LINGER_SECONDS = 2.0
"""How long the rest of a body is read and dropped after an early answer before the connection is closed."""


class _HeadRefused(Exception):
    """Raised from a parser callback to stop parsing a head that was answered with an error."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a cap on the head's bytes and header count (431, then closed) and a
    deadline for each head (closed; 408 when part of it had arrived). ``limits`` is set per server by
    :func:`uvicorn_config`."""

    limits: ClassVar[HttpLimits] = DEFAULT_LIMITS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._awaiting_head = True  # the next bytes belong to a request head
        self._head_bytes = 0  # bytes received while a head was incomplete
        self._header_count = 0
        self._header_size = 0  # names and values of this head so far
        self._refused = False
        self._head_completed = False  # a head ended during the read being parsed
        self._draining = False  # answered early; dropping the rest of the body until the connection closes

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        began_in_head = self._awaiting_head
        self._head_completed = False
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self._refused:
                return
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if began_in_head and self._awaiting_head and not self._head_completed:
            # A read that was all head (one that ends a head, or a body, and starts the next head is not counted:
            # at most one read more; a whole request in one read is not a head at all). httptools buffers a header's
            # name and value until both are whole, so a single huge header is counted here, one read at a time,
            # before it is ever handed over.
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes:
                self._refuse(self._too_large())

    # Parser callbacks ----------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_head = True
        self._header_count = 0
        self._header_size = 0
        if self._head_timer is None:
            self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_header_bytes:
            self._refuse(self._too_large())
            raise _HeadRefused

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._header_size += len(name) + len(value)
        if self._header_size + len(self.url) > self.limits.max_header_bytes:
            self._refuse(self._too_large())
            raise _HeadRefused
        if self._header_count > self.limits.max_headers:
            most = self.limits.max_headers
            self._refuse(
                RequestHeaderFieldsTooLargeError(f"the request has over {most} headers; at most {most} are accepted")
            )
            raise _HeadRefused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._head_completed = True
        self._head_bytes = 0
        self._disarm_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        if self._draining:
            self.transport.close()
            return
        super().on_message_complete()
        self._awaiting_head = True

    def on_response_complete(self) -> None:
        unread = self.cycle is not None and self.cycle.more_body
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if unread:
            # Answered before its body was read (a 413 part-way through an upload): the rest is read and
            # dropped for a moment, so the client sees the answer rather than a reset, then the connection ends.
            self._draining = True
            self._disarm_head_timer()
            self._head_timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)
        elif not self.pipeline and self._awaiting_head:
            self._arm_head_timer()

    # The head's deadline -------------------------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(self.limits.head_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_bytes:
            seconds = f"{self.limits.head_timeout:g}"
            self._refuse(RequestTimeoutError(f"the request head did not arrive within {seconds} s"))
        else:
            self.transport.close()  # idle: nothing to answer

    # Refusing ------------------------------------------------------------------------------------------

    def _too_large(self) -> JobError:
        kib = self.limits.max_header_bytes // 1024
        return RequestHeaderFieldsTooLargeError(f"the request head is over {kib} KiB; send less in headers")

    def _refuse(self, error: JobError) -> None:
        """Answer ``error`` in plain text, unless an answer is under way, and close the connection."""
        if self._refused:
            return
        self._refused = True
        self._disarm_head_timer()
        answering = self.cycle is not None and not self.cycle.response_complete and self.cycle.response_started
        if not answering and not self.transport.is_closing():
            body = (error.message + "\n").encode()
            reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}.get(error.status_code, b"")
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n%s" % (error.status_code, reason, len(body), body)
            )
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.close()


def _protocol_for(limits: HttpLimits) -> type[LimitedHttpToolsProtocol]:
    if limits == DEFAULT_LIMITS:
        return LimitedHttpToolsProtocol
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})


def uvicorn_config(
    app: ASGIApp, *, limits: HttpLimits = DEFAULT_LIMITS, unmetered: tuple[str, ...] = TRICKLE_PATHS, **options: Any
) -> uvicorn.Config:
    """A ``uvicorn.Config`` serving ``app`` with ``limits`` (httptools; ``options`` are uvicorn's own, e.g.
    ``loop``, ``lifespan``, ``timeout_graceful_shutdown``). Requests under the ``unmetered`` path prefixes
    (trickle's by default) skip the body rate."""
    return uvicorn.Config(
        RequestLimits(app, limits, unmetered=unmetered),
        http=_protocol_for(limits),
        timeout_keep_alive=max(1, round(limits.keep_alive_timeout)),
        h11_max_incomplete_event_size=limits.max_header_bytes,
        **options,
    )
