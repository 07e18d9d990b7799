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


def bind_socket(host: str, port: int, *, flag: str = "") -> socket.socket:
    """A socket bound to ``host:port`` (IPv6 when ``host`` has a colon), with SO_REUSEADDR, inheritable, not yet
    listening. Raises ``ConfigError`` naming the address, and ``flag`` (the option that sets it, e.g.
    ``--http-addr``) when given, when it cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; {address_advice(flag)}") from None
    sock.set_inheritable(True)
    return sock


def address_advice(flag: str = "") -> str:
    """What to do about an address that cannot be bound: stop whatever holds it, or choose another address
    (with ``flag``, when the command has one for it)."""
    choose = f"choose another with {flag}" if flag else "choose another address"
    return f"stop the process using it (another lpnode?) or {choose}"


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


def require_free(address: str, flag: str) -> None:
    """Raise ``ConfigError`` naming ``flag`` when ``address`` (``HOST:PORT``) cannot be bound now; an address
    that does not parse is left to the command's own checks. For a command that starts several servers, so it
    can refuse before it starts any (and before it could mistake another instance's server for its own)."""
    host, sep, port = address.strip().removeprefix("http://").rpartition(":")
    if not sep or not port.isdigit():
        return
    host = host.strip("[]") or "0.0.0.0"
    if not port_is_free(host, int(port)):
        raise ConfigError(f"cannot listen on {host}:{port}: the port is in use; {address_advice(flag)}")


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
