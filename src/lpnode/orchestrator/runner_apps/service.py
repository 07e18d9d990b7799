"""Runner apps (go-livepeer's Live Runner) as one piece the orchestrator starts, mounts and stops.

    apps = RunnerApps.create(settings, trickle)   # None when the feature is off
    await apps.start()                            # reads runners.json, starts sweep/health/keepalive
    app = apps.front(node_app)                    # the public routes in front of the node's own
    ... apps.admin_routes() on the admin port; apps.status() in /status
    await apps.close()

Start-up problems raise :class:`~lpnode.errors.ConfigError` with go-livepeer's words
(``error reading -liveRunnerConfig: ...``, ``error registering -liveRunnerConfig: ...``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lpnode.errors import ConfigError
from lpnode.logs import log_event
from lpnode.orchestrator.runner_apps.admission import Admission, FreeAdmission, PaymentRoutes
from lpnode.orchestrator.runner_apps.adverts import AdvertError, decode_json, parse_static_document
from lpnode.orchestrator.runner_apps.app_proxy import AppProxy
from lpnode.orchestrator.runner_apps.proxy_urls import parse_template
from lpnode.orchestrator.runner_apps.registry import AppRegistry
from lpnode.orchestrator.runner_apps.routes import RunnerAppsFront, text
from lpnode.protocol import runner_apps as wire
from lpnode.protocol.asgi import ASGIApp
from lpnode.trickle import TrickleServer

if TYPE_CHECKING:
    from lpnode.orchestrator.payments import OrchestratorPayments
    from lpnode.orchestrator.runner_apps.payments import PaidAdmission
    from lpnode.protocol.auth_token import AuthTokens

log = logging.getLogger("lpnode.orchestrator.runner_apps")


class RunnerApps:
    def __init__(self, registry: AppRegistry, config: Path | None) -> None:
        self.registry = registry
        self.config = config
        self.admission: Admission = FreeAdmission(registry)
        self.paid: PaidAdmission | None = None
        """On chain, after :meth:`use_payments`: sessions and calls are charged (research §13)."""
        self._http: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self.proxy = AppProxy(self.http)

    @classmethod
    def create(
        cls,
        *,
        enabled: bool,
        config: Path | None,
        proxy_url: str,
        runner_addr: str,
        service_url: str,
        orch_secret: str,
        trickle: TrickleServer,
        on_chain: bool = False,
    ) -> RunnerApps | None:
        """The feature for these settings, or None when neither ``-useLiveRunners`` nor a config is given."""
        if not enabled and config is None:
            return None
        try:
            template = parse_template(proxy_url, service_url)
        except ValueError as exc:
            raise ConfigError(f"invalid -liveRunnerProxyUrl: {exc}") from None
        if not orch_secret:
            log_event(
                log, "No -orchSecret configured; dynamic LiveRunner heartbeat registration is disabled", logging.WARNING
            )
        registry = AppRegistry(
            public_url=service_url,
            runner_url=runner_addr or service_url,
            orch_secret=orch_secret,
            trickle=trickle,
            proxy_template=template,
            on_chain=on_chain,
        )
        return cls(registry, config)

    def use_payments(self, payments: OrchestratorPayments, tokens: AuthTokens, interval: float) -> None:
        """Charge for every session and call from now on: the 402 challenge, metering every ``interval`` seconds
        (``-livePaymentInterval``), fixed prices once, and the payment routes."""
        from lpnode.orchestrator.runner_apps.payments import PaidAdmission

        self.paid = PaidAdmission(self.registry, payments, tokens, interval)
        self.admission = self.paid

    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            # Bodies pass through as sent: no decompression; no overall timeout (SSE and WebSocket run long).
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=2.0),
                auto_decompress=False,
            )
        return self._http

    async def check_health(self, url: str, expected: int) -> bool:
        """One static health probe: the final status equals ``expected`` within 3 s."""
        timeout = aiohttp.ClientTimeout(total=wire.STATIC_HEALTH_TIMEOUT)
        try:
            async with self.http().get(url, timeout=timeout, allow_redirects=True) as response:
                return response.status == expected
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
            return False

    async def start(self) -> None:
        """Register the static runners of ``config`` (if any), then run the registry's background work."""
        if self.config is not None:
            try:
                document = decode_json(self.config.read_bytes())
            except (OSError, AdvertError) as exc:
                raise ConfigError(f"error reading -liveRunnerConfig: {exc}") from None
            try:
                entries = parse_static_document(document, on_chain=self.registry.on_chain)
            except AdvertError as exc:
                raise ConfigError(f"error registering -liveRunnerConfig: {exc}") from None
            await self.registry.register_static(entries, self.check_health)
            log_event(log, f"Registered {len(entries)} static live runners from {self.config}")
        self._task = asyncio.ensure_future(self.registry.run(self.check_health))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.registry.close()
        if self._http is not None:
            await self._http.close()

    def front(self, app: ASGIApp) -> ASGIApp:
        routes: PaymentRoutes | None = self.paid
        return RunnerAppsFront(app, self.registry, self.admission, self.proxy, routes)

    def admin_routes(self) -> list[Route]:
        return [Route(wire.STATIC_UPSERT_PATH, self.upsert, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])]

    async def upsert(self, request: Request) -> Response:
        """``POST /registerLiveRunners`` (admin port): upsert a ``runners.json`` document."""
        if request.method != "POST":
            return text(405, "Method not allowed")
        try:
            entries = parse_static_document(decode_json(await request.body()), on_chain=self.registry.on_chain)
        except AdvertError as exc:
            return text(400, str(exc))
        runners = await self.registry.register_static(entries, self.check_health)
        return JSONResponse({"runners": runners})

    def status(self) -> list[dict[str, Any]]:
        return self.registry.status()

    def payments_status(self) -> dict[str, Any] | None:
        """Paid sessions and metered wei (None off-chain)."""
        return self.paid.status() if self.paid is not None else None


def front_without_apps(app: ASGIApp) -> ASGIApp:
    """Go's answer on a node without runner apps: their paths say ``live runners are not supported``."""
    return RunnerAppsFront(app, None, None, None)


async def not_supported(request: Request) -> Response:
    """``/registerLiveRunners`` on a node without runner apps."""
    return text(404, wire.NOT_SUPPORTED)
