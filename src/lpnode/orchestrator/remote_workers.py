"""Remote AI workers: ``lpnode worker`` (or go-livepeer ``-aiWorker``) nodes that attach to this orchestrator
and serve its jobs, go-livepeer's protocol (``docs/workers.md``).

A worker calls ``net.AIWorker/RegisterAIWorker`` with the orchestrator's secret and its capabilities, and
keeps the stream open; while it is connected its per-model capacity is added to what the orchestrator
advertises, and the stream ends (either side) remove it. Refusals end the stream with a status whose
message go-livepeer workers act on: ``invalid secret`` and ``zero capacity`` stop them. Without
``--orch-secret`` this orchestrator takes no workers; the refusal then starts with ``invalid secret`` and
says why (lpnode workers stop on it; go-livepeer workers keep retrying). A worker older than this
orchestrator is refused too (``Capabilities.version`` against lpnode's version, semver, as go-livepeer
compares its own versions).

Jobs: the job routes use local runners first and come here when the local pool cannot take a job
(:meth:`RemoteWorkers.reserve`). The job goes to the least busy worker with free capacity for its model as
``NotifyAIJob`` (see :mod:`lpnode.protocol.ai_worker`; an uploaded file is saved in the result store and
the worker fetches it from ``/stream/...``), and the caller waits for the worker's ``/aiResults`` upload
(:mod:`lpnode.orchestrator.ai_results`), then gets the answer the local path would give: the same JSON,
its files re-hosted under ``/stream/`` for gateways (``Authorization: Livepeer-AI-Worker-1.0``) and as
``data:`` URLs for other callers (what a runner answers), image-to-video always as an MP4 URL; LLM streams
relayed as server-sent events. An audio-to-text answer carries ``X-Audio-Duration`` as a runner's does (the
orchestrator measures the upload itself, as go-livepeer does, since a worker does not report it), so a paid job
is debited ``int(seconds) × 1000`` units and metered as on a local runner. A job whose worker leaves, or that
outlives :data:`JOB_TIMEOUT` (the worker is then dropped), is sent to another worker, waiting up to
:data:`RETRY_WAIT` for free capacity.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from collections.abc import Iterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from starlette.requests import Request
from starlette.responses import Response

from lpnode import __version__
from lpnode.audio_length import audio_seconds
from lpnode.errors import (
    BadRequestError,
    JobCancelledError,
    PayloadTooLargeError,
    PipelineFailedError,
    error_for_status,
)
from lpnode.http_relay import RelayedStream, disconnected
from lpnode.logs import log_event
from lpnode.orchestrator.ai_results import ErrorOutcome, Outcome, PendingTask, StreamOutcome, TaskTable
from lpnode.orchestrator.job_body import JobBody
from lpnode.orchestrator.pool import InsufficientCapacity, ModelStatus
from lpnode.orchestrator.result_files import VIDEO_PIPELINES
from lpnode.orchestrator.worker_jobs import MAX_UPLOAD_BYTES, answer_with_files, job_data
from lpnode.protocol.ai_worker import (
    FILE_FIELDS,
    INVALID_SECRET,
    WORKER_ID_METADATA,
    ZERO_CAPACITY,
    JobData,
    parse_multipart,
)
from lpnode.protocol.capabilities import pipeline_for_capability
from lpnode.protocol.grpc_stream import ServerStream
from lpnode.protocol.grpc_wire import GrpcError, PeerInfo, StatusCode
from lpnode.protocol.job_hop import WORKER_AUTHORIZATION
from lpnode.protocol.lp_rpc_pb2 import (
    AIJobData,
    HardwareInformation,
    NotifyAIJob,
    OrchestratorInfo,
    RegisterAIWorkerRequest,
)
from lpnode.results import ResultStore

log = logging.getLogger("lpnode.orchestrator.workers")
ModelKey = tuple[str, str]

JOB_TIMEOUT = 15 * 60.0
"""Seconds a worker has for one job (go-livepeer's ``aiWorkerRequestTimeout``); past it the worker is dropped."""
RETRY_WAIT = 60.0
"""Seconds a job whose worker was lost waits for another worker's capacity."""
MAX_ATTEMPTS = 3
DURATION_ERROR = "Unable to calculate duration of file"
"""go-livepeer's words (400) when it cannot tell an audio upload's length."""
AUDIO_PIPELINE = "audio-to-text"
DURATION_HEADER = "X-Audio-Duration"
"""The runner's header for the seconds of audio transcribed; the job relay debits and meters by it."""
NO_SECRET = f"{INVALID_SECRET}: this orchestrator takes no remote AI workers; start it with --orch-secret"


@dataclass
class WorkerModel:
    pipeline: str
    model_id: str
    capacity: int
    warm: bool
    runner_version: str
    in_use: int = 0


@dataclass(eq=False)
class RemoteWorker:
    """One connected worker. ``queue`` feeds its stream; ``None`` on it ends the stream with ``end``."""

    id: str
    address: str
    version: str
    models: dict[ModelKey, WorkerModel]
    hardware: list[HardwareInformation]
    connected_at: float = field(default_factory=time.time)
    queue: asyncio.Queue[NotifyAIJob | None] = field(default_factory=asyncio.Queue)
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    end: GrpcError | None = None
    jobs_sent: int = 0
    jobs_done: int = 0
    last_error: str = ""

    def drop(self, code: StatusCode, reason: str) -> None:
        """End this worker's stream with ``code``/``reason`` (it may reconnect)."""
        if self.end is None:
            self.end = GrpcError(code, reason)
            self.queue.put_nowait(None)

    def status(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "address": self.address,
            "version": self.version,
            "connected_at": self.connected_at,
            "models": [
                {
                    "pipeline": m.pipeline,
                    "model_id": m.model_id,
                    "capacity": m.capacity,
                    "in_use": m.in_use,
                    "warm": m.warm,
                }
                for m in self.models.values()
            ],
            "jobs_done": self.jobs_done,
            "last_error": self.last_error,
        }


@dataclass
class WorkerLease:
    """One job's worth of a worker's capacity for one model."""

    worker: RemoteWorker
    model: WorkerModel
    released: bool = False


class RemoteWorkers:
    """The workers attached to this orchestrator, their capacity, and the jobs sent to them."""

    def __init__(self, secret: str, store: ResultStore, service_url: str, registry: CollectorRegistry) -> None:
        self.secret = secret
        self.store = store
        self.service_url = service_url.rstrip("/")
        self.tasks = TaskTable()
        self._workers: dict[str, RemoteWorker] = {}
        self._waiters: set[asyncio.Future[None]] = set()
        self._offered: set[ModelKey] = set()  # every model a worker has offered since start
        self._closing = False
        self._connected = Gauge("lpnode_orchestrator_remote_workers", "Remote AI workers connected.", registry=registry)
        self._jobs = Counter(
            "lpnode_orchestrator_remote_jobs",
            "Jobs sent to remote AI workers, by pipeline, model and outcome (ok, error, lost, timeout).",
            ["pipeline", "model_id", "outcome"],
            registry=registry,
        )

    # --- the AIWorker stream ---------------------------------------------------------------------------

    async def register(
        self, request: RegisterAIWorkerRequest, peer: PeerInfo, stream: ServerStream[NotifyAIJob]
    ) -> None:
        """``RegisterAIWorker``: check the worker, then send it jobs until either side ends the stream."""
        address = f"{peer.client[0]}:{peer.client[1]}" if peer.client else "unknown"
        if not self.secret:
            log_event(log, "remote worker refused: no --orch-secret set", logging.WARNING, address=address)
            raise GrpcError(StatusCode.PERMISSION_DENIED, NO_SECRET)
        if not hmac.compare_digest(request.secret.encode(), self.secret.encode()):
            log_event(log, "remote worker refused: wrong secret", logging.WARNING, address=address)
            raise GrpcError(StatusCode.PERMISSION_DENIED, INVALID_SECRET)
        if self._closing:
            raise GrpcError(StatusCode.UNAVAILABLE, "the orchestrator is shutting down; retry later")
        version = request.capabilities.version
        if _semver(version) < _semver(__version__):
            log_event(log, "remote worker refused: too old", logging.WARNING, address=address, version=version)
            raise GrpcError(
                StatusCode.FAILED_PRECONDITION,
                f"worker version {version or 'unknown'} is older than this orchestrator's {__version__}; "
                "upgrade the worker",
            )
        models = dict(_offered_models(request))
        if not any(m.capacity for m in models.values()):
            raise GrpcError(StatusCode.FAILED_PRECONDITION, ZERO_CAPACITY)
        worker = RemoteWorker(secrets.token_hex(4), address, version, models, list(request.hardware))
        self._workers[worker.id] = worker
        self._offered.update(models)
        self._connected.set(len(self._workers))
        log_event(
            log,
            "remote worker connected",
            worker=worker.id,
            address=address,
            models=", ".join(f"{p} {m} x{w.capacity}" for (p, m), w in models.items()),
        )
        self._wake()
        try:
            await stream.start([(WORKER_ID_METADATA, worker.id)])
            while True:
                job = await worker.queue.get()
                if job is None:
                    assert worker.end is not None
                    raise worker.end
                await stream.send(job)
        finally:
            self._workers.pop(worker.id, None)
            self._connected.set(len(self._workers))
            worker.gone.set()
            reason = worker.end.message if worker.end else "the worker disconnected"
            log_event(log, "remote worker disconnected", worker=worker.id, address=address, reason=reason)

    async def close_when(self, stop: asyncio.Event) -> None:
        """End every worker's stream once ``stop`` is set, so the server's shutdown does not wait on them."""
        await stop.wait()
        await self.close()

    def fix_hardware(self, info: OrchestratorInfo) -> None:
        """``info.hardware`` for models workers serve: the workers' own report, not this node's GPUs."""
        remote = {(h.pipeline, h.model_id): h for h in self.hardware()}
        entries = [h for h in info.hardware if (h.pipeline, h.model_id) not in remote]
        del info.hardware[:]
        info.hardware.extend([*entries, *remote.values()])

    async def close(self) -> None:
        """End every worker's stream (the orchestrator is stopping); bounded."""
        self._closing = True
        workers = list(self._workers.values())
        for worker in workers:
            worker.drop(StatusCode.UNAVAILABLE, "the orchestrator is shutting down")
        if workers:
            await asyncio.wait([asyncio.ensure_future(w.gone.wait()) for w in workers], timeout=5)

    # --- capacity --------------------------------------------------------------------------------------

    def snapshot(self) -> dict[ModelKey, ModelStatus]:
        """Per model, the connected workers' capacity summed, as the pool reports its own."""
        merged: dict[ModelKey, ModelStatus] = {}
        for worker in self._workers.values():
            for key, m in worker.models.items():
                status = ModelStatus(
                    m.pipeline, m.model_id, m.warm, m.capacity, m.in_use, max(0, m.capacity - m.in_use),
                    m.runner_version, (),
                )  # fmt: skip
                merged[key] = merge_status(merged[key], status) if key in merged else status
        return merged

    def hardware(self) -> list[HardwareInformation]:
        return [h for w in self._workers.values() for h in w.hardware]

    def status(self) -> list[dict[str, Any]]:
        """``/status``'s ``workers``."""
        return [w.status() for w in self._workers.values()]

    def reserve(self, pipeline: str, model_id: str) -> WorkerLease | None:
        """A unit of capacity on the least busy worker with some free for the model. ``None`` when no worker
        has ever offered the model (the caller's local answer stands, e.g. 400 for an unknown model);
        ``InsufficientCapacity`` (503, go-livepeer's answer) when none can take it now. No await: atomic."""
        if (pipeline, model_id) not in self._offered:
            return None
        lease = self._take(pipeline, model_id, set())
        if lease is None:
            if any((pipeline, model_id) in w.models for w in self._workers.values()):
                raise InsufficientCapacity(f"every remote worker's {pipeline} {model_id!r} capacity is in use")
            raise InsufficientCapacity(f"no connected worker serves {pipeline} {model_id!r} now")
        return lease

    def _take(self, pipeline: str, model_id: str, exclude: set[str]) -> WorkerLease | None:
        """The least busy worker with free capacity for the model (then the one given fewest jobs)."""
        free = [
            (worker, model)
            for worker in self._workers.values()
            if worker.id not in exclude and worker.end is None
            and (model := worker.models.get((pipeline, model_id))) is not None and model.in_use < model.capacity
        ]  # fmt: skip
        if not free:
            return None
        worker, model = min(free, key=lambda pair: (pair[1].in_use / pair[1].capacity, pair[0].jobs_sent))
        model.in_use += 1
        worker.jobs_sent += 1
        return WorkerLease(worker, model)

    def _release(self, lease: WorkerLease) -> None:
        if not lease.released:
            lease.released = True
            lease.model.in_use = max(0, lease.model.in_use - 1)
            self._wake()

    async def _take_waiting(self, pipeline: str, model_id: str, exclude: set[str]) -> WorkerLease | None:
        deadline = time.monotonic() + RETRY_WAIT
        while (lease := self._take(pipeline, model_id, exclude)) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not any((pipeline, model_id) in w.models for w in self._workers.values()):
                return None
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.add(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                return None
            finally:
                self._waiters.discard(waiter)
        return lease

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    # --- jobs ------------------------------------------------------------------------------------------

    async def serve(
        self,
        lease: WorkerLease,
        request: Request,
        pipeline: str,
        model_id: str,
        body: JobBody,
        stack: AsyncExitStack,
    ) -> Response:
        """Run the job on ``lease``'s worker (another one if it is lost) and answer as the local path does.
        Capacity is released through ``stack`` (when the answer has been sent)."""
        stack.callback(self._release, lease)
        content_type = request.headers.get("content-type", "")
        seconds: float | None = None
        if pipeline == AUDIO_PIPELINE and body.json_body is None:
            body, seconds = await _measured_audio(content_type, body)
        job = await job_data(content_type, pipeline, model_id, body, self.store, self.service_url)
        tried: set[str] = set()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            worker = lease.worker
            outcome = await self._run(lease, request, pipeline, model_id, job)
            if outcome is not None:
                answer = await self._answer(request, pipeline, outcome, stack)
                if seconds is not None and answer.status_code == 200:
                    answer.headers[DURATION_HEADER] = f"{seconds:.3f}"
                return answer
            self._release(lease)
            tried.add(worker.id)
            if attempt == MAX_ATTEMPTS:
                break
            retry = await self._take_waiting(pipeline, model_id, tried)
            if retry is None:
                break
            log_event(log, "retrying the job on another worker", pipeline=pipeline, worker=retry.worker.id)
            lease = retry
            stack.callback(self._release, lease)
        raise PipelineFailedError(
            f"the remote worker serving this {pipeline} job was lost and no other could take it; retry"
        )

    async def _run(
        self, lease: WorkerLease, request: Request, pipeline: str, model_id: str, job: JobData
    ) -> Outcome | None:
        """The worker's outcome; ``None`` if the worker was lost or timed out (the job may be retried)."""
        worker = lease.worker
        task = self.tasks.add(worker.id, pipeline)
        try:
            notify = NotifyAIJob(taskId=task.task_id, AIJobData=AIJobData(pipeline=pipeline, requestData=job.encode()))
            worker.queue.put_nowait(notify)
            return await self._wait(task, worker, request, pipeline, model_id)
        finally:
            self.tasks.remove(task)

    async def _wait(
        self, task: PendingTask, worker: RemoteWorker, request: Request, pipeline: str, model_id: str
    ) -> Outcome | None:
        body_read = asyncio.Event()
        body_read.set()
        gone = asyncio.ensure_future(worker.gone.wait())
        left = asyncio.ensure_future(disconnected(request, body_read))
        waiting: set[asyncio.Future[Any]] = {task.outcome, gone, left}
        try:
            done, _ = await asyncio.wait(waiting, timeout=JOB_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            left.cancel()
        if task.outcome in done:
            outcome = task.outcome.result()
            if isinstance(outcome, ErrorOutcome):
                worker.last_error = outcome.message
                self._jobs.labels(pipeline, model_id, "error").inc()
            else:
                worker.jobs_done += 1
                self._jobs.labels(pipeline, model_id, "ok").inc()
            return outcome
        task.outcome.cancel()
        if left in done:
            raise JobCancelledError("the client went away")
        if gone in done:
            worker.last_error = f"left during task {task.task_id}"
            self._jobs.labels(pipeline, model_id, "lost").inc()
            log_event(log, "remote worker lost mid-job", logging.WARNING, worker=worker.id, task=task.task_id)
        else:
            worker.last_error = f"task {task.task_id} timed out after {JOB_TIMEOUT:g}s"
            self._jobs.labels(pipeline, model_id, "timeout").inc()
            worker.drop(StatusCode.DEADLINE_EXCEEDED, f"a job took longer than {JOB_TIMEOUT:g}s; reconnect")
        return None

    async def _answer(self, request: Request, pipeline: str, outcome: Outcome, stack: AsyncExitStack) -> Response:
        if isinstance(outcome, ErrorOutcome):
            raise error_for_status(outcome.status, outcome.message)
        if isinstance(outcome, StreamOutcome):
            stack.callback(outcome.finished.set)
            headers = {"Cache-Control": "no-cache", "Connection": "keep-alive"}
            return RelayedStream(outcome.chunks, media_type="text/event-stream", headers=headers)
        if not outcome.result.files:
            return Response(outcome.result.answer, media_type="application/json")
        rehosted = pipeline in VIDEO_PIPELINES or request.headers.get("authorization", "") == WORKER_AUTHORIZATION
        store, url = self.store, self.service_url
        body = await asyncio.to_thread(answer_with_files, pipeline, outcome.result, rehosted, store, url)
        return Response(body, media_type="application/json")


async def _measured_audio(content_type: str, body: JobBody) -> tuple[JobBody, float]:
    """The audio upload's length in seconds (what a local runner reports), and the body to send on (now held
    whole). 400 go-livepeer's ``Unable to calculate duration of file`` when the upload has no readable audio."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in body.chunks():
        size += len(chunk)
        if size > MAX_UPLOAD_BYTES:
            raise PayloadTooLargeError(f"the upload is over {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB")
        chunks.append(chunk)
    try:
        parts = parse_multipart(content_type, b"".join(chunks))
    except ValueError as exc:
        raise BadRequestError(str(exc)) from None
    field = FILE_FIELDS.get(AUDIO_PIPELINE, "audio")
    upload = next((part.data for part in parts if part.name == field), b"")
    seconds = await asyncio.to_thread(audio_seconds, upload) if upload else 0.0
    if not seconds > 0:
        raise BadRequestError(f"{DURATION_ERROR}: the {field} upload has no readable audio")
    return JobBody(body.model_id, chunks), seconds


def merge_status(a: ModelStatus, b: ModelStatus) -> ModelStatus:
    """One model served in two places (local runners and workers, or two workers), as one."""
    return ModelStatus(
        a.pipeline,
        a.model_id,
        a.warm or b.warm,
        a.capacity + b.capacity,
        a.in_use + b.in_use,
        a.idle + b.idle,
        a.version or b.version,
        a.runners + b.runners,
        a.cold_starts + b.cold_starts,
        failures=a.failures + b.failures,
        restarts=a.restarts + b.restarts,
        last_error=a.last_error or b.last_error,
        last_error_at=a.last_error_at or b.last_error_at,
        error=a.error or b.error,
    )


def merge_snapshots(*snapshots: Mapping[ModelKey, ModelStatus]) -> dict[ModelKey, ModelStatus]:
    merged: dict[ModelKey, ModelStatus] = {}
    for snapshot in snapshots:
        for key, status in snapshot.items():
            merged[key] = merge_status(merged[key], status) if key in merged else status
    return merged


def _offered_models(request: RegisterAIWorkerRequest) -> Iterator[tuple[ModelKey, WorkerModel]]:
    for cap, constraints in request.capabilities.constraints.PerCapability.items():
        try:
            pipeline = pipeline_for_capability(cap)
        except ValueError:
            continue  # BYOC or a transcoding capability: not served through workers here
        if pipeline == "live-video-to-video":
            continue  # remote workers serve batch jobs only, as in go-livepeer
        for model_id, model in constraints.models.items():
            yield (pipeline, model_id), WorkerModel(pipeline, model_id, model.capacity, model.warm, model.runnerVersion)


def _semver(version: str) -> tuple[int, ...]:
    """(major, minor, patch) of a version, ``v`` prefix and suffixes ignored; ``()`` when it does not parse."""
    core = version.strip().lstrip("v").split("-", 1)[0].split("+", 1)[0]
    parts = core.split(".")
    if not core or not all(p.isdigit() for p in parts):
        return ()
    return tuple(int(p) for p in parts) + (0,) * (3 - len(parts))
