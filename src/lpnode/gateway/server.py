"""The gateway process: the public API on ``--http-addr`` and the admin API on ``--cli-addr``, both under
uvicorn (uvloop + httptools) in one event loop, with orchestrators refreshed in the background.

Public: ``POST /<pipeline>``, ``POST /process/request/<path>`` (BYOC), ``/live/video-to-video/<stream>/...``
(live video, :mod:`lpnode.gateway.live`), ``GET /stream/<request-id>/<file>``,
``GET /healthz``, ``GET /metrics``, ``GET /dashboard`` (the network page, :mod:`lpnode.dashboard`).
Admin: ``GET /getNetworkCapabilities``, ``GET /getAISessionPoolsInfo``, ``GET /metrics``, ``GET /dashboard``
and ``GET /dashboard/usage``.

On chain (``-network`` names one), the gateway opens the chain and its wallet before it serves and pays every
job (:mod:`lpnode.gateway.payments`); ``/status`` then shows its address, deposit, reserve and what it sent
each orchestrator, and ``/metrics`` counts the tickets. Without ``-orchAddr`` or a webhook, its orchestrators are
the chain's active ones (:mod:`lpnode.gateway.chain_directory`), chosen by stake
(:mod:`lpnode.gateway.selection_chain`); ``/status`` then shows the pool as last read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from lpnode.errors import (
    BadRequestError,
    ConfigError,
    JobError,
    MethodNotAllowedError,
    NotFoundError,
    error_for_status,
    gateway_json_response,
)
from lpnode.gateway.admin import AdminRoutes
from lpnode.gateway.api import PublicApi
from lpnode.gateway.async_jobs import AsyncJobs
from lpnode.gateway.byoc_routes import ByocGateway
from lpnode.gateway.capacity_queue import CapacityQueues
from lpnode.gateway.dashboard_source import dashboard_routes
from lpnode.gateway.directory import Directory, normalize_address
from lpnode.gateway.forward import Forwarder
from lpnode.gateway.job_wrapper import JobRecord, JobWrapper
from lpnode.gateway.key_guard import KeyGuard
from lpnode.gateway.keys import KeyStore
from lpnode.gateway.live import LiveSessions
from lpnode.gateway.live.page import live_page_routes
from lpnode.gateway.live.routes import LiveRoutes
from lpnode.gateway.live.webrtc_routes import WebRtcRoutes
from lpnode.gateway.openai_routes import OpenAIRoutes
from lpnode.gateway.orch_client import OrchestratorClient
from lpnode.gateway.runner_apps import AppDirectory
from lpnode.gateway.runner_apps_jobs import AppJobs
from lpnode.gateway.runner_apps_routes import AppRoutes
from lpnode.gateway.selection import SELECTORS, Stats
from lpnode.gateway.settings import STAKE_SELECTOR, GatewaySettings
from lpnode.gateway.state import open_state
from lpnode.gateway.transport import AiohttpTransport
from lpnode.gateway.usage import UsageLog, UsageRecord, fee_wei
from lpnode.logs import log_event
from lpnode.pipelines import BATCH_PIPELINES, spec
from lpnode.protocol.admin_access import AdminAccess, AdminGuard
from lpnode.protocol.asgi import ASGIApp
from lpnode.protocol.go_metrics import GATEWAY_NODE, GoAIMetrics
from lpnode.results import ResultStore, stream_route
from lpnode.serving import QuietServer, bind_socket, run_until_stopped
from lpnode.uvicorn_config import uvicorn_config

if TYPE_CHECKING:
    from lpnode.gateway.chain_directory import ChainDirectory
    from lpnode.gateway.payments import GatewayPayments
    from lpnode.gateway.selection import Selector

log = logging.getLogger("lpnode.gateway")
_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Gateway:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.client = OrchestratorClient()
        self.stats = Stats()
        self.store = ResultStore(settings.data_dir.expanduser() / "results", ttl_seconds=settings.result_ttl)
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "lpnode_gateway_requests", "Jobs by pipeline, model and status.", ["pipeline", "model_id", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.seconds = Histogram(
            "lpnode_gateway_request_duration_seconds", "Job latency.", ["pipeline"], buckets=_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.selected = Counter(
            "lpnode_gateway_orchestrator_jobs", "Jobs per orchestrator and status.", ["orchestrator", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.go_metrics = GoAIMetrics(GATEWAY_NODE)  # go-livepeer's AI metric names, beside lpnode's
        self.registry.register(self.go_metrics)
        self._session: aiohttp.ClientSession | None = None
        self.directory: Directory | None = None
        self.api: PublicApi | None = None
        self.openai: OpenAIRoutes | None = None
        self.forwarder: Forwarder | None = None
        self.byoc: ByocGateway | None = None
        self.apps: AppDirectory | None = None  # runner apps the orchestrators list (/discovery)
        self.app_routes: AppRoutes | None = None
        self.payments: GatewayPayments | None = None  # on chain, once run() opened the chain
        self.chain_directory: ChainDirectory | None = None  # the chain's pool, when it lists or weighs orchestrators
        self.caps = settings.caps  # with the USD rate on chain, once run() opened the chain
        self.state = open_state(settings.data_dir.expanduser(), settings.db_url)  # SQLite, or PostgreSQL
        self.guard = KeyGuard(KeyStore(self.state)) if settings.auth == "keys" else None
        self.usage = UsageLog(self.state)
        self.async_jobs = AsyncJobs(settings.result_ttl, self.state, running_seconds=settings.timeout)
        self.live = LiveSessions()  # live video streams; attached to the orchestrators in run()
        admit_live = self.guard.admit_async if self.guard is not None else None
        self.live_routes = LiveRoutes(self.live, admit_live)  # WHIP/WHEP add theirs to live_routes.extra_routes
        self.webrtc = WebRtcRoutes.from_env(lambda: self.live, admit=self.guard.admit_async if self.guard else None)
        self.live_routes.extra_routes += [*self.webrtc.routes(), *live_page_routes(self)]

    def default_model(self, pipeline: str) -> str:
        configured = self.settings.default_models.get(pipeline)
        if configured:
            return configured
        assert self.directory is not None
        # every orchestrator counts, suspended ones too: a suspension is not a reason to name another model
        offered_models = self.directory.models(pipeline, suspended=True).get(pipeline, set())
        offered = sorted(offered_models | (self.apps.models(pipeline) if self.apps is not None else set()))
        network_default = spec(pipeline).default_model
        if len(offered) == 1:
            return offered[0]
        if len(offered) > 1 and network_default not in offered:
            field = spec(pipeline).model_field
            raise BadRequestError(f"{field} is required; {pipeline} models offered: {', '.join(offered)}")
        return network_default

    def record(self, job: JobRecord, status: int) -> None:
        """Meter one finished job: metrics, the usage log and one log line."""
        seconds = job.seconds
        self.requests.labels(job.pipeline, job.model_id, str(status)).inc()
        self.seconds.labels(job.pipeline).observe(seconds)
        if job.orchestrator:
            self.selected.labels(job.orchestrator, str(status)).inc()
        self.go_metrics.job_finished(
            job.pipeline, job.model_id, status, seconds, job.units, job.price, job.orchestrator
        )
        self.usage.record(
            UsageRecord(
                pipeline=job.pipeline, model_id=job.model_id, key_id=job.key_id, key_name=job.key_name,
                units=job.units, price_wei=fee_wei(job.units, job.price), orchestrator=job.orchestrator,
                latency_ms=round(seconds * 1000, 3), status=status, request_id=job.request_id,
            )
        )  # fmt: skip
        log_event(
            log, "job", pipeline=job.pipeline, model_id=job.model_id, status=status, units=job.units,
            orchestrator=job.orchestrator or "-", ms=round(seconds * 1000, 1), request_id=job.request_id,
        )  # fmt: skip

    def public_app(self) -> Starlette:
        assert self.api is not None
        assert self.openai is not None
        routes = [Route(f"/{name}", self.api.handle, methods=["POST"]) for name in BATCH_PIPELINES]
        routes += [
            Route("/image-to-video/result", self.async_jobs.result, methods=["POST"]),
            Route("/v1/chat/completions", self.openai.chat, methods=["POST"]),
            Route("/v1/models", self.openai.models),
            *(self.byoc.routes() if self.byoc is not None else []),
            stream_route(self.store),
            Route("/healthz", _healthz),
            Route("/metrics", self._metrics),
            *dashboard_routes(self, admin=False),
        ]
        apps = self.app_routes.routes() if self.app_routes is not None else []  # /discovery, /apps/...
        return Starlette(routes=[*routes, *apps, *self.live_routes.routes()], exception_handlers=_JSON_HTTP_ERRORS)

    def admin_app(self) -> AdminGuard:
        """The admin API, behind its Host, Origin and token checks (:mod:`lpnode.protocol.admin_access`)."""
        assert self.directory is not None and self.forwarder is not None
        admin = AdminRoutes(self.directory, self.stats, self.forwarder, self.usage)
        s = self.settings
        access = AdminAccess(s.cli_host, s.cli_port, s.admin_token)
        app = Starlette(
            routes=[
                Route("/getNetworkCapabilities", admin.network_capabilities),
                Route("/getAISessionPoolsInfo", admin.session_pools),
                Route("/setMaxPriceForCapability", admin.set_max_price, methods=["POST"]),
                Route("/usage", admin.usage_summary),
                Route("/metrics", self._metrics),
                Route("/status", self._status),
                *dashboard_routes(self, admin=True),
            ]
        )
        return AdminGuard(app, access)

    async def _metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    async def _status(self, request: Request) -> Response:
        assert self.directory is not None
        known = [
            {"url": o.url, "ready": o.info is not None and not o.suspended, "problem": o.problem}
            for o in self.directory.known()
        ]
        live = [s.status()["gateway_status"] for s in self.live.running()]
        body: dict[str, Any] = {"orchestrators": known, "live": live, "database": self.state.where}
        if self.apps is not None and self.apps.all():
            body["runner_apps"] = self.apps.status()
        if self.payments is not None:
            await self.payments.funds_problem()  # fresh deposit and reserve (cached by the chain watcher)
            body["payments"] = self.payments.snapshot()
        if self.chain_directory is not None:
            body["chain_pool"] = self._pool_status(self.chain_directory)
        return JSONResponse(body)

    def _pool_status(self, pool: ChainDirectory) -> dict[str, Any]:
        """The chain's pool as last read: its round and members (address, stake, active, service URI)."""
        read = pool.last
        members = [
            {
                "address": m.checksum_address, "stake": str(m.stake), "active": m.active, "in_pool": m.in_pool,
                "service_uri": m.service_uri,
            }
            for m in (read.members if read is not None else ())
        ]  # fmt: skip
        return {"round": read.round if read is not None else None, "orchestrators": members, "problem": pool.problem}

    async def _open_pool(self) -> None:
        """On chain, when orchestrators come from the chain or are chosen by stake: read the pool once (a
        ``ConfigError`` line when the chain has none to read)."""
        from lpnode.gateway.chain_directory import ChainDirectory
        from lpnode.payments.chain_errors import ChainError
        from lpnode.payments.transcoder_pool import TranscoderPool

        s = self.settings
        assert s.chain is not None
        try:
            pool = TranscoderPool(s.chain.eth_url, s.chain.controller)
        except ChainError as exc:
            raise ConfigError(f"-network {s.chain.network}: {exc}") from None
        self.chain_directory = ChainDirectory(pool, poll_seconds=s.chain_poll_seconds)
        try:
            found = await self.chain_directory.read()
        except ChainError as exc:
            await self.chain_directory.close()
            self.chain_directory = None
            raise ConfigError(f"-network {s.chain.network}: cannot read the orchestrator pool: {exc}") from None
        log_event(log, "orchestrators from the chain", round=found.round, active=len(found.active))

    def _selector(self) -> Selector:
        """The ``--selection`` algorithm (a new one each call: batch jobs, runner apps and live keep their own)."""
        s = self.settings
        if s.selector == STAKE_SELECTOR:
            from lpnode.gateway.selection_chain import StakeSelector

            pool, directory = self.chain_directory, self.directory
            assert pool is not None
            return StakeSelector(lambda url: pool.stake(url, directory), s.weights)
        return SELECTORS[s.selector]()

    async def _open_payments(self) -> None:
        """Open the chain and the wallet (a ``ConfigError`` line when they are unusable) and count payments in
        ``/metrics``."""
        from lpnode.gateway.payments import GatewayPayments, PaymentsCollector
        from lpnode.payments.settings import open_chain

        chain = self.settings.chain
        assert chain is not None
        node = await open_chain(chain, self.settings.data_dir.expanduser())
        try:
            self.payments = await GatewayPayments.open(chain, node)
        except BaseException:
            await node.close()
            raise
        self.registry.register(PaymentsCollector(self.payments))
        if self.settings.caps.usd:
            feed = node.price_feed
            if feed is None:
                raise ConfigError(
                    "price caps in USD need the ETH/USD price feed: give -priceFeedAddr (the network's default "
                    "could not be read), or caps in wei or eth"
                )
            self.caps = dataclasses.replace(self.settings.caps, wei_per_usd=feed.wei_per_unit)

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        public_socket = bind_socket(s.http_host, s.http_port, flag="--http-addr")
        discover: Callable[[], Awaitable[Sequence[str] | None]] | None = None
        admin_socket = bind_socket(s.cli_host, s.cli_port, flag="--cli-addr")
        if s.chain is not None:
            await self._open_payments()
            if s.chain_discovery or s.selector == STAKE_SELECTOR:
                await self._open_pool()
        elif s.remote_signer_url:  # off-chain itself, paying on-chain orchestrators with the signer's key
            from lpnode.gateway.remote_signer import SignerPayments

            self.payments = signer = await SignerPayments.connect(s.remote_signer_url, s.remote_signer_headers)
            if not s.orchestrators and not s.webhook_url:
                discover = signer.discover  # the signer's /discover-orchestrators lists them
        if self.chain_directory is not None and s.chain_discovery:
            discover = self.chain_directory.discover
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5), connector=aiohttp.TCPConnector(limit=0)
        )
        self.directory = Directory(
            self.client,
            [normalize_address(a) for a in s.orchestrators],
            webhook_url=s.webhook_url,
            session=self._session,
            refresh_seconds=s.refresh_seconds,
            request=self.payments.orchestrator_request if self.payments is not None else None,
            expired=self.payments.params_expired if self.payments is not None else None,
            discover=discover,
        )
        transport = AiohttpTransport(self._session)
        forwarder = Forwarder(
            self.directory,
            self._selector(),
            self.stats,
            self.caps,
            transport,
            self._session,
            self.store,
            s.base_url,
            CapacityQueues(s.queue_size, s.queue_wait),
            payments=self.payments,
        )
        self.forwarder = forwarder
        admit = self.guard.admit_async if self.guard is not None else None
        wrapper = JobWrapper(admit=admit, record=self.record)
        self.api = PublicApi(forwarder, self.default_model, wrapper, timeout=s.timeout, async_jobs=self.async_jobs)
        self.openai = OpenAIRoutes(forwarder, self.directory, self.default_model, wrapper, timeout=s.timeout)
        self.byoc = ByocGateway(self.directory, self._session, wrapper, transport, payments=self.payments)
        self.apps = AppDirectory(self.directory, self._session, refresh_seconds=s.refresh_seconds)
        forwarder.apps = AppJobs(self.apps, forwarder)
        self.app_routes = AppRoutes(
            self.apps, forwarder.selector, self.stats, self._session, wrapper, s.base_url, self.state, timeout=s.timeout
        )
        if s.remote_signer_url and s.chain is None:  # runner apps' 402 challenges are paid through the signer
            from lpnode.gateway.remote_signer import SignerPayments

            assert isinstance(self.payments, SignerPayments)
            self.app_routes.signer = forwarder.apps.signer = self.payments
        self.live.attach(
            self.directory, self._selector(), self.stats, self.caps, self._session, s.base_url,
            payments=self.payments,
            payment_interval=s.chain.live_payment_interval if s.chain is not None else s.live_payment_interval,
        )  # fmt: skip
        refresher = asyncio.ensure_future(self.directory.run())
        app_refresher = asyncio.ensure_future(self.apps.run())
        background = [refresher, app_refresher]
        if self.chain_directory is not None:
            background.append(asyncio.ensure_future(self.chain_directory.run(self.directory)))
        servers = [_server(self.public_app(), public_socket), _server(self.admin_app(), admin_socket)]
        serving = [asyncio.ensure_future(server.serve(sockets=[sock])) for server, sock in servers]
        log_event(
            log, "gateway ready", api=s.base_url, admin=f"http://{s.cli_host}:{s.cli_port}", database=self.state.where
        )
        try:
            await asyncio.wait([asyncio.ensure_future(stop.wait()), *serving], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for server, _ in servers:
                server.should_exit = True
            await self.webrtc.close()  # WHIP/WHEP peers
            await self.live.close()  # ends live output streams, so their connections do not hold shutdown
            await asyncio.gather(*serving, return_exceptions=True)
            for task in background:
                task.cancel()
            self.async_jobs.close()
            await asyncio.gather(*background, return_exceptions=True)
            if self.chain_directory is not None:
                await self.chain_directory.close()
            if self.app_routes is not None:
                await self.app_routes.sessions.close()
            await self.client.close()
            await self._session.close()
            if self.payments is not None:
                await self.payments.close()
            await asyncio.to_thread(self.usage.close)
            if self.guard is not None:
                await asyncio.to_thread(self.guard.close)
            await asyncio.to_thread(self.state.close)
            log_event(log, "gateway stopped")


def _server(app: ASGIApp, sock: socket.socket) -> tuple[uvicorn.Server, socket.socket]:
    config = uvicorn_config(
        app, loop="none", log_config=None, access_log=False, timeout_graceful_shutdown=5, lifespan="off"
    )  # header, head-time and body-rate limits: lpnode.http_limits
    return QuietServer(config), sock


async def _http_error(request: Request, exc: Exception) -> Response:
    """Routing errors (no such route, a method it does not take) in the gateway's JSON error shape."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        error: JobError = NotFoundError(f"no route {request.method} {request.url.path} on this gateway")
    elif exc.status_code == 405:
        error = MethodNotAllowedError(f"{request.url.path} does not take {request.method}")
    else:
        error = error_for_status(exc.status_code, str(exc.detail))
    response = gateway_json_response(error)
    response.headers.update(exc.headers or {})
    return response


_JSON_HTTP_ERRORS = {404: _http_error, 405: _http_error}


async def _healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n")


def run_gateway(settings: GatewaySettings, on_stop: Callable[[], Any] | None = None) -> None:
    """Blocking: run a gateway until SIGTERM/SIGINT."""

    async def main(stop: asyncio.Event) -> None:
        await Gateway(settings).run(stop)

    run_until_stopped(main)
