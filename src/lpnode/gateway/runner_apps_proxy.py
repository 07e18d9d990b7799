"""Relaying a caller's request to a runner app through its orchestrator: the headers that go each way, an
answer streamed back as it comes (SSE flushed chunk by chunk), and a WebSocket pumped both ways.

A caller may rely on: method, path below the app, query string and body reach the app unchanged; hop-by-hop
headers and ``Host`` are not passed on in either direction; with API keys on, the caller's ``Authorization``
(its gateway key) is not passed on either, otherwise it is (a runner started with ``--auth-token`` reads it);
answers are never decompressed nor buffered whole; a caller going away closes the upstream connection, which
ends the app's work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import aiohttp

from lpnode.http_relay import RelayedStream, release
from lpnode.logs import log_event
from lpnode.protocol.asgi import Receive, Send

log = logging.getLogger("lpnode.gateway.runner_apps")
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te", "trailer",
     "transfer-encoding", "upgrade", "host", "content-length"}
)  # fmt: skip
_WS_OWN = frozenset(
    {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-protocol"}
)


def request_headers(
    raw: Iterable[tuple[bytes, bytes]], *, keep_authorization: bool, websocket: bool = False
) -> list[tuple[str, str]]:
    """The caller's headers to send on (``raw`` as ASGI gives them)."""
    pairs = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in raw]
    listed = {t.strip().lower() for name, value in pairs if name == "connection" for t in value.split(",")}
    dropped = HOP_BY_HOP | listed | (_WS_OWN if websocket else frozenset())
    if not keep_authorization:
        dropped = dropped | {"authorization"}
    return [(name, value) for name, value in pairs if name not in dropped]


_OWN_ANSWER_HEADERS = frozenset({"date", "server"})
"""Set by the gateway's own server: the upstream copies would be duplicates."""


def answer_headers(upstream: aiohttp.ClientResponse) -> dict[str, str]:
    """The app's answer headers to give the caller (its length kept: the body passes unchanged)."""
    passed: dict[str, str] = {}
    for key, value in upstream.raw_headers:
        name = key.decode("latin-1").lower()
        if name in _OWN_ANSWER_HEADERS:
            continue
        if name == "content-length" or name not in HOP_BY_HOP:
            passed[name] = value.decode("latin-1")
    return passed


def relayed(
    upstream: aiohttp.ClientResponse, on_close: Callable[[int], Awaitable[None]] | None = None
) -> RelayedStream:
    """``upstream``'s answer streamed to the caller; the connection is released (or closed, when the answer did
    not end) however the stream ends."""

    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, OSError) as exc:
            response.cut_off()
            log_event(log, "runner app answer cut off", logging.INFO, problem=str(exc) or type(exc).__name__)

    headers = answer_headers(upstream)
    media_type = headers.pop("content-type", None)
    response = RelayedStream(chunks(), status_code=upstream.status, headers=headers, media_type=media_type)

    async def close(status: int) -> None:
        await release(upstream)
        if on_close is not None:
            await on_close(status)

    response.on_close = close
    return response


def websocket_url(url: str) -> str:
    """``http(s)://`` → ``ws(s)://``."""
    if url.startswith("https://"):
        return "wss://" + url.removeprefix("https://")
    if url.startswith("http://"):
        return "ws://" + url.removeprefix("http://")
    return url


async def pump_websocket(receive: Receive, send: Send, upstream: aiohttp.ClientWebSocketResponse) -> None:
    """Accept the caller's WebSocket (with the app's subprotocol) and pass messages both ways until either side
    closes; the other side is then closed with the same code."""
    accept: dict[str, Any] = {"type": "websocket.accept"}
    if upstream.protocol:
        accept["subprotocol"] = upstream.protocol
    await send(accept)
    to_app = asyncio.ensure_future(_caller_to_app(receive, upstream))
    to_caller = asyncio.ensure_future(_app_to_caller(upstream, send))
    try:
        await asyncio.wait({to_app, to_caller}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (to_app, to_caller):
            task.cancel()
        await asyncio.gather(to_app, to_caller, return_exceptions=True)
        await upstream.close()


async def _caller_to_app(receive: Receive, upstream: aiohttp.ClientWebSocketResponse) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            await upstream.close(code=int(message.get("code", 1000)))
            return
        if message.get("bytes") is not None:
            await upstream.send_bytes(message["bytes"])
        elif message.get("text") is not None:
            await upstream.send_str(message["text"])


async def _app_to_caller(upstream: aiohttp.ClientWebSocketResponse, send: Send) -> None:
    async for message in upstream:
        if message.type == aiohttp.WSMsgType.TEXT:
            await send({"type": "websocket.send", "text": message.data})
        elif message.type == aiohttp.WSMsgType.BINARY:
            await send({"type": "websocket.send", "bytes": message.data})
        else:
            break
    with contextlib.suppress(Exception):  # the caller may be gone already
        await send({"type": "websocket.close", "code": upstream.close_code or 1000})
