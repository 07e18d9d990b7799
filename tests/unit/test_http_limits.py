"""Connection limits at every lpnode HTTP server: oversize request heads get 431, a client that is slow to send
its head or body is disconnected in the documented time, and slow connections do not stop health checks.

The servers run in-process on loopback with the real server code (uvicorn with :func:`uvicorn_config`, which
the gateway, runner, BYOC kit and dashboard use; hypercorn with :func:`serve_same_port`, the orchestrator's;
the standalone trickle server) and are spoken to over raw sockets, as a misbehaving client would.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

import lpnode
from lpnode.http_limits import HttpLimits
from lpnode.protocol.same_port import ServerSettings, new_event_loop, serve_same_port
from lpnode.serving import QuietServer, bind_socket
from lpnode.trickle import TrickleServer, TrickleSettings
from lpnode.trickle.command import serve_trickle
from lpnode.uvicorn_config import LimitedHttpToolsProtocol, uvicorn_config

FAST = HttpLimits(head_timeout=0.5, body_grace=0.5, min_body_rate=1000)
Serve = Callable[[HttpLimits], contextlib.AbstractAsyncContextManager[int]]


async def _health(request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def _upload(request: Request) -> Response:
    body = await request.body()
    return PlainTextResponse(f"{len(body)}\n")


APP = Starlette(routes=[Route("/health", _health), Route("/upload", _upload, methods=["POST"])])


@contextlib.asynccontextmanager
async def uvicorn_server(limits: HttpLimits) -> AsyncIterator[int]:
    sock = bind_socket("127.0.0.1", 0)
    server = QuietServer(uvicorn_config(APP, limits=limits, loop="none", log_config=None, lifespan="off"))
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        await _until_listening(sock.getsockname()[1])
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
        sock.close()


@contextlib.asynccontextmanager
async def same_port_server(limits: HttpLimits) -> AsyncIterator[int]:
    port = _free_port()
    stop = asyncio.Event()
    settings = ServerSettings("127.0.0.1", port, limits=limits, graceful_timeout=0.5)
    serving = asyncio.ensure_future(serve_same_port(APP, {}, settings, stop=stop, handle_signals=False))
    try:
        await _until_listening(port)
        yield port
    finally:
        stop.set()
        await asyncio.wait_for(serving, 10)


@contextlib.asynccontextmanager
async def trickle_server(limits: HttpLimits) -> AsyncIterator[int]:
    port = _free_port()
    stop = asyncio.Event()
    serving = asyncio.ensure_future(serve_trickle(TrickleServer(TrickleSettings()), "127.0.0.1", port, "", stop))
    try:
        await _until_listening(port)
        yield port
    finally:
        stop.set()
        await asyncio.wait_for(serving, 10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _until_listening(port: int) -> None:
    for _ in range(500):
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the server did not start")


def run(main: Awaitable[Any], same_port: bool = False) -> Any:
    loop_factory = new_event_loop if same_port else None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(asyncio.wait_for(main, 30))


async def exchange(port: int, data: bytes, wait: float = 5.0) -> bytes:
    """Send ``data`` and read until the server closes the connection or ``wait`` passes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        answer = b""
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(wait):
                while data := await reader.read(65536):
                    answer += data
        return answer
    finally:
        writer.close()


def head(*headers: bytes, path: bytes = b"/health") -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nhost: x\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"


SERVERS = [pytest.param(uvicorn_server, False, id="uvicorn"), pytest.param(same_port_server, True, id="same-port")]
ALL_SERVERS = [*SERVERS, pytest.param(trickle_server, True, id="trickle")]


# --- request heads ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("serve", "same_port"), ALL_SERVERS)
def test_ten_thousand_headers_are_refused_with_431(serve: Serve, same_port: bool) -> None:
    async def main() -> bytes:
        async with serve(FAST) as port:
            return await exchange(port, head(*[b"x-h%d: v" % i for i in range(10_000)]))

    answer = run(main(), same_port)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]


@pytest.mark.parametrize(("serve", "same_port"), ALL_SERVERS)
def test_a_head_just_over_the_header_count_is_refused_and_one_at_it_is_served(serve: Serve, same_port: bool) -> None:
    async def main() -> tuple[bytes, bytes]:
        async with serve(FAST) as port:
            over = await exchange(port, head(*[b"x-h%d: v" % i for i in range(100)]))  # + host: 101
            at = await exchange(port, head(b"connection: close", *[b"x-h%d: v" % i for i in range(98)]))
            return over, at

    over, at = run(main(), same_port)
    assert over.startswith(b"HTTP/1.1 431") and b"at most 100 are accepted" in over, over[:300]
    assert not at.startswith(b"HTTP/1.1 431"), at[:200]


@pytest.mark.parametrize(("serve", "same_port"), ALL_SERVERS)
def test_a_huge_header_is_refused_before_it_is_read_whole(serve: Serve, same_port: bool) -> None:
    async def main() -> tuple[bytes, int]:
        async with serve(FAST) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /health HTTP/1.1\r\nhost: x\r\nx-big: ")
            sent = 0

            async def send() -> None:
                nonlocal sent
                with contextlib.suppress(ConnectionError):
                    while sent < 32 * 1024 * 1024:
                        writer.write(b"a" * 65536)
                        await writer.drain()
                        sent += 65536

            sending = asyncio.ensure_future(send())
            answer = b""
            with contextlib.suppress(ConnectionError, TimeoutError):
                async with asyncio.timeout(10):
                    answer = await reader.read(4096)  # a 431, or b"" when the server closed the connection
            reacted_at = sent
            sending.cancel()
            writer.close()
            return answer, reacted_at

    answer, reacted_at = run(main(), same_port)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert reacted_at < 16 * 1024 * 1024, f"the server read {reacted_at >> 20} MiB of header before refusing it"


@pytest.mark.parametrize(("serve", "same_port"), SERVERS)
def test_a_large_chunked_body_is_not_mistaken_for_a_head(serve: Serve, same_port: bool) -> None:
    chunk = b"a" * 65536

    async def main() -> bytes:
        async with serve(FAST) as port:
            body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(64)) + b"0\r\n\r\n"
            start = b"POST /upload HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
            return await exchange(port, start + body)

    answer = run(main(), same_port)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\n4194304\n"), answer[:300]


def test_a_whole_request_over_the_head_limit_in_one_read_is_served() -> None:
    # A small head and a 100 KiB body that arrive in one read (what a relay sends) are one request, not a head.
    body = b"a" * 100 * 1024

    async def main() -> bytes:
        async with uvicorn_server(FAST) as port:
            start = b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body)
            return await exchange(port, start + body)

    answer = run(main())
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\n102400\n"), answer[:300]


# --- slow and idle clients --------------------------------------------------------------------------------


@pytest.mark.parametrize(("serve", "same_port"), SERVERS)
def test_a_head_sent_a_byte_at_a_time_is_cut_off_at_the_head_timeout(serve: Serve, same_port: bool) -> None:
    async def main() -> tuple[float, bool]:
        async with serve(FAST) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            began = time.monotonic()
            closed = False
            try:
                for byte in head(b"x-slow: 1"):
                    writer.write(bytes([byte]))
                    await writer.drain()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.1):  # a byte every 0.1 s never lets the head finish in time
                            if await reader.read(4096) == b"":
                                closed = True
                                break
            except ConnectionError:
                closed = True
            writer.close()
            return time.monotonic() - began, closed

    took, closed = run(main(), same_port)
    assert closed and took < FAST.head_timeout + 1.0, took


@pytest.mark.parametrize(("serve", "same_port"), SERVERS)
def test_a_connection_that_never_sends_anything_is_closed(serve: Serve, same_port: bool) -> None:
    async def main() -> float:
        async with serve(FAST) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            began = time.monotonic()
            with contextlib.suppress(ConnectionError):
                await asyncio.wait_for(reader.read(-1), 5)
            writer.close()
            return time.monotonic() - began

    assert run(main(), same_port) < FAST.head_timeout + 1.0


@pytest.mark.parametrize(("serve", "same_port"), SERVERS)
def test_a_body_trickled_below_the_minimum_rate_gets_408(serve: Serve, same_port: bool) -> None:
    async def main() -> tuple[bytes, float]:
        async with serve(FAST) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n")
            began = time.monotonic()
            answer = b""
            with contextlib.suppress(ConnectionError):
                for _ in range(50):  # 10 bytes every 0.1 s: 100 B/s, under the 1000 B/s asked for
                    writer.write(b"a" * 10)
                    await writer.drain()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.1):
                            answer += await reader.read(4096)
                    if answer:
                        break
            writer.close()
            return answer, time.monotonic() - began

    answer, took = run(main(), same_port)
    assert answer.startswith(b"HTTP/1.1 408") and b"too slowly" in answer, answer[:300]
    assert took < FAST.body_grace + 2.0


def test_a_trickle_upload_may_idle_past_the_body_rate() -> None:
    """A trickle publisher opens its next segment's upload before it has data: no 408 for that."""
    paused = 0.0

    async def slow_publish(request: Request) -> Response:
        return PlainTextResponse(f"{len(await request.body())}\n")

    app = Starlette(routes=[Route("/ai/trickle/{name}/{seq}", slow_publish, methods=["POST"])])

    async def main() -> bytes:
        nonlocal paused
        sock = bind_socket("127.0.0.1", 0)
        server = QuietServer(uvicorn_config(app, limits=FAST, loop="none", log_config=None, lifespan="off"))
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        try:
            port = sock.getsockname()[1]
            await _until_listening(port)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /ai/trickle/s/0 HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
            began = time.monotonic()
            await asyncio.sleep(FAST.body_grace + 1.0)  # nothing yet: the segment has not started
            paused = time.monotonic() - began
            writer.write(b"3\r\nabc\r\n0\r\n\r\n")
            async with asyncio.timeout(5):
                answer = await reader.read(4096)
            writer.close()
            return answer
        finally:
            server.should_exit = True
            await asyncio.wait_for(serving, 10)
            sock.close()

    answer = run(main())
    assert paused > FAST.body_grace and answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"3\n"), answer


@pytest.mark.parametrize(("serve", "same_port"), SERVERS)
def test_two_hundred_slow_connections_leave_health_answering_fast(serve: Serve, same_port: bool) -> None:
    limits = HttpLimits()  # the defaults: the slow connections stay open for the whole test

    async def main() -> tuple[float, int]:
        async with serve(limits) as port:
            slow = [await asyncio.open_connection("127.0.0.1", port) for _ in range(200)]
            for _, writer in slow:
                writer.write(b"GET /health HTTP/1.1\r\nhost: x\r\nx-a: ")  # and never the rest
            await asyncio.gather(*(writer.drain() for _, writer in slow))
            await asyncio.sleep(0.2)
            worst = 0.0
            for _ in range(5):
                began = time.monotonic()
                answer = await exchange(port, head(b"connection: close"))
                worst = max(worst, time.monotonic() - began)
                assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
            still_open = sum(not reader.at_eof() for reader, _ in slow)
            for _, writer in slow:
                writer.close()
            return worst, still_open

    worst, still_open = run(main(), same_port)
    assert worst < 0.1, f"/health took {worst * 1000:.0f} ms with 200 slow connections open"
    assert still_open == 200  # they were held, not refused: the point is that they cost nothing else


# --- every role builds its uvicorn server with the limits -------------------------------------------------


def test_no_server_is_built_without_the_limits() -> None:
    """Every uvicorn server in lpnode (gateway public and admin, runner, BYOC kit, dashboard) is configured by
    uvicorn_config; hypercorn servers (orchestrator, trickle) take their settings from hypercorn_config."""
    source = Path(lpnode.__file__).parent
    unlimited = [
        f"{path.relative_to(source)}:{number}"
        for path in source.rglob("*.py")
        if path.name != "uvicorn_config.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "uvicorn.Config(" in line or (re.search(r"(?<![\w.])Config\(\)", line) and path.name != "same_port.py")
    ]
    assert not unlimited, unlimited
    config = uvicorn_config(APP)
    config.load()
    assert issubclass(config.http_protocol_class, LimitedHttpToolsProtocol)
