"""The gateway's dashboard routes.

On the public port (``--http-addr``): ``GET /dashboard`` (the network page) and ``GET /dashboard/data.json``
(what it polls). The network is public by nature (every orchestrator advertises itself to any caller) and
the selection measurements say nothing about callers, so both are safe to expose.

On the admin port (``--cli-addr``, 127.0.0.1 by default) as well: ``GET /dashboard/usage`` and
``GET /dashboard/usage.json?window=1h``, the usage of every API key. Usage is never served on the public
port, where any key holder could read every other key's traffic; there ``/dashboard/usage`` answers 404
with a note saying where it is.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from lpnode.dashboard.network_view import network_view
from lpnode.dashboard.pages import asset_route, json_response, page, page_route
from lpnode.dashboard.usage_series import usage_series
from lpnode.errors import ConfigError
from lpnode.gateway.directory import Directory, Orchestrator
from lpnode.gateway.forward import Forwarder
from lpnode.gateway.key_guard import KeyGuard
from lpnode.gateway.network_caps import network_capabilities
from lpnode.gateway.selection import Stats
from lpnode.gateway.usage import UsageLog

USAGE_ELSEWHERE = (
    "Usage is served on the gateway's admin address only (--cli-addr, default "
    "http://127.0.0.1:5935/dashboard/usage), so that no API key holder can read another key's usage.\n"
)


class GatewayParts(Protocol):
    """What the routes read from the running gateway (:class:`lpnode.gateway.server.Gateway`)."""

    directory: Directory | None
    stats: Stats
    forwarder: Forwarder | None
    usage: UsageLog
    guard: KeyGuard | None


def network_data(gateway: GatewayParts) -> dict[str, Any]:
    """The network page's JSON: the gateway's ``/getNetworkCapabilities`` view with, per offer, the gateway's
    latency (EWMA, ms), successes, failures, success rate, jobs in flight, suspension and recent errors."""
    assert gateway.directory is not None and gateway.forwarder is not None
    known = [o for o in gateway.directory.known() if o.info is not None]
    caps = gateway.forwarder.caps

    def annotate(index: int, pipeline: str, model_id: str) -> dict[str, Any]:
        orch = known[index]
        measure = gateway.stats.measures.get((orch.url, pipeline, model_id))
        done = (measure.successes + measure.failures) if measure else 0
        return {
            "url": orch.url,
            "latency_ms": None if measure is None or measure.latency is None else round(measure.latency * 1000, 1),
            "successes": measure.successes if measure else 0,
            "failures": measure.failures if measure else 0,
            "success_rate": round(measure.successes / done, 4) if measure and done else None,
            "in_flight": measure.in_flight if measure else 0,
            "suspended": orch.suspended,
            "problem": orch.problem,
            "errors": _errors(orch),
        }

    view = network_view(
        network_capabilities((o.url, o.info) for o in known if o.info is not None),
        annotate=annotate,
        max_price=caps.cap,
    )
    unreachable = [
        {"url": o.url, "problem": o.problem, "errors": _errors(o)} for o in gateway.directory.known() if o.info is None
    ]
    return {
        "source": "gateway",
        "generated_at": time.time(),
        "measured": True,
        "last_refresh": gateway.directory.last_refresh,
        "unreachable": unreachable,
        **view,
    }


def _errors(orch: Orchestrator) -> list[dict[str, Any]]:
    return [{"at": at, "problem": problem} for at, problem in orch.recent_errors]


def dashboard_routes(gateway: GatewayParts, *, admin: bool) -> list[Route]:
    """The routes for the public app (``admin=False``) or the admin app."""

    async def data(request: Request) -> Response:
        return json_response({**network_data(gateway), "usage_page": admin})

    async def usage_page(request: Request) -> Response:
        return page("usage.html")

    async def usage_data(request: Request) -> Response:
        try:
            series = await asyncio.to_thread(usage_series, gateway.usage, request.query_params.get("window", "1h"))
        except ConfigError as exc:
            return PlainTextResponse(f"{exc}\n", status_code=400)
        return json_response({"keys": gateway.guard is not None, **series})

    async def usage_elsewhere(request: Request) -> Response:
        return PlainTextResponse(USAGE_ELSEWHERE, status_code=404)

    routes: list[Route] = [page_route("/dashboard", "network.html"), Route("/dashboard/data.json", data)]
    routes.append(asset_route())
    if admin:
        routes += [Route("/dashboard/usage", usage_page), Route("/dashboard/usage.json", usage_data)]
    else:
        routes += [Route("/dashboard/usage", usage_elsewhere), Route("/dashboard/usage.json", usage_elsewhere)]
    return routes
