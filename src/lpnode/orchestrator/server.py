"""The orchestrator process: runner pool, ``GetOrchestrator`` and the AI job routes on one port.

Start-up order: check the listen port is free, start the runner pool (warm runners load; each is bounded
by the pool's start timeout), then serve. SIGTERM or SIGINT at any point stops serving (in-flight jobs
get a few seconds), stops every runner and exits; runners also stop on their own if this process is
killed (they watch their parent).

HTTP routes: ``POST /<pipeline>`` for each batch pipeline, ``GET /stream/<request-id>/<file>`` (results),
``GET /metrics`` (Prometheus), ``GET /healthz`` and ``GET /status`` (the pool, as JSON, without what only the
operator should see: :func:`~lpnode.orchestrator.dashboard_source.public_status`), ``POST /aiResults``
(remote AI workers' results), ``POST /live-video-to-video`` (:mod:`lpnode.orchestrator.live`) and its trickle
channels under ``/ai/trickle/``. gRPC: ``net.Orchestrator/GetOrchestrator``, ``net.AIWorker/RegisterAIWorker``.

On chain (``settings.chain``) start-up first opens the chain and the wallet (:mod:`lpnode.orchestrator.payments`;
a wrong chain, keystore or password stops it with one ``lpnode: error:`` line, before any runner starts), and
every paid route checks and debits payments; ``POST /payment`` credits live streams. ``GetOrchestrator`` then
refuses a request whose ``sig`` is not the gateway's (``Invalid orchestrator request``) and answers ``address``,
``price_info`` and ``ticket_params``. Off-chain none of this is loaded.

Admin API (``--cli-addr``, plain HTTP, loopback by default, behind :mod:`lpnode.protocol.admin_access`):
``GET /status`` (the whole node view: runner PIDs, log paths and URLs included), ``GET /dashboard`` (the node
page over it), ``GET /healthz``, ``GET /metrics``, ``POST /registerLiveRunners`` (static runner apps).

Runner apps (go-livepeer's Live Runner, ``-useLiveRunners`` / ``-liveRunnerConfig``): their routes
(``/runners/...``, ``/discovery``, ``/apps/...``, ``/runner/...``, public proxy URLs) sit in front of the node's
own (:mod:`lpnode.orchestrator.runner_apps`), their channels on the same trickle server.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
from typing import TYPE_CHECKING, Any

import aiohttp
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from lpnode import __version__
from lpnode.dashboard.node_pages import node_routes
from lpnode.errors import ConfigError, ForbiddenError, JobError
from lpnode.logs import log_event
from lpnode.orchestrator.ai_results import ResultsRoute
from lpnode.orchestrator.byoc_pipelines import register_custom_pipelines
from lpnode.orchestrator.byoc_routes import ByocOrchestrator
from lpnode.orchestrator.dashboard_source import annotate_models, public_status
from lpnode.orchestrator.info import PriceBook, add_payment_terms, offers, orchestrator_info
from lpnode.orchestrator.install_check import check_install
from lpnode.orchestrator.job_relay import JobRelay
from lpnode.orchestrator.live import LiveRoute
from lpnode.orchestrator.metrics import OrchestratorMetrics
from lpnode.orchestrator.pool import ModelStatus, ProcessSettings, RunnerBackend, RunnerPool
from lpnode.orchestrator.pool.runner_app_env import runner_app_host
from lpnode.orchestrator.remote_workers import JOB_TIMEOUT, RemoteWorkers, merge_snapshots
from lpnode.orchestrator.runner_apps import RunnerApps, front_without_apps, not_supported
from lpnode.orchestrator.settings import OrchestratorSettings
from lpnode.pipelines import BATCH_PIPELINES
from lpnode.protocol.admin_access import AdminAccess, AdminGuard
from lpnode.protocol.asgi import ASGIApp
from lpnode.protocol.auth_token import AuthTokens
from lpnode.protocol.capabilities import build_capabilities
from lpnode.protocol.certs import ensure_certificate
from lpnode.protocol.grpc_unary import GrpcError, PeerInfo, StatusCode
from lpnode.protocol.lp_rpc_pb2 import Capabilities, OrchestratorInfo, OrchestratorRequest, SegData
from lpnode.protocol.orchestrator_service import orchestrator_methods
from lpnode.protocol.same_port import ServerSettings, new_event_loop, serve_same_port
from lpnode.results import ResultStore, stream_route
from lpnode.runner.hardware import gpu_info
from lpnode.serving import QuietServer, bind_socket, port_is_free, run_until_stopped
from lpnode.trickle import TrickleServer, TrickleSettings
from lpnode.uvicorn_config import uvicorn_config

if TYPE_CHECKING:
    from lpnode.orchestrator.chain_duties import DutyFlags
    from lpnode.orchestrator.payments import OrchestratorPayments

log = logging.getLogger("lpnode.orchestrator")
SWEEP_INTERVAL = 60.0
RUNNER_IDLE_SECONDS = 2.0


class Orchestrator:
    """One orchestrator: build with settings, then ``await run(stop)``."""

    def __init__(self, settings: OrchestratorSettings, duties: DutyFlags | None = None) -> None:
        # A missing pip extra is one line here, not a failure in every runner it would start.
        check_install(
            settings.ai_models if settings.local_runners else [], process_runners=settings.runner_backend == "process"
        )
        self.settings = settings
        self.duties = duties
        """On chain: ``-reward`` and ``-initializeRound`` (:mod:`lpnode.orchestrator.chain_duties`)."""
        self.payments: OrchestratorPayments | None = None
        """On chain, once :meth:`run` has opened the chain; ``None`` off-chain."""
        self.tokens = AuthTokens(validity_seconds=settings.auth_token_ttl)
        self.prices = PriceBook(settings.ai_models)
        self.store = ResultStore(settings.data_dir / "results", ttl_seconds=settings.result_ttl)
        self.pool = RunnerPool(
            settings.ai_models if settings.local_runners else [],  # -aiWorker=false: the entries only price
            self._backend(),
            settings.data_dir,
            slots=settings.slots,
            timings=settings.timings,
            models_dir=settings.models_dir,
        )
        self.metrics = OrchestratorMetrics(self.snapshot, slots=settings.slots)
        self.remote = RemoteWorkers(settings.orch_secret, self.store, settings.service_url, self.metrics.registry)
        self.results = ResultsRoute(settings.orch_secret, self.remote.tasks, JOB_TIMEOUT)
        self._session: aiohttp.ClientSession | None = None
        self.byoc = ByocOrchestrator(settings.orch_secret, settings.service_url, self.session)
        # Live video channels under /ai/trickle/; made in-process, or with POST + "Authorization: <orchSecret>".
        self.trickle = TrickleServer(TrickleSettings(create_secret=settings.orch_secret))
        self._gpus = gpu_info()
        self.relay = JobRelay(
            self.pool,
            self.store,
            self.tokens,
            self.capabilities,
            self.metrics,
            self.session,
            settings.service_url,
            remote=self.remote,
        )
        # Runner apps (go-livepeer's Live Runner): None unless -useLiveRunners or -liveRunnerConfig.
        self.runner_apps = RunnerApps.create(
            enabled=settings.use_live_runners, config=settings.live_runner_config,
            proxy_url=settings.live_runner_proxy_url, runner_addr=settings.live_runner_addr,
            service_url=settings.service_url, orch_secret=settings.orch_secret, trickle=self.trickle,
            on_chain=settings.chain is not None,
        )  # fmt: skip
        self.live = LiveRoute(
            self.pool, self.trickle, self.tokens, self.capabilities, self.session, settings.service_url,
            self.metrics.registry,
        )  # fmt: skip

    def _backend(self) -> ProcessSettings | RunnerBackend:
        s = self.settings
        # aiModels.json "runner_app" entries: their runners register with this node (ConfigError if it cannot host them)
        app_host = runner_app_host(
            s.ai_models, use_live_runners=s.use_live_runners, orch_secret=s.orch_secret,
            runner_addr=s.live_runner_addr, service_url=s.service_url,
        )  # fmt: skip
        if s.runner_backend == "docker":
            from lpnode.orchestrator.pool.docker import DockerBackend, DockerSettings, docker_available
            from lpnode.orchestrator.pool.docker_images import parse_image_overrides

            problem = docker_available()
            if problem is not None:
                raise ConfigError(f"--runner-backend docker: {problem}")
            return DockerBackend(
                DockerSettings(
                    models_dir=s.models_dir,
                    image_overrides=parse_image_overrides(s.image_overrides),
                    creator_id=s.service_url,
                    gpus=s.slot_devices,
                    verbose_logs=s.verbose_runner_logs,
                    env=dict(s.runner_env),
                    safety_checker_id=s.safety_checker,
                    runner_apps=app_host,
                ),
                log_dir=s.data_dir / "logs",
            )
        return ProcessSettings(
            models_dir=s.models_dir,
            env=dict(s.runner_env),
            devices=s.slot_devices,
            safety_checker_id=s.safety_checker,
            runner_apps=app_host,
        )

    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "the orchestrator is not running"
        return self._session

    def snapshot(self) -> dict[tuple[str, str], ModelStatus]:
        """Every model served: the local runner pool's and the remote workers', merged."""
        return merge_snapshots(self.pool.snapshot(), self.remote.snapshot())

    def capabilities(self) -> Capabilities:
        return build_capabilities(offers(self.snapshot(), self.prices))

    async def get_orchestrator(self, request: OrchestratorRequest, peer: PeerInfo) -> OrchestratorInfo:
        self.metrics.get_orchestrator.inc()
        try:
            return await self._info(request)
        except ForbiddenError as exc:  # go-livepeer's words, as a plain (UNKNOWN) gRPC error
            raise GrpcError(StatusCode.UNKNOWN, f"Invalid orchestrator request ({exc.message})") from None
        except JobError as exc:  # no ticket params for this sender (e.g. insufficient sender reserve)
            raise GrpcError(StatusCode.UNKNOWN, exc.message) from None

    async def _info(self, request: OrchestratorRequest, sender: bytes | None = None) -> OrchestratorInfo:
        """``OrchestratorInfo`` for ``request``; on chain with its payment terms for ``sender`` (by default the
        request's address, proven by its ``sig``)."""
        info = orchestrator_info(
            request,
            service_url=self.settings.service_url,
            snapshot=self.snapshot(),
            prices=self.prices,
            tokens=self.tokens,
            gpus=self._gpus,
        )
        self.remote.fix_hardware(info)
        info.capabilities_prices.extend(self.byoc.capabilities_prices())
        if self.payments is not None:
            await add_payment_terms(info, request, self.payments, self.prices, sender)
        return info

    async def _open_payments(self) -> None:
        """On chain: open the chain, the wallet and the ticket queue, and hand them to every paid route."""
        s = self.settings
        if s.chain is None:
            return
        from lpnode.orchestrator.payments import open_payments

        payments = await open_payments(s.chain, s.data_dir, s.service_url, self.duties)
        self.payments = payments
        self.prices = PriceBook(s.ai_models, payments.wei_per)
        self.relay.payments, self.relay.prices = payments, self.prices
        self.live.use_payments(payments, self.prices, s.chain.live_payment_interval, self.paid_info)
        if self.runner_apps is not None:  # sessions and calls answer 402 until paid, then are metered
            self.runner_apps.use_payments(payments, self.tokens, s.chain.live_payment_interval)
        self.byoc.payments = payments
        self.byoc.registry.wei_per = payments.wei_per  # BYOC prices in USD, converted with the price feed
        self.metrics.registry.register(payments.collector())
        payments.start()

    async def paid_info(self, sender: bytes, segment: SegData) -> OrchestratorInfo:
        """Fresh payment terms for a paying gateway (``POST /payment``): for the capabilities its segment names,
        keeping its session's auth token (new tokens come only from ``GetOrchestrator``)."""
        request = OrchestratorRequest(address=sender, capabilities=segment.capabilities)
        info = await self._info(request, sender)
        info.auth_token.CopyFrom(segment.auth_token)
        return info

    def http_app(self) -> ASGIApp:
        routes = [Route(f"/{p}", self.relay.handle, methods=["POST"]) for p in BATCH_PIPELINES]
        routes += [
            stream_route(self.store),
            Route("/metrics", self._metrics),
            Route("/healthz", self._healthz),
            Route("/status", self._status),
            Route("/aiResults", self.results.handle, methods=["POST"]),
            Route("/live-video-to-video", self.live.handle, methods=["POST"]),
            *([Route("/payment", self.live.payment, methods=["POST"])] if self.payments is not None else []),
            *self.byoc.routes(),
            *node_routes(),
        ]
        app = Starlette(routes=[*routes, Mount("/ai/trickle", app=self.trickle)])
        return self.runner_apps.front(app) if self.runner_apps is not None else front_without_apps(app)

    async def _metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def _healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok\n")

    def admin_app(self) -> AdminGuard:
        """The admin API's app, behind its Host, Origin and token checks."""
        s = self.settings
        assert s.cli_port is not None
        app = Starlette(
            routes=[
                Route("/status", self._admin_status),
                Route("/healthz", self._healthz),
                Route("/metrics", self._metrics),
                *(self.runner_apps.admin_routes() if self.runner_apps is not None else []),
                *([] if self.runner_apps is not None else [Route("/registerLiveRunners", not_supported)]),
                *node_routes(),
            ]
        )
        return AdminGuard(app, AdminAccess(s.cli_host, s.cli_port, s.admin_token))

    def status_document(self) -> dict[str, Any]:
        """The whole node view (the admin API's ``/status``)."""
        every = merge_snapshots(self.pool.snapshot(runner_apps=True), self.remote.snapshot())
        models: list[dict[str, Any]] = [dataclasses.asdict(s) for s in every.values()]
        return {
            "version": __version__,
            "service_url": self.settings.service_url,
            "models": annotate_models(models, self.settings.slot_devices),
            "byoc": self.byoc.status(),
            "workers": self.remote.status(),
            "live": self.live.status(),
            **({"runner_apps": self.runner_apps.status()} if self.runner_apps is not None else {}),
            **({"payments": self._payments_status()} if self.payments is not None else {}),
        }

    def _payments_status(self) -> dict[str, Any]:
        """The wallet's figures, with what runner apps were paid when this node sells them."""
        assert self.payments is not None
        document = self.payments.status()
        apps = self.runner_apps.payments_status() if self.runner_apps is not None else None
        return document if apps is None else {**document, "runner_apps": apps}

    async def _status(self, request: Request) -> Response:
        return JSONResponse(public_status(self.status_document()))

    async def _admin_status(self, request: Request) -> Response:
        return JSONResponse(self.status_document())

    def _admin_socket(self) -> socket.socket | None:
        """The admin API's socket, bound now; ``None`` without one, or when the default port is busy."""
        s = self.settings
        if s.cli_port is None:
            return None
        try:
            return bind_socket(s.cli_host, s.cli_port, flag="--cli-addr")
        except ConfigError:
            address = f"{s.cli_host}:{s.cli_port}"
            if s.cli_addr_given:
                raise ConfigError(
                    f"cannot serve the admin API on {address}: the port is in use; choose another --cli-addr "
                    "(or --cli-addr off)"
                ) from None
            # The default port is a convenience: another node on this machine may hold it.
            log_event(
                log, "admin API not served: its default port is in use", logging.WARNING, address=address,
                fix="give --cli-addr HOST:PORT",
            )  # fmt: skip
            return None

    async def run(self, stop: asyncio.Event) -> None:
        """Start the pool, serve until ``stop`` is set, then stop everything (bounded)."""
        s = self.settings
        if not port_is_free(s.listen_host, s.listen_port):
            raise ConfigError(
                f"cannot listen on {s.listen_host}:{s.listen_port}: the port is in use; "
                "choose another --service-addr/--http-addr or stop the process using it"
            )
        await self._open_payments()  # a wrong chain, keystore or password stops here, before any runner starts
        try:
            admin_socket = self._admin_socket()
            tls = ensure_certificate(s.data_dir / "tls", _certificate_host(s.service_url)) if s.tls else None
        except BaseException:
            if self.payments is not None:
                await self.payments.close()
            raise
        # Idle connections to runners are dropped before a runner's server drops them (uvicorn: 5 s), so a
        # job never goes out on a connection the runner is closing.
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=RUNNER_IDLE_SECONDS),
        )
        sweeper = asyncio.ensure_future(self._sweep())
        admin: QuietServer | None = None
        admin_serving: asyncio.Future[None] | None = None
        workers_closer = asyncio.ensure_future(self.remote.close_when(stop))
        channels_closer = asyncio.ensure_future(self._close_channels_when(stop))
        try:
            if admin_socket is not None:  # served from the start, so the node page shows runners loading
                admin = QuietServer(
                    uvicorn_config(
                        self.admin_app(), loop="none", log_config=None, access_log=False,
                        lifespan="off", timeout_graceful_shutdown=2,
                    )
                )  # fmt: skip
                admin_serving = asyncio.ensure_future(admin.serve(sockets=[admin_socket]))
            starting = asyncio.ensure_future(self.pool.start())
            await asyncio.wait({starting, asyncio.ensure_future(stop.wait())}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                starting.cancel()
                return
            await register_custom_pipelines(self.byoc.registry, self.pool, s.ai_models)
            if self.runner_apps is not None:  # runners.json problems stop the start here
                await self.runner_apps.start()
            for problem in starting.result():
                log_event(log, "runner not ready at start", logging.WARNING, problem=problem)
            admin_url = f"http://{s.cli_host}:{s.cli_port}" if admin_socket is not None else "-"
            log_event(
                log, "orchestrator ready", service=s.service_url, models=len(self.pool.snapshot()), admin=admin_url
            )
            settings = ServerSettings(s.listen_host, s.listen_port, tls)
            await serve_same_port(
                self.http_app(),
                orchestrator_methods(self.get_orchestrator, self.remote.register),
                settings,
                stop=stop,
                handle_signals=False,
            )
        finally:
            if admin is not None and admin_serving is not None:
                admin.should_exit = True
                await asyncio.gather(admin_serving, return_exceptions=True)
            if admin_socket is not None:
                admin_socket.close()
            sweeper.cancel()
            workers_closer.cancel()
            channels_closer.cancel()
            await self.live.close()
            if self.runner_apps is not None:
                await self.runner_apps.close()
            await self.byoc.close()
            await self.pool.close()
            await self._session.close()
            if self.payments is not None:
                await self.payments.close()

    async def _close_channels_when(self, stop: asyncio.Event) -> None:
        """On stop, end the trickle channels first, so their long-polling readers do not hold shutdown."""
        await stop.wait()
        await self.trickle.close()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self.store.sweep)


def run_orchestrator(settings: OrchestratorSettings, duties: DutyFlags | None = None) -> None:
    """Blocking: run an orchestrator until SIGTERM/SIGINT. ``duties``: on chain, ``-reward``/``-initializeRound``."""

    async def main(stop: asyncio.Event) -> None:
        await Orchestrator(settings, duties).run(stop)

    run_until_stopped(main, loop_factory=new_event_loop)


def _certificate_host(service_url: str) -> str:
    host = service_url.split("://", 1)[1].rsplit(":", 1)[0]
    return host.strip("[]")
