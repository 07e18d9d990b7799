"""Serving helpers every long-running command shares: a listening socket bound up front, a port check, and
running an async main on uvloop until SIGTERM or SIGINT.

A socket bound before the server starts turns a busy port into one clear :class:`~lpnode.errors.ConfigError`
line instead of a server crash, and can be handed to a child process (it is inheritable). A command's main
receives a ``stop`` event that SIGTERM and SIGINT set, so it shuts down in its own order (servers first,
then clients and files) rather than being interrupted wherever it happens to be.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable, Coroutine, Generator, Iterator
from typing import Any, TypeVar

import uvicorn

from lpnode.errors import ConfigError

T = TypeVar("T")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def bind_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (IPv6 when ``host`` has a colon), with SO_REUSEADDR, inheritable, not yet
    listening. Raises ``ConfigError`` naming the address when it cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; choose another with --port") from None
    sock.set_inheritable(True)
    return sock


def port_is_free(host: str, port: int) -> bool:
    """True when ``host:port`` can be bound now (with SO_REUSEADDR, as :func:`bind_socket` binds it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[asyncio.Event]:
    """Within the running loop, have SIGTERM and SIGINT set ``stop`` until the block ends."""
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    try:
        yield stop
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)


def run_until_stopped(
    main: Callable[[asyncio.Event], Coroutine[Any, Any, T]],
    *,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> T:
    """Blocking: run ``main(stop)`` on a new event loop (uvloop unless ``loop_factory`` says otherwise) and
    return its result; SIGTERM and SIGINT set ``stop``, and ``main`` decides how to wind down."""

    async def guarded() -> T:
        with stop_on_signals(asyncio.Event()) as stop:
            return await main(stop)

    if loop_factory is None:
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(guarded())


class QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signals to :func:`run_until_stopped` (several servers may share a
    process); stop it with ``should_exit = True``."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield
