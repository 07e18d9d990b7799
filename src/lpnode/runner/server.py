"""Run a runner app under uvicorn (uvloop + httptools, with :mod:`lpnode.http_limits` on every connection) on a
socket bound up front, so a busy port is reported as one clear line instead of a server crash."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

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
    import uvicorn

    sock = listen_socket(config.host, config.port)
    if config.exit_with_parent:
        from lpnode.runner.parent_watch import exit_with_parent

        exit_with_parent()
    server = uvicorn.Server(
        uvicorn_config(
            make_app(), loop="uvloop", log_config=None, access_log=False, timeout_graceful_shutdown=10, lifespan="on"
        )
    )
    server.run(sockets=[sock])
