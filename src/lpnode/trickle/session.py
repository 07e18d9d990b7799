"""The aiohttp session the trickle clients use, and reading trickle headers off a response."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import weakref
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp.connector import Connection
from multidict import CIMultiDictProxy

CONNECT_TIMEOUT = 10.0
"""Seconds to set up a connection. There is no overall timeout: segments stream for as long as they last."""

TlsVerify = bool | ssl.SSLContext
"""``False`` (the default, as Livepeer's clients do: orchestrators use self-signed certificates), ``True``
(system trust store) or a context trusting a given certificate."""


class _Connector(aiohttp.TCPConnector):
    """Remembers its connections' transports, so closing can end them all at once.

    A request cancelled while connected (a preconnect no longer needed) or answered with ``Connection: close``
    closes its TLS connection gracefully in the background; if the event loop stops right after (a command
    exiting), that connection is left half-closed. :func:`close_session` aborts whatever is left instead.

    A connection being made is never cancelled half-way: asyncio leaks the socket of a TLS connection cancelled
    between its transport's creation and the protocol's ``connection_made`` (nothing is left to abort it). A
    request cancelled while connecting lets the connection finish in the background and aborts it then;
    :func:`close_session` waits for such connections (at most the connect timeout) before it returns.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._transports: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()
        self._making: set[asyncio.Future[Any]] = set()

    async def _wrap_create_connection(self, *args: Any, **kwargs: Any) -> Any:
        making = asyncio.ensure_future(super()._wrap_create_connection(*args, **kwargs))
        self._making.add(making)
        making.add_done_callback(self._making.discard)
        try:
            return await asyncio.shield(making)
        except asyncio.CancelledError:
            making.add_done_callback(_abort_made)
            raise

    async def wait_connecting(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) for connections still being made to be made, or to fail."""
        if self._making:
            await asyncio.wait(list(self._making), timeout=timeout)

    async def connect(
        self, req: aiohttp.ClientRequest, traces: list[Any], timeout: aiohttp.ClientTimeout
    ) -> Connection:
        connection = await super().connect(req, traces, timeout)
        with contextlib.suppress(TypeError):  # a transport type that cannot be weakly referenced
            if connection.transport is not None:
                self._transports.add(connection.transport)
        return connection

    def abort_all(self) -> None:
        for transport in list(self._transports):
            transport.abort()  # type: ignore[attr-defined]
        self._transports.clear()


def _abort_made(making: asyncio.Future[Any]) -> None:
    """A connection made for a request that no longer wants it: end it."""
    if not making.cancelled() and making.exception() is None:
        transport, _ = making.result()
        transport.abort()


def new_session(verify_tls: TlsVerify = False) -> aiohttp.ClientSession:
    """A session for one publisher or subscriber. A request given ``trace_request_ctx=<asyncio.Event>`` has the
    event set once its head is sent (so a wait for the answer can be timed apart from connecting)."""
    return aiohttp.ClientSession(
        connector=_Connector(ssl=verify_tls, limit=0),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
        trace_configs=[_head_sent_trace()],
    )


def _head_sent_trace() -> aiohttp.TraceConfig:
    async def head_sent(session: aiohttp.ClientSession, context: SimpleNamespace, params: Any) -> None:
        event = context.trace_request_ctx
        if isinstance(event, asyncio.Event):
            event.set()

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(head_sent)
    return trace


async def close_session(session: aiohttp.ClientSession) -> None:
    """Close ``session`` and end every connection it opened, including ones still closing."""
    connector = session.connector
    if isinstance(connector, _Connector):
        await connector.wait_connecting(CONNECT_TIMEOUT)
    await session.close()
    if isinstance(connector, _Connector):
        connector.abort_all()
        for _ in range(2):  # an aborted socket is closed on the loop's next turn: before the caller's loop ends
            await asyncio.sleep(0)


def int_header(headers: CIMultiDictProxy[str], name: bytes) -> int | None:
    """The integer value of header ``name``, or None when absent or not an integer."""
    value = headers.get(name.decode())
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def has_header(headers: CIMultiDictProxy[str], name: bytes) -> bool:
    return name.decode() in headers
