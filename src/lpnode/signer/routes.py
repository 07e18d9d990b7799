"""The signer's HTTP routes and its JSON error answers (go-livepeer's ``respondJsonError``).

Errors are ``{"error": {"message": ...}}`` with ``Content-Type: application/json``; a 500 always says
``Internal Server Error`` and a 503 ``Service Unavailable Error`` (the reason goes to the log, never to the
caller). An unknown path is 404 ``404 page not found`` and a known path with another method 405, as Go's mux
answers.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from lpnode.logs import log_event
from lpnode.protocol.remote_signer import (
    DISCOVER_ORCHESTRATORS,
    GENERATE_LIVE_PAYMENT,
    HEALTHZ,
    SIGN_ORCHESTRATOR_INFO,
    OrchestratorInfoSignature,
    error_body,
)
from lpnode.signer.payment import Minter, Refusal

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client.metrics_core import Metric

    from lpnode.signer.discovery import DiscoveryPool

log = logging.getLogger("lpnode.signer")
MAX_BODY_BYTES = 1024 * 1024
_REPLACED = {500: "Internal Server Error", 503: "Service Unavailable Error"}


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """go's ``respondJsonError``: the JSON envelope, 500/503 messages replaced."""
    text = _REPLACED.get(status, message)
    return Response(error_body(text), status_code=status, media_type="application/json", headers=headers)


class SignerRoutes:
    """The routes of one signer: its address signature, the minter, and discovery (None when off)."""

    def __init__(self, info: OrchestratorInfoSignature, minter: Minter, discovery: DiscoveryPool | None) -> None:
        self.info = info
        self.minter = minter
        self.discovery = discovery

    def app(self) -> Starlette:
        routes = [
            Route(SIGN_ORCHESTRATOR_INFO, self.sign_info, methods=["POST"]),
            Route(GENERATE_LIVE_PAYMENT, self.generate, methods=["POST"]),
            Route(HEALTHZ, self.healthz, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
        ]
        if self.discovery is not None:
            routes.append(Route(DISCOVER_ORCHESTRATORS, self.discover, methods=["GET"]))
        handlers = {404: _not_found, 405: _not_allowed}
        return Starlette(routes=routes, exception_handlers=handlers)

    async def sign_info(self, request: Request) -> Response:
        return JSONResponse(self.info.to_json())

    async def generate(self, request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return json_error(413, f"request body over {MAX_BODY_BYTES} bytes")
        try:
            answer = await self.minter.mint(body, request.headers.items())
        except Refusal as exc:
            level = logging.ERROR if exc.status >= 500 else logging.INFO
            log_event(log, "payment refused", level, status=exc.status, reason=str(exc), client=_client(request))
            return json_error(exc.status, str(exc), exc.headers)
        return JSONResponse(answer.to_json())

    async def discover(self, request: Request) -> Response:
        assert self.discovery is not None
        found = await self.discovery.orchestrators(request.query_params.getlist("caps"))
        if found is None:
            log_event(log, "discovery has no orchestrator", logging.WARNING)
            return json_error(503, "cache empty")
        return JSONResponse(found)

    async def healthz(self, request: Request) -> Response:
        return Response(b"", status_code=200)

    async def metrics(self, request: Request) -> Response:
        registry = CollectorRegistry()
        registry.register(_Collector(self.minter))
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class _Collector:
    def __init__(self, minter: Minter) -> None:
        self.minter = minter

    def collect(self) -> Iterator[Metric]:
        minted = self.minter.minted
        payments = CounterMetricFamily("lpnode_signer_payments", "payments signed", labels=["status"])
        payments.add_metric(["200"], minted.payments)
        for status, count in sorted(minted.refusals.items()):
            payments.add_metric([str(status)], count)
        yield payments
        yield CounterMetricFamily("lpnode_signer_tickets", "tickets signed", value=minted.tickets)
        yield CounterMetricFamily("lpnode_signer_ticket_ev_wei", "expected value of the tickets signed, wei",
                                  value=float(minted.ev))  # fmt: skip


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


async def _not_found(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("404 page not found\n", status_code=404)


async def _not_allowed(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return PlainTextResponse("Method Not Allowed\n", status_code=405, headers=exc.headers)
