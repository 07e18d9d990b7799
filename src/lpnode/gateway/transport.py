"""Sending one request to one orchestrator before a deadline: the transport interface and its two implementations.

The gateway's job code never touches sockets: it hands a :class:`HopRequest` (URL, body, headers, deadline) to an
:class:`OrchestratorTransport` and gets a :class:`HopAnswer` back, or a :class:`HopError`. **The deadline bounds
the whole exchange** — connecting, waiting for the answer's head, and reading its body or its stream to the end:
an orchestrator that accepts a job and never answers (or stops mid-answer) is abandoned when the deadline passes,
with :class:`HopTimeout`. Nothing here retries or blames; that is :mod:`lpnode.gateway.tries`.

- :class:`AiohttpTransport`: the real one, over a pooled ``aiohttp`` session.
- :class:`AsgiTransport`: in-process, calling ASGI apps by their base URL (tests; embedding).

HopError                  the exchange failed: no answer, a broken answer, or the deadline
└── HopTimeout            the deadline passed first
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from starlette.types import ASGIApp, Message

from lpnode.http_relay import read_at_most

MIN_SECONDS = 0.001


class HopError(Exception):
    """The exchange with the orchestrator failed; ``str()`` says how, for logs and the caller's reasons."""


class HopTimeout(HopError):
    """The deadline passed before the exchange ended."""


@dataclass(frozen=True)
class HopRequest:
    """``POST url`` with ``body`` and ``headers``; ``deadline`` is a ``time.monotonic()`` instant."""

    url: str
    body: bytes
    headers: Mapping[str, str]
    deadline: float

    def seconds_left(self) -> float:
        return self.deadline - time.monotonic()


class HopAnswer(Protocol):
    """An orchestrator's answer. Its body is read once, whole (:meth:`read`) or as it arrives (:meth:`chunks`),
    each bounded by the request's deadline; :meth:`close` must be called however the answer is used."""

    status: int
    headers: CIMultiDictProxy[str]

    @property
    def content_type(self) -> str: ...

    @property
    def complete(self) -> bool:
        """The whole body was read."""
        ...

    async def read(self, limit: int) -> bytes:
        """The body, at most ``limit`` bytes (a longer one raises :class:`HopError`)."""
        ...

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; raises :class:`HopError` when it breaks off or the deadline passes."""
        ...

    async def close(self) -> None:
        """Reuse the connection after a complete answer; otherwise close it (which stops the orchestrator's work)."""
        ...


class OrchestratorTransport(Protocol):
    async def send(self, request: HopRequest) -> HopAnswer:
        """The answer's head, or :class:`HopError`; the body is left to the answer."""
        ...


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise HopTimeout("no answer before the deadline")
    return left


class AiohttpTransport:
    """Requests over ``session`` (TLS certificates are not checked: orchestrators use self-signed ones, as
    go-livepeer's do)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def send(self, request: HopRequest) -> HopAnswer:
        try:
            async with asyncio.timeout(_left(request.deadline)):
                upstream = await self.session.post(request.url, data=request.body, headers=request.headers, ssl=False)
        except TimeoutError:
            raise HopTimeout("no answer before the deadline") from None
        except aiohttp.ClientError as exc:
            raise HopError(f"no answer ({exc or type(exc).__name__})") from None
        return _AiohttpAnswer(upstream, request.deadline)


class _AiohttpAnswer:
    def __init__(self, upstream: aiohttp.ClientResponse, deadline: float) -> None:
        self._upstream = upstream
        self._deadline = deadline
        self.status = upstream.status
        self.headers = upstream.headers

    @property
    def content_type(self) -> str:
        return self._upstream.content_type

    @property
    def complete(self) -> bool:
        return self._upstream.content.at_eof()

    async def read(self, limit: int) -> bytes:
        content = self._upstream.content
        body = bytearray()
        try:
            async with asyncio.timeout(_left(self._deadline)):  # one timer for the whole body: the hot path
                while chunk := await content.readany():
                    body += chunk
                    if len(body) > limit:
                        raise HopError(f"the answer is over {limit} bytes")
        except TimeoutError:
            raise HopTimeout("the answer did not end before the deadline") from None
        except aiohttp.ClientError as exc:
            raise HopError(f"the answer broke off ({exc or type(exc).__name__})") from None
        return bytes(body)

    async def chunks(self) -> AsyncIterator[bytes]:
        content = self._upstream.content
        while True:
            try:
                async with asyncio.timeout(_left(self._deadline)):
                    chunk = await content.readany()
            except TimeoutError:
                raise HopTimeout("the answer did not end before the deadline") from None
            except aiohttp.ClientError as exc:
                raise HopError(f"the answer broke off ({exc or type(exc).__name__})") from None
            if not chunk:
                return
            yield chunk

    async def close(self) -> None:
        if self._upstream.content.at_eof():
            self._upstream.release()
        else:
            self._upstream.close()


class AsgiTransport:
    """Requests handled in this process by ASGI apps, chosen by the request URL's ``scheme://host:port``. The
    deadline is enforced as for the network: an app that never answers is cancelled when it passes."""

    def __init__(self, apps: Mapping[str, ASGIApp]) -> None:
        self.apps = {base.rstrip("/"): app for base, app in apps.items()}

    async def send(self, request: HopRequest) -> HopAnswer:
        parts = urlsplit(request.url)
        app = self.apps.get(f"{parts.scheme}://{parts.netloc}")
        if app is None:
            raise HopError(f"no answer (nothing listens at {parts.scheme}://{parts.netloc})")
        answer = _AsgiAnswer(app, request)
        await answer.start()
        return answer


class _AsgiAnswer:
    def __init__(self, app: ASGIApp, request: HopRequest) -> None:
        parts = urlsplit(request.url)
        self._deadline = request.deadline
        self._body: bytes | None = request.body
        self._messages: asyncio.Queue[Message] = asyncio.Queue()
        self._disconnected = asyncio.Event()
        self._ended = False
        host = parts.hostname or "localhost"
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": parts.scheme or "http",
            "path": parts.path or "/",
            "raw_path": (parts.path or "/").encode(),
            "query_string": parts.query.encode(),
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in request.headers.items()]
            + [(b"content-length", str(len(request.body)).encode()), (b"host", parts.netloc.encode())],
            "client": ("127.0.0.1", 0),
            "server": (host, parts.port or (443 if parts.scheme == "https" else 80)),
        }
        self._task = asyncio.ensure_future(app(scope, self._receive, self._messages.put))
        self.status = 0
        self.headers: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())

    async def _receive(self) -> Message:
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self._disconnected.wait()
        return {"type": "http.disconnect"}

    async def _next(self) -> Message:
        getter = asyncio.ensure_future(self._messages.get())
        try:
            done, _ = await asyncio.wait(
                {getter, self._task}, timeout=_left(self._deadline), return_when="FIRST_COMPLETED"
            )
        finally:
            if not getter.done():
                getter.cancel()
        if getter in done:
            return getter.result()
        if self._task in done:
            problem = self._task.exception()
            raise HopError(f"the answer broke off ({problem!r})" if problem else "the answer broke off")
        raise HopTimeout("no answer before the deadline")

    async def start(self) -> None:
        try:
            message = await self._next()
        except HopError:
            await self.close()
            raise
        if message["type"] != "http.response.start":
            await self.close()
            raise HopError(f"the app sent {message['type']} before its answer's head")
        self.status = int(message["status"])
        self.headers = CIMultiDictProxy(CIMultiDict((k.decode(), v.decode()) for k, v in message.get("headers", [])))

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "application/octet-stream").split(";")[0].strip()

    @property
    def complete(self) -> bool:
        return self._ended

    async def read(self, limit: int) -> bytes:
        return await read_at_most(self.chunks(), limit, lambda: HopError(f"the answer is over {limit} bytes"))

    async def chunks(self) -> AsyncIterator[bytes]:
        while not self._ended:
            message = await self._next()
            if message["type"] != "http.response.body":
                continue
            self._ended = not message.get("more_body", False)
            if message.get("body"):
                yield bytes(message["body"])

    async def close(self) -> None:
        self._disconnected.set()
        if not self._task.done():
            self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
