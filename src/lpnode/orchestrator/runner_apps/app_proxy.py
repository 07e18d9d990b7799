"""The reverse proxy in front of runner apps: HTTP (streamed both ways, SSE flushed as it comes) and WebSocket.

A caller may rely on: the outbound URL is the target's path joined with the app path, the query string copied
verbatim; hop-by-hop headers, ``Host``, ``Forwarded``/``X-Forwarded-*`` and any client copy of the four
``Livepeer-*`` session headers are dropped, the orchestrator's own four added; bodies are never buffered whole
nor decompressed; the client going away cancels the upstream call; an upstream that cannot be reached gives
502 with the reason in plain text. No timeout is imposed on a running exchange (long SSE and WebSocket sessions
are the point).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from lpnode.http_relay import pump_websocket
from lpnode.logs import log_event
from lpnode.protocol.asgi import Receive, Scope, Send
from lpnode.protocol.runner_apps import INJECTED_HEADERS

log = logging.getLogger("lpnode.orchestrator.runner_apps")

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te", "trailer",
     "transfer-encoding", "upgrade", "host", "forwarded", "content-length"}
)  # fmt: skip
_INJECTED = frozenset(h.lower() for h in INJECTED_HEADERS)
_WS_OWN = frozenset(
    {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-protocol"}
)


def outbound_url(target: str, app_path: str, query: bytes, *, websocket: bool = False) -> str:
    """``target``'s path joined with ``app_path`` (``//`` collapsed), the query kept as sent."""
    parts = urlsplit(target)
    joined = "/" + "/".join(p for p in (parts.path.strip("/"), app_path.lstrip("/")) if p)
    if app_path.endswith("/") and not joined.endswith("/"):
        joined += "/"
    while "//" in joined:
        joined = joined.replace("//", "/")
    scheme = parts.scheme
    if websocket:
        scheme = "wss" if scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, joined, query.decode("latin-1"), ""))


def forward_headers(scope: Scope, injected: Mapping[str, str], *, websocket: bool = False) -> list[tuple[str, str]]:
    connection_listed: set[str] = set()
    raw: list[tuple[str, str]] = []
    for key, value in scope["headers"]:
        name, text = key.decode("latin-1").lower(), value.decode("latin-1")
        if name == "connection":
            connection_listed |= {t.strip().lower() for t in text.split(",")}
        raw.append((name, text))
    out = []
    for name, text in raw:
        if name in HOP_BY_HOP or name in connection_listed or name in _INJECTED or name.startswith("x-forwarded-"):
            continue
        if websocket and name in _WS_OWN:
            continue
        out.append((name, text))
    return out + list(injected.items())


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return ""


async def _respond(send: Send, status: int, text: str) -> None:
    body = (text + "\n").encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class AppProxy:
    """Proxies one request at a time to a runner app through a pooled aiohttp session."""

    def __init__(self, session: Callable[[], aiohttp.ClientSession]) -> None:
        self._session = session

    async def http(
        self, scope: Scope, receive: Receive, send: Send, target: str, app_path: str, injected: Mapping[str, str]
    ) -> int:
        """Relay one HTTP request; the status the client saw (499 if it left first, 502 if unreachable)."""
        has_body = bool(_header(scope, b"content-length").strip("0 ") or _header(scope, b"transfer-encoding"))
        body_done = asyncio.Event()
        if not has_body:
            body_done.set()

        async def body() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ConnectionResetError("client went away")
                chunk: bytes = message.get("body", b"")
                if chunk:
                    yield chunk
                if not message.get("more_body", False):
                    break
            body_done.set()

        headers = forward_headers(scope, injected)
        length = _header(scope, b"content-length")
        if length and has_body:
            headers.append(("content-length", length))
        url = outbound_url(target, app_path, scope.get("query_string", b""))
        seen: list[int] = []
        work = asyncio.ensure_future(self._exchange(scope, send, url, headers, body() if has_body else None, seen))
        watcher = asyncio.ensure_future(_client_gone(receive, body_done))
        try:
            await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (work, watcher):
                task.cancel()
            await asyncio.gather(work, watcher, return_exceptions=True)
        if work.cancelled() or work.exception() is not None:
            return 499
        return seen[0] if seen else 502

    async def _exchange(
        self,
        scope: Scope,
        send: Send,
        url: str,
        headers: list[tuple[str, str]],
        data: AsyncIterator[bytes] | None,
        seen: list[int],
    ) -> None:
        try:
            upstream_cm = self._session().request(
                scope["method"], url, headers=headers, data=data, allow_redirects=False, auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            )  # fmt: skip
            upstream = await upstream_cm.__aenter__()
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            log_event(log, "runner app unreachable", logging.WARNING, url=urlsplit(url).netloc, error=str(exc))
            seen.append(502)
            await _respond(send, 502, f"runner app unreachable: {exc}")
            return
        try:
            seen.append(upstream.status)
            out = [
                (key.lower(), value)
                for key, value in upstream.raw_headers
                if key.lower() == b"content-length" or key.lower().decode("latin-1") not in HOP_BY_HOP
            ]
            await send({"type": "http.response.start", "status": upstream.status, "headers": out})
            async for chunk in upstream.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (aiohttp.ClientError, OSError) as exc:
            log_event(log, "runner app answer cut off", logging.INFO, error=str(exc))
        finally:
            await upstream_cm.__aexit__(None, None, None)

    async def websocket(
        self, scope: Scope, receive: Receive, send: Send, target: str, app_path: str, injected: Mapping[str, str]
    ) -> None:
        """Relay one WebSocket: connect upstream first, accept with its subprotocol, then pump both ways."""
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        protocols = [p.strip() for p in _header(scope, b"sec-websocket-protocol").split(",") if p.strip()]
        url = outbound_url(target, app_path, scope.get("query_string", b""), websocket=True)
        try:
            upstream = await self._session().ws_connect(
                url, headers=forward_headers(scope, injected, websocket=True), protocols=protocols,
                autoclose=False, autoping=True, max_msg_size=0,
            )  # fmt: skip
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            log_event(log, "runner app websocket refused", logging.INFO, error=str(exc))
            await send({"type": "websocket.close", "code": 1011})
            return
        await pump_websocket(receive, send, upstream)


async def _client_gone(receive: Receive, body_done: asyncio.Event) -> None:
    await body_done.wait()
    while (await receive())["type"] != "http.disconnect":
        pass
