"""The worker process: start the runners, attach to the orchestrator, serve its jobs, reattach when lost.

Start-up: the runner pool starts (warm runners load), then the worker registers with the orchestrator,
offering each model with its warm flag, capacity and runner version, and the hardware it runs on. Jobs
run concurrently, each on its own task. When the stream is lost the worker registers again after a delay
that doubles from 1 s up to :data:`MAX_BACKOFF` (reset once registered), forever, as go-livepeer workers
do; jobs already running finish and upload their results meanwhile. A refusal that retrying cannot fix
(``invalid secret``, ``zero capacity``, a version the orchestrator does not take) stops the worker with one
clear line (exit status 2). SIGTERM/SIGINT stop the jobs, the runners and the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import aiohttp

from lpnode.errors import ConfigError
from lpnode.logs import log_event
from lpnode.orchestrator.info import PriceBook, hardware, offers
from lpnode.orchestrator.install_check import check_install
from lpnode.orchestrator.pool import ProcessSettings, RunnerPool
from lpnode.protocol.capabilities import build_capabilities
from lpnode.protocol.lp_rpc_pb2 import NotifyAIJob, RegisterAIWorkerRequest
from lpnode.runner.hardware import gpu_info
from lpnode.serving import run_until_stopped
from lpnode.worker.job_runner import JobRunner
from lpnode.worker.link import LinkLost, OrchestratorLink, Refused
from lpnode.worker.settings import WorkerSettings

log = logging.getLogger("lpnode.worker")
MAX_BACKOFF = 60.0
FIRST_BACKOFF = 1.0
STOP_JOBS_TIMEOUT = 10.0


class Worker:
    """One worker: build with settings, then ``await run(stop)``."""

    def __init__(self, settings: WorkerSettings) -> None:
        check_install(settings.ai_models, process_runners=True, docker_option=False)  # its runners are processes
        self.settings = settings
        self.pool = RunnerPool(
            settings.ai_models,
            ProcessSettings(
                models_dir=settings.models_dir,
                env=dict(settings.runner_env),
                devices=settings.slot_devices,
                safety_checker_id=settings.safety_checker,
            ),
            settings.data_dir,
            slots=settings.slots,
        )
        self.link = OrchestratorLink(settings.orch_url)
        self._jobs: set[asyncio.Task[None]] = set()
        self._gpus = gpu_info()

    def registration(self) -> RegisterAIWorkerRequest:
        """What this worker offers now: every model with its state, and this machine's GPUs."""
        snapshot = self.pool.snapshot()
        return RegisterAIWorkerRequest(
            secret=self.settings.secret,
            capabilities=build_capabilities(offers(snapshot, PriceBook(()))),
            hardware=hardware(snapshot, self._gpus),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set; ``ConfigError`` when the orchestrator refuses this worker for good."""
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=2.0),
        )
        jobs = JobRunner(self.pool, self.link, self.settings.secret, session)
        try:
            starting = asyncio.ensure_future(self.pool.start())
            await asyncio.wait({starting, asyncio.ensure_future(stop.wait())}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                starting.cancel()
                return
            for problem in starting.result():
                log_event(log, "runner not ready at start", logging.WARNING, problem=problem)
            await self._attach(jobs, stop)
        finally:
            await self._stop_jobs()
            await self.pool.close()
            await session.close()

    async def _attach(self, jobs: JobRunner, stop: asyncio.Event) -> None:
        delay = FIRST_BACKOFF
        while not stop.is_set():
            registered = False

            def accepted(worker_id: str) -> None:
                nonlocal registered, delay
                registered, delay = True, FIRST_BACKOFF
                log_event(log, "registered with the orchestrator", orchestrator=self.link.url, worker=worker_id)

            session = asyncio.ensure_future(self._serve_stream(jobs, accepted))
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({session, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not session.done():
                session.cancel()
                with contextlib.suppress(asyncio.CancelledError, LinkLost, Refused):
                    await session
                return
            try:
                session.result()
            except Refused as exc:
                log_event(log, "the orchestrator refused this worker", logging.ERROR, problem=str(exc))
                raise ConfigError(str(exc)) from None
            except LinkLost as exc:
                log_event(log, "not attached to the orchestrator", logging.WARNING, problem=str(exc), retry_in=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(MAX_BACKOFF, delay * 2)

    async def _serve_stream(self, jobs: JobRunner, accepted: Callable[[str], None]) -> None:
        log_event(log, "registering with the orchestrator", orchestrator=self.link.url)
        async for notify in self.link.register(self.registration(), accepted):
            self._start_job(jobs, notify)

    def _start_job(self, jobs: JobRunner, notify: NotifyAIJob) -> None:
        task = asyncio.ensure_future(jobs.run(notify))
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    async def _stop_jobs(self) -> None:
        for task in list(self._jobs):
            task.cancel()
        if self._jobs:
            await asyncio.wait(list(self._jobs), timeout=STOP_JOBS_TIMEOUT)


def run_worker(settings: WorkerSettings) -> None:
    """Blocking: run a worker until SIGTERM/SIGINT, or until the orchestrator refuses it (``ConfigError``)."""
    from lpnode.protocol.same_port import new_event_loop

    async def main(stop: asyncio.Event) -> None:
        started = time.monotonic()
        await Worker(settings).run(stop)
        log_event(log, "worker stopped", seconds=round(time.monotonic() - started, 1))

    run_until_stopped(main, loop_factory=new_event_loop)
