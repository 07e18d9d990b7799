"""Run a runner app under uvicorn (uvloop + httptools, with :mod:`lpnode.http_limits` on every connection) on a
socket bound up front, so a busy port is reported as one clear line instead of a server crash."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

import uvicorn

from lpnode.runner.config import RunnerConfig
from lpnode.serving import bind_socket
from lpnode.uvicorn_config import uvicorn_config

LISTEN_FD_VAR = "LPNODE_LISTEN_FD"
"""A listening socket handed over by the runner pool, which claimed the port for this runner."""


def listen_socket(host: str, port: int) -> socket.socket:
    """The socket handed over in ``LPNODE_LISTEN_FD``, else a new one bound to ``host:port``."""
    fd = os.environ.pop(LISTEN_FD_VAR, "")
    if fd.isdigit():
        return socket.socket(fileno=int(fd))
    return bind_socket(host, port)


def serve(config: RunnerConfig, on_ready: Callable[[], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM. The model loads in the background once the port is open."""
    if config.pipeline == "live-video-to-video":
        from lpnode.live.runner_app import serve_live

        serve_live(config)
        return

    def make_app() -> Any:
        from lpnode.runner.app import create_app  # after run_app has set HF_HUB_OFFLINE: read at import

        return create_app(config, on_ready=on_ready)

    run_app(config, make_app)


def run_app(config: RunnerConfig, make_app: Callable[[], Any]) -> None:
    """Take the port (or the socket the runner pool handed over), start watching the parent, build the app
    with ``make_app`` and serve it with uvicorn until SIGINT/SIGTERM. Batch and live runners share this."""
    if not config.allow_downloads:
        # Read by huggingface_hub at import; serve what is in the models dir, never fetch silently.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sock = listen_socket(config.host, config.port)
    if config.exit_with_parent:
        from lpnode.runner.parent_watch import exit_with_parent

        exit_with_parent()
    app = make_app()
    settings = uvicorn_config(
        app, loop="uvloop", log_config=None, access_log=False, timeout_graceful_shutdown=10, lifespan="on"
    )
    registration = getattr(app.state, "app_registration", None)  # a runner app (lpnode.runner.app_serving)
    server = uvicorn.Server(settings) if registration is None else _LeavingServer(settings, registration.leave)
    server.run(sockets=[sock])


class _LeavingServer(uvicorn.Server):
    """A runner app's server: SIGTERM/SIGINT first unregisters it from its orchestrator (bounded), so no new call
    is sent its way, and only then shuts down as uvicorn does (stop accepting, drain the calls in flight). A
    second signal meanwhile stops at once."""

    def __init__(self, config: uvicorn.Config, leave: Callable[[], Awaitable[None]]) -> None:
        super().__init__(config)
        self._leave = leave
        self._loop: asyncio.AbstractEventLoop | None = None
        self._leaving: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._leaving is not None or self.should_exit or self._loop is None:
            super().handle_exit(sig, frame)
            return
        loop = self._loop
        # A signal handler runs between two bytecodes of the loop's thread: hand the work to the loop itself.
        self._leaving = loop.create_task(self._leave_then_exit(sig, frame))
        loop.call_soon_threadsafe(lambda: None)  # wake the loop up now rather than at its next event

    async def _leave_then_exit(self, sig: int, frame: FrameType | None) -> None:
        try:
            await self._leave()
        finally:
            super().handle_exit(sig, frame)
