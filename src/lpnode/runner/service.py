"""The runner's core: loads the model off the event loop, tracks health, admits and runs jobs.

Health moves LOADING → IDLE (loaded, nothing running) ⇄ OK (jobs running or queued), or
LOADING → ERROR when the model cannot be loaded. go-livepeer hands a runner that started in LOADING
back to its pool only once it reports IDLE, so IDLE is reported whenever the runner is free.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from pydantic import BaseModel

from lpnode.errors import (
    BadRequestError,
    JobCancelledError,
    JobError,
    LpnodeError,
    OutOfMemoryError,
    PipelineFailedError,
    UnavailableError,
)
from lpnode.logs import log_event
from lpnode.runner.admission import Admission
from lpnode.runner.config import RunnerConfig
from lpnode.runner.metrics import RunnerMetrics
from lpnode.runner.pipelines import BatchPipeline, Job, LoadContext, RouteSpec, StreamingPipeline

log = logging.getLogger("lpnode.runner")


def map_pipeline_exception(exc: BaseException, route: RouteSpec) -> JobError:
    """Turn whatever a model raised into an error a caller can read. Never exposes a traceback."""
    if isinstance(exc, JobError):
        return exc
    text = str(exc)
    lowered = text.lower()
    if "out of memory" in lowered or "not enough memory" in lowered or type(exc).__name__ == "OutOfMemoryError":
        _release_cuda_cache()
        return OutOfMemoryError(route.oom_error)
    if isinstance(exc, ValueError) and text:
        return BadRequestError(f"{route.default_error.rstrip('.')}: {text.splitlines()[0]}")
    log.error("pipeline failed", exc_info=exc, extra={"fields": {"pipeline": route.name}})
    return PipelineFailedError(route.default_error)


def _release_cuda_cache() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


class RunnerService:
    def __init__(
        self,
        config: RunnerConfig,
        pipeline_cls: type[BatchPipeline[Any]],
        on_ready: Callable[[], None] | None = None,
        route: RouteSpec | None = None,
    ) -> None:
        self._on_ready = on_ready
        self.config = config
        self.route = route or pipeline_cls.route  # custom pipelines: the route built for their name
        self._pipeline_cls = pipeline_cls
        self.pipeline: BatchPipeline[Any] | None = None
        self.status = "LOADING"
        self.load_error = ""
        self.load_seconds = 0.0
        self.device = ""
        self.metrics = RunnerMetrics(config.pipeline, config.model_id, config.version)
        self.metrics.set_state("LOADING")
        in_flight = config.max_in_flight or self.route.max_in_flight
        self.admission = Admission(in_flight, config.max_queue, on_change=self._update_gauges)
        self._executor = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="lpnode-job")
        self._jobs: set[Job] = set()
        self._loader: threading.Thread | None = None

    # -- loading -------------------------------------------------------------------------------
    def start_loading(self) -> None:
        """Load the model in a background thread; the HTTP port is already open meanwhile."""
        self._loader = threading.Thread(target=self._load, name="lpnode-model-load", daemon=True)
        self._loader.start()

    def wait_loaded(self, timeout: float | None = None) -> None:
        if self._loader is not None:
            self._loader.join(timeout)

    def _load(self) -> None:
        started = time.monotonic()
        config = self.config
        log_event(log, "loading model", pipeline=config.pipeline, model_id=config.model_id, models_dir=config.model_dir)
        try:
            import torch

            from lpnode.runner.device import select_device
            from lpnode.runner.libraries import quiet_model_libraries

            quiet_model_libraries()

            if config.threads:
                torch.set_num_threads(config.threads)
            self.device = select_device(config.device)
            ctx = LoadContext(
                max_in_flight=self.admission.max_in_flight,
                upstream_url=config.upstream_url,
                upstream_model=config.upstream_model,
                upstream_api_key=config.upstream_api_key,
                model_id=config.model_id,
                model_dir=config.model_dir,
                device=self.device,
                optimization_flags=dict(config.optimization_flags),
                safety_checker_id=config.safety_checker_id,
                allow_downloads=config.allow_downloads,
            )
            self.pipeline = self._pipeline_cls(ctx)
        except LpnodeError as exc:
            self._fail(str(exc))
            return
        except Exception as exc:  # a library failed while loading: say what, keep serving /health
            log.error("model load crashed", exc_info=exc)
            self._fail(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            return
        self.load_seconds = time.monotonic() - started
        self.metrics.load_seconds.set(self.load_seconds)
        self.status = "READY"
        self.metrics.set_state("IDLE")
        log_event(
            log,
            "model loaded",
            pipeline=config.pipeline,
            model_id=config.model_id,
            device=self.device,
            seconds=round(self.load_seconds, 2),
        )
        if self._on_ready is not None:
            self._on_ready()

    def _fail(self, reason: str) -> None:
        self.load_error = reason
        self.status = "ERROR"
        self.metrics.set_state("ERROR")
        log_event(
            log,
            "model failed to load",
            logging.ERROR,
            pipeline=self.config.pipeline,
            model_id=self.config.model_id,
            reason=reason,
        )

    # -- health --------------------------------------------------------------------------------
    def health(self) -> str:
        if self.status != "READY":
            return self.status
        return "OK" if self.admission.in_flight or self.admission.queued else "IDLE"

    def health_warnings(self) -> list[str]:
        """What the loaded model serves only in part (e.g. its safety checker is missing); [] before it loads."""
        return self.pipeline.health_warnings() if self.pipeline is not None else []

    # -- jobs ----------------------------------------------------------------------------------
    def check_model_id(self, requested: str) -> None:
        if requested and requested != self.config.model_id:
            end = "." if self.route.guard_period else ""
            raise BadRequestError(f"pipeline configured with {self.config.model_id} but called with {requested}{end}")

    def _ready_pipeline(self) -> BatchPipeline[Any]:
        if self.status == "LOADING":
            raise UnavailableError(f"Model {self.config.model_id} is still loading; retry shortly.", retry_after=5)
        if self.pipeline is None:
            raise UnavailableError(f"Model {self.config.model_id} failed to load: {self.load_error}", retry_after=30)
        return self.pipeline

    @asynccontextmanager
    async def _admitted(self) -> AsyncIterator[None]:
        """A slot for one job, counting refusals and queued clients that gave up."""
        queued_at = time.monotonic()
        admitted = False
        try:
            async with self.admission.slot():
                admitted = True
                self.metrics.queue_seconds.observe(time.monotonic() - queued_at)
                yield
        except UnavailableError:
            if not admitted:
                self.metrics.rejected.inc()
            raise
        except asyncio.CancelledError:
            if not admitted:
                self.metrics.cancelled.inc()
            raise

    @asynccontextmanager
    async def _tracked(self, job: Job) -> AsyncIterator[None]:
        """Time, count and log one running job; map whatever it raises to an error a caller can read."""
        self._jobs.add(job)
        started = time.monotonic()
        try:
            yield
        except (asyncio.CancelledError, GeneratorExit):
            job.cancel()
            self.metrics.cancelled.inc()
            log_event(
                log,
                "job cancelled",
                reason="client disconnected",
                steps_done=job.steps_done,
                seconds=round(time.monotonic() - started, 2),
            )
            raise
        except JobCancelledError:
            raise
        except Exception as exc:
            error = map_pipeline_exception(exc, self.route)
            log_event(
                log,
                "job failed",
                status=error.status_code,
                reason=error.message,
                seconds=round(time.monotonic() - started, 3),
            )
            raise error from None
        else:
            log_event(log, "job finished", steps=job.steps_done, seconds=round(time.monotonic() - started, 3))
        finally:
            elapsed = time.monotonic() - started
            self.admission.record_duration(elapsed)
            self.metrics.job_seconds.observe(elapsed)
            self._jobs.discard(job)

    async def submit(self, params: BaseModel, job: Job | None = None) -> BaseModel:
        """Run one request: checks, a slot, then the model (in a worker thread, or the pipeline's own
        async path). Cancelling the calling task (client disconnect) removes a queued job or stops a
        running one at its next step."""
        pipeline = self._ready_pipeline()
        pipeline.check(params)
        job = job or Job()
        async with self._admitted(), self._tracked(job):
            if isinstance(pipeline, StreamingPipeline):
                return await pipeline.complete(params, job)
            return await self._in_worker(pipeline, params, job)

    async def stream(self, params: BaseModel, job: Job) -> AsyncGenerator[BaseModel, None]:
        """Serve one request as chunks. Closing the iterator (client gone) stops the pipeline."""
        pipeline = self._ready_pipeline()
        if not isinstance(pipeline, StreamingPipeline):
            raise BadRequestError(f"The {self.route.name} pipeline does not stream.")
        pipeline.check(params)
        async with self._admitted(), self._tracked(job):
            chunks = pipeline.stream(params, job)
            try:
                async for chunk in chunks:
                    yield chunk
            finally:
                await chunks.aclose()

    async def _in_worker(self, pipeline: BatchPipeline[Any], params: BaseModel, job: Job) -> BaseModel:
        future = asyncio.get_running_loop().run_in_executor(self._executor, _run_job, pipeline, params, job)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            job.cancel()
            # Once the caller is cancelled the shield no longer reads the worker's end (its expected
            # JobCancelledError); unread, asyncio would log it as an error when the future is collected.
            future.add_done_callback(_consume)
            await asyncio.wait([future])  # the slot stays taken until the model has really stopped
            raise

    def _update_gauges(self) -> None:
        self.metrics.in_flight.set(self.admission.in_flight)
        self.metrics.queued.set(self.admission.queued)
        if self.status == "READY":
            self.metrics.set_state(self.health())

    async def shutdown(self) -> None:
        """Stop running jobs at their next step, drop queued ones, close the pipeline's connections."""
        for job in list(self._jobs):
            job.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self.pipeline is not None:
            await self.pipeline.close()


def _consume(future: asyncio.Future[Any]) -> None:
    """Mark a finished future's outcome as read: nobody waits for it any more."""
    if not future.cancelled():
        future.exception()


def _run_job(pipeline: BatchPipeline[Any], params: BaseModel, job: Job) -> BaseModel:
    import torch

    with torch.inference_mode():
        return pipeline.run(params, job)
