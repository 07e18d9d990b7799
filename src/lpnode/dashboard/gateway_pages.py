"""The gateway's dashboard routes.

On the public port (``--http-addr``): ``GET /dashboard`` (the network page) and ``GET /dashboard/data.json``
(what it polls). The network is public by nature (every orchestrator advertises itself to any caller) and
the selection measurements say nothing about callers, so both are safe to expose. On chain the JSON has a
``payments`` block: the gateway's wallet, its deposit and reserve (public on chain anyway) and the tickets sent
to each orchestrator (totals over every caller); the credit held with each orchestrator is on the admin port
only. Off-chain there is no ``payments`` key.

On the admin port (``--cli-addr``, 127.0.0.1 by default) as well: ``GET /dashboard/usage`` and
``GET /dashboard/usage.json?window=1h``, the usage of every API key. Usage is never served on the public
port, where any key holder could read every other key's traffic; there ``/dashboard/usage`` answers 404
with a note saying where it is.

The gateway supplies the data through :class:`~lpnode.dashboard.sources.GatewaySource`
(``lpnode.gateway.dashboard_source``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from lpnode.dashboard.network_view import network_view
from lpnode.dashboard.pages import asset_route, json_response, page, page_route
from lpnode.dashboard.sources import GatewaySource
from lpnode.dashboard.usage_series import usage_series
from lpnode.errors import ConfigError

USAGE_ELSEWHERE = (
    "Usage is served on the gateway's admin address only (--cli-addr, default "
    "http://127.0.0.1:5935/dashboard/usage), so that no API key holder can read another key's usage.\n"
)


def network_data(source: GatewaySource) -> dict[str, Any]:
    """The network page's JSON: the gateway's ``/getNetworkCapabilities`` view with, per offer, what the
    gateway's source adds (its latency, successes, failures, success rate, jobs in flight, suspension and
    recent errors), and the orchestrators that do not answer."""
    snapshot = source.network()
    view = network_view(snapshot.document, annotate=snapshot.annotate, max_price=snapshot.max_price)
    return {
        "source": "gateway",
        "generated_at": time.time(),
        "measured": True,
        "last_refresh": snapshot.last_refresh,
        "unreachable": list(snapshot.unreachable),
        **view,
    }


def dashboard_routes(source: GatewaySource, *, admin: bool) -> list[Route]:
    """The routes for the public app (``admin=False``) or the admin app."""

    async def data(request: Request) -> Response:
        payments = await source.payments(admin=admin)
        extra = {"payments": dict(payments)} if payments is not None else {}
        return json_response({**network_data(source), "usage_page": admin, **extra})

    async def usage_page(request: Request) -> Response:
        return page("usage.html")

    async def usage_data(request: Request) -> Response:
        try:
            series = await asyncio.to_thread(usage_series, source, request.query_params.get("window", "1h"))
        except ConfigError as exc:
            return PlainTextResponse(f"{exc}\n", status_code=400)
        return json_response({"keys": source.keys_required, **series})

    async def usage_elsewhere(request: Request) -> Response:
        return PlainTextResponse(USAGE_ELSEWHERE, status_code=404)

    routes: list[Route] = [page_route("/dashboard", "network.html"), Route("/dashboard/data.json", data)]
    routes.append(asset_route())
    if admin:
        routes += [Route("/dashboard/usage", usage_page), Route("/dashboard/usage.json", usage_data)]
    else:
        routes += [Route("/dashboard/usage", usage_elsewhere), Route("/dashboard/usage.json", usage_elsewhere)]
    return routes
