"""gRPC and HTTP on one port, as go-livepeer serves its orchestrator.

One hypercorn server runs one ASGI app, :class:`SamePortApp`, which sends HTTP/2 requests whose
``content-type`` starts with ``application/grpc`` to the gRPC handler and everything else (lifespan
included) to the HTTP app. ALPN cannot tell the two apart (gRPC clients and Go HTTP clients both offer
only ``h2``), so routing is per request, not per connection.

- With :class:`~lpnode.protocol.certs.TlsFiles`: TLS, ALPN ``h2`` and ``http/1.1``.
- Without: plain HTTP/1.1, h2c with prior knowledge (what gRPC clients use for ``http://`` addresses)
  and h2c via ``Upgrade``, all on the same port.

Settings differ from hypercorn's defaults where those break gRPC clients: hypercorn closes a connection
after 1000 requests and after 5 s idle without a GOAWAY, which long-lived gRPC channels see as failed
calls, so both limits are raised far out of reach.

:mod:`lpnode.http_limits` applies as at every lpnode server: a request head over 64 KiB is refused by
hypercorn itself (``431`` on HTTP/1.1, the connection closed on HTTP/2), over 100 headers by
:class:`~lpnode.http_limits.RequestLimits` (431), and so is a body sent too slowly (408; trickle segments,
which idle by design, are exempt). hypercorn's idle timer also bounds how long a head may take (it starts when
the connection opens or goes idle and stops at a complete head) but it is the long gRPC one, so the loop
gives each new connection ``head_timeout`` (10 s) for its first head: a client that opens connections and
sends nothing, or a byte now and then, is dropped then.

Run it on :func:`new_event_loop` (``run_same_port`` does): uvloop (asyncio's own loop costs a relayed
job about 0.4 ms more CPU), with TLS servers that wait at most 2 s for a peer's ``close_notify`` at
shutdown. By default the loop waits up to 30 s for each, and grpcio clients with an idle channel never
answer, so SIGTERM would take 30 s whenever a gRPC client is connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import uvloop
from hypercorn.asyncio import serve
from hypercorn.config import Config

from lpnode.errors import ConfigError
from lpnode.http_limits import DEFAULT_LIMITS, TRICKLE_PATHS, HttpLimits, RequestLimits
from lpnode.logs import log_event
from lpnode.protocol.asgi import ASGIApp, Receive, Scope, Send
from lpnode.protocol.certs import TlsFiles
from lpnode.protocol.grpc_unary import GrpcMethod, GrpcUnaryApp
from lpnode.serving import run_until_stopped, stop_on_signals

log = logging.getLogger(__name__)

TLS_CLOSE_TIMEOUT = 2.0
"""Seconds to wait for a TLS peer's ``close_notify`` before dropping the connection."""
_HEAD_TIMEOUT: contextvars.ContextVar[float] = contextvars.ContextVar(
    "head_timeout", default=DEFAULT_LIMITS.head_timeout
)


class SamePortApp:
    """ASGI app routing gRPC calls to ``grpc_app`` and all else to ``http_app`` (go-livepeer's rule)."""

    def __init__(self, http_app: ASGIApp, grpc_app: ASGIApp) -> None:
        self.http_app = http_app
        self.grpc_app = grpc_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if is_grpc_request(scope):
            await self.grpc_app(scope, receive, send)
        else:
            await self.http_app(scope, receive, send)


def is_grpc_request(scope: Scope) -> bool:
    """An HTTP/2 request with a gRPC content type."""
    if scope["type"] != "http" or scope.get("http_version") != "2":
        return False
    return any(name == b"content-type" and value.startswith(b"application/grpc") for name, value in scope["headers"])


@dataclass(frozen=True)
class ServerSettings:
    """Where and how to listen. ``tls=None`` serves plain HTTP/1.1 + h2c."""

    host: str
    port: int
    tls: TlsFiles | None = None
    keep_alive_timeout: float = 600.0
    """Idle seconds before a connection is closed; longer than any gRPC client's idle period."""
    graceful_timeout: float = 5.0
    """Seconds in-flight requests get to finish after SIGTERM/SIGINT."""
    limits: HttpLimits = DEFAULT_LIMITS
    """Head size and count, first-head deadline, body rate (``keep_alive_timeout`` above replaces its own)."""
    unmetered_paths: tuple[str, ...] = TRICKLE_PATHS
    """Path prefixes whose request bodies may idle (no minimum body rate)."""


def hypercorn_config(settings: ServerSettings) -> Config:
    """The hypercorn configuration for ``settings``."""
    config = Config()
    host = f"[{settings.host}]" if ":" in settings.host and not settings.host.startswith("[") else settings.host
    config.bind = [f"{host}:{settings.port}"]
    if settings.tls is not None:
        config.certfile = str(settings.tls.certfile)
        config.keyfile = str(settings.tls.keyfile)
    config.alpn_protocols = ["h2", "http/1.1"]
    config.keep_alive_timeout = settings.keep_alive_timeout
    config.keep_alive_max_requests = 2**62
    config.h11_max_incomplete_size = settings.limits.max_header_bytes  # h11 answers 431 past it
    config.h2_max_header_list_size = settings.limits.max_header_bytes  # h2 closes the connection past it
    config.graceful_timeout = settings.graceful_timeout
    config.errorlog = logging.getLogger("hypercorn.error")
    config.accesslog = None
    return config


async def serve_same_port(
    http_app: ASGIApp,
    grpc_methods: Mapping[str, GrpcMethod],
    settings: ServerSettings,
    *,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
) -> None:
    """Serve ``http_app`` and ``grpc_methods`` on one port until ``stop`` is set or SIGTERM/SIGINT arrives.

    In-flight requests get ``settings.graceful_timeout`` seconds to finish. Raises ``ConfigError`` when
    the address cannot be bound or the certificate cannot be loaded.
    """
    config = hypercorn_config(settings)
    if settings.tls is not None:
        try:
            config.create_ssl_context()
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load the TLS certificate {settings.tls.certfile} / key {settings.tls.keyfile}: {exc}; "
                "delete both files to have a new pair made"
            ) from exc
    limits = settings.limits
    http = RequestLimits(http_app, limits, unmetered=settings.unmetered_paths)
    app = SamePortApp(http, RequestLimits(GrpcUnaryApp(grpc_methods), limits, unmetered=("",)))
    stop = stop or asyncio.Event()
    scheme = "https" if settings.tls else "http"
    log_event(log, "serving gRPC and HTTP on one port", address=f"{scheme}://{settings.host}:{settings.port}")
    with stop_on_signals(stop) if handle_signals else contextlib.nullcontext(stop):
        head_timeout = _HEAD_TIMEOUT.set(limits.head_timeout)  # read by the loop as hypercorn starts listening
        try:
            await serve(cast(Any, app), config, shutdown_trigger=stop.wait, mode="asgi")
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}; "
                "choose another port or stop the process using it"
            ) from exc
        finally:
            _HEAD_TIMEOUT.reset(head_timeout)
    log_event(log, "stopped serving", address=f"{scheme}://{settings.host}:{settings.port}")


class _ServingLoop(uvloop.Loop):
    """uvloop, whose servers give each connection a deadline for its first request head (:class:`_FirstHead`)
    and whose TLS servers give up on a silent peer's ``close_notify`` after TLS_CLOSE_TIMEOUT."""

    async def create_server(self, *args: Any, **kwargs: Any) -> asyncio.AbstractServer:  # type: ignore[override]
        if kwargs.get("ssl") is not None and kwargs.get("ssl_shutdown_timeout") is None:
            kwargs["ssl_shutdown_timeout"] = TLS_CLOSE_TIMEOUT
        factory: Callable[[], asyncio.Protocol] = args[0] if args else kwargs.pop("protocol_factory")
        timeout = _HEAD_TIMEOUT.get()
        return await super().create_server(lambda: _FirstHead(factory(), timeout, self), *args[1:], **kwargs)


class _FirstHead(asyncio.Protocol):
    """A server protocol whose connection is dropped unless a complete request head (an HTTP/1 head, or
    HTTP/2's connection preface, both ending in a blank line) arrives within ``timeout`` seconds of it
    opening; from then on every call passes straight through to ``inner``."""

    def __init__(self, inner: asyncio.Protocol, timeout: float, loop: asyncio.AbstractEventLoop) -> None:
        self.inner = inner
        self.timeout = timeout
        self.loop = loop
        self.transport: asyncio.BaseTransport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.tail = b""  # the last bytes seen, so a blank line split across reads is found

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.timer = self.loop.call_later(self.timeout, self._timed_out)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.timer is not None:
            seen = self.tail + data
            if b"\r\n\r\n" in seen or b"\n\n" in seen:
                self._stop()
            else:
                self.tail = seen[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def _stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _timed_out(self) -> None:
        self.timer = None
        if self.transport is not None and not self.transport.is_closing():
            log_event(log, "connection dropped: no request head in time", logging.DEBUG, seconds=self.timeout)
            cast(asyncio.Transport, self.transport).abort()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The event loop to run :func:`serve_same_port` on, e.g. ``asyncio.Runner(loop_factory=new_event_loop)``."""
    loop = _ServingLoop()
    loop.set_exception_handler(_quiet_tls_close)
    return loop


def _quiet_tls_close(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A peer that never answers ``close_notify`` is normal (grpcio), not an error worth a traceback."""
    exc = context.get("exception")
    if isinstance(exc, TimeoutError) and "SSL shutdown timed out" in str(exc):
        log_event(log, "TLS peer did not confirm close; connection dropped", logging.DEBUG)
        return
    loop.default_exception_handler(context)


def run_same_port(http_app: ASGIApp, grpc_methods: Mapping[str, GrpcMethod], settings: ServerSettings) -> None:
    """Blocking :func:`serve_same_port` on :func:`new_event_loop` until SIGTERM/SIGINT, for a command's ``main``."""

    async def main(stop: asyncio.Event) -> None:
        await serve_same_port(http_app, grpc_methods, settings, stop=stop, handle_signals=False)

    run_until_stopped(main, loop_factory=new_event_loop)
