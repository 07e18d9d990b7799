"""Relaying a caller's request to a runner app through its orchestrator: the headers that go each way, an
answer streamed back as it comes (SSE flushed chunk by chunk), and a WebSocket pumped both ways.

A caller may rely on: method, path below the app, query string and body reach the app unchanged; hop-by-hop
headers and ``Host`` are not passed on in either direction; with API keys on, the caller's ``Authorization``
(its gateway key) is not passed on either, otherwise it is (a runner started with ``--auth-token`` reads it);
answers are never decompressed nor buffered whole; a caller going away closes the upstream connection, which
ends the app's work.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import aiohttp

from lpnode.http_relay import RelayedStream, release
from lpnode.logs import log_event

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
