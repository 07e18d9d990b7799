"""``lpnode dashboard --from URL``: the network page for any gateway that serves ``/getNetworkCapabilities``
(go-livepeer's CLI port included), served from this machine.

The document is fetched every ``interval`` seconds; the page polls ``/dashboard/data.json`` here. When a
fetch fails the last good document stays on the page and the data says what went wrong (``problem``).
Only the network page is served: usage and selection measurements live in the gateway itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from lpnode.dashboard.network_view import network_view
from lpnode.dashboard.pages import asset_route, json_response, page_route
from lpnode.errors import ConfigError
from lpnode.logs import log_event
from lpnode.protocol.admin_access import admin_headers
from lpnode.serving import QuietServer, bind_socket, run_until_stopped
from lpnode.uvicorn_config import uvicorn_config

log = logging.getLogger("lpnode.dashboard")
ENDPOINT = "/getNetworkCapabilities"
FETCH_TIMEOUT = 10.0
MAX_DOCUMENT_BYTES = 32 * 1024 * 1024


def capabilities_url(source: str) -> str:
    """``http://host:7935`` → ``http://host:7935/getNetworkCapabilities``; a URL naming a path is kept."""
    text = source.strip()
    if "://" not in text:
        text = "http://" + text
    scheme, rest = text.split("://", 1)
    if scheme not in ("http", "https") or not rest or rest.startswith("/"):
        raise ConfigError(f"--from {source!r} is not an http(s) URL, e.g. http://127.0.0.1:5935")
    if "/" not in rest.rstrip("/"):
        return f"{scheme}://{rest.rstrip('/')}{ENDPOINT}"
    return text


@dataclass
class Feed:
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    """Sent with every fetch: the admin token, when the source asks for one."""
    document: Any = None
    fetched_at: float = 0.0
    problem: str = "not fetched yet"

    async def fetch(self, session: aiohttp.ClientSession) -> None:
        try:
            timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
            async with session.get(self.url, headers=self.headers, timeout=timeout, ssl=False) as answer:
                body = await answer.content.read(MAX_DOCUMENT_BYTES + 1)
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise ValueError(f"the document is over {MAX_DOCUMENT_BYTES // 2**20} MiB")
                # go-livepeer answers 500 "network capabilities not available" followed by the JSON when empty.
                text = body.decode("utf-8", errors="replace")
                start = text.find("{")
                if answer.status != 200 and start < 0:
                    raise ValueError(f"answered {answer.status}: {text.strip()[:200]}")
                self.document = json.loads(text[start:] if start >= 0 else text)
                self.fetched_at, self.problem = time.time(), ""
        except (aiohttp.ClientError, TimeoutError, ValueError, UnicodeError) as exc:
            self.problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log_event(log, "network capabilities fetch failed", logging.WARNING, url=self.url, problem=self.problem)

    def data(self) -> dict[str, Any]:
        view = network_view(self.document) if self.document is not None else {"pipelines": [], "orchestrators": 0}
        return {
            "source": self.url,
            "generated_at": time.time(),
            "fetched_at": self.fetched_at,
            "problem": self.problem,
            "measured": False,
            "unreachable": [],
            **view,
        }


def dashboard_app(feed: Feed) -> Starlette:
    async def data(request: Request) -> Response:
        return json_response(feed.data())

    async def home(request: Request) -> Response:
        return RedirectResponse("/dashboard")

    return Starlette(
        routes=[
            Route("/", home),
            page_route("/dashboard", "network.html"),
            Route("/dashboard/data.json", data),
            asset_route(),
        ]
    )


def run_dashboard(source: str, listen: str, interval: float, admin_token: str = "") -> None:
    """Blocking: fetch ``source`` every ``interval`` seconds (with ``admin_token`` when set) and serve the page
    on ``listen`` until Ctrl-C."""
    url = capabilities_url(source)
    host, _, port_text = listen.rpartition(":")
    if not host or not port_text.isdigit():
        raise ConfigError(f"--listen {listen!r} is not HOST:PORT, e.g. 127.0.0.1:8080")
    if interval < 1:
        raise ConfigError("--interval must be at least 1 second")
    try:
        sock = bind_socket(host.strip("[]"), int(port_text))
    except ConfigError:
        raise ConfigError(
            f"cannot listen on {listen}: the address is in use or not local; choose another --listen"
        ) from None
    feed = Feed(url, admin_headers(admin_token))

    async def main(stop: asyncio.Event) -> None:
        config = uvicorn_config(dashboard_app(feed), loop="none", log_config=None, access_log=False, lifespan="off")
        server = QuietServer(config)
        async with aiohttp.ClientSession() as session:

            async def refresh() -> None:
                while True:
                    await feed.fetch(session)
                    await asyncio.sleep(interval)

            refresher = asyncio.ensure_future(refresh())
            serving = asyncio.ensure_future(server.serve(sockets=[sock]))
            log_event(log, "dashboard ready", page=f"http://{listen}/dashboard", source=url)
            print(f"network dashboard: http://{listen}/dashboard  (data from {url}; Ctrl-C to stop)", flush=True)
            try:
                await asyncio.wait([asyncio.ensure_future(stop.wait()), serving], return_when=asyncio.FIRST_COMPLETED)
            finally:
                server.should_exit = True
                refresher.cancel()
                await asyncio.gather(serving, refresher, return_exceptions=True)

    run_until_stopped(main)
