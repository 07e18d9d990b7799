"""The orchestrator's AI job routes: check the caller, lease a runner, relay the job, pass the answer on.

Checks run in go-livepeer's order and answer its status codes: a bad ``Livepeer-Payment`` is 402, bad
segment credentials (token, capabilities) 403, a body without a usable model 400/415, no capacity 503
``insufficient capacity``, a runner failure 500, a runner's refusal of the input 400. Error bodies are
plain text, as go-livepeer writes them.

The body streams to the runner (see :mod:`lpnode.orchestrator.job_body`); the runner's answer streams
back, server-sent events included, unless results must be re-hosted (:mod:`lpnode.orchestrator.result_files`).
The runner's capacity is held until the last byte of the answer is sent, and released however the
request ends. A client that goes away cancels the runner call, which stops the job on the runner. A
``Lpnode-Timeout: <seconds>`` header bounds the job until its answer starts (waiting for a cold runner
included): past it the job is cancelled and the caller gets 504. The headers and error texts are the job hop's
(:mod:`lpnode.protocol.job_hop`).

On chain (``payments`` set) the job is paid, in go-livepeer's order: the segment must be signed by the
payment's sender (403), the job's units are counted (400 when they cannot be), capacity is reserved (503),
the payment is processed for manifest ``<capability>_<model>`` (400 with go's message, capacity released),
a priced job needs a balance of at least one ticket's EV (400 ``Insufficient balance``), and once the
answer has been sent whole the balance is debited units × price. A refused payment is never credited;
a failed job is never debited. LLM streams and remote workers' jobs are paid the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, TypeVar

import aiohttp
from starlette.requests import Request
from starlette.responses import Response

from lpnode.errors import BadRequestError, GatewayTimeoutError, JobError, PipelineFailedError, go_text_response
from lpnode.http_relay import RelayedStream, disconnected, first_of, release
from lpnode.logs import log_event
from lpnode.orchestrator.credentials import check_credentials
from lpnode.orchestrator.info import PriceBook
from lpnode.orchestrator.job_body import JobBody, read_model_id
from lpnode.orchestrator.job_units import audio_units, job_units
from lpnode.orchestrator.metrics import OrchestratorMetrics
from lpnode.orchestrator.pool import InsufficientCapacity, LeasedRunner, RunnerPool, UnknownModelError
from lpnode.orchestrator.remote_workers import RemoteWorkers, WorkerLease
from lpnode.orchestrator.result_files import needs_rehosting, store_results
from lpnode.pipelines import model_field, spec
from lpnode.protocol.auth_token import AuthTokens
from lpnode.protocol.job_hop import ERROR_BODY_LIMIT, TIMEOUT_HEADER, WORKER_AUTHORIZATION, read_timeout, runner_error
from lpnode.protocol.lp_rpc_pb2 import Capabilities, Payment
from lpnode.results import ResultStore, new_request_id

if TYPE_CHECKING:
    from lpnode.orchestrator.payments import OrchestratorPayments, PaidJob

log = logging.getLogger("lpnode.orchestrator.jobs")
_PASSED_HEADERS = ("content-type", "content-length", "x-audio-duration", "cache-control")
AUDIO = "audio-to-text"
_T = TypeVar("_T")


class JobRelay:
    """Serves ``POST /<pipeline>`` for the batch pipelines by relaying to the pool's runners."""

    def __init__(
        self,
        pool: RunnerPool,
        store: ResultStore,
        tokens: AuthTokens,
        capabilities: Callable[[], Capabilities],
        metrics: OrchestratorMetrics,
        session: Callable[[], aiohttp.ClientSession],
        service_url: str,
        remote: RemoteWorkers | None = None,
        payments: OrchestratorPayments | None = None,
        prices: PriceBook | None = None,
    ) -> None:
        self.payments = payments
        """On chain only; ``None`` off-chain (nothing is charged)."""
        self.prices = prices
        self.pool = pool
        self.remote = remote
        self.store = store
        self.tokens = tokens
        self.capabilities = capabilities
        self.metrics = metrics
        self.session = session
        self.service_url = service_url.rstrip("/")

    async def handle(self, request: Request) -> Response:
        pipeline = request.url.path.strip("/")
        started = time.perf_counter()
        stack = AsyncExitStack()
        labels: dict[str, str] = {"pipeline": pipeline, "model_id": ""}
        paid: PaidJob | None = None
        units = 0
        response: Response | None = None

        async def finish(status: int) -> None:
            await stack.aclose()
            if paid is not None and status == 200 and self.payments is not None:
                seconds = response.headers.get("x-audio-duration") if response is not None else None
                served = audio_units(seconds) if pipeline == AUDIO else units
                self.payments.settle(paid, served)
            self.metrics.job_finished(
                labels["pipeline"], labels["model_id"], status, time.perf_counter() - started, units,
                paid.price if paid is not None else None,
            )  # fmt: skip

        try:
            timeout = read_timeout(request.headers.get(TIMEOUT_HEADER))
            async with asyncio.timeout(timeout):
                credentials = check_credentials(request.headers, self.tokens, self.capabilities, self.payments)
                content_type = request.headers.get("content-type", "")
                body = await read_model_id(content_type, request.stream(), json_field=model_field(pipeline))
                labels["model_id"] = body.model_id or self._only_model(pipeline)
                if self.payments is not None:
                    body, units = await job_units(pipeline, content_type, body)
                deadline = time.monotonic() + timeout if timeout is not None else None
                runner = await self._choose(stack, pipeline, labels["model_id"], deadline)
                if self.payments is not None:
                    paid = await self._take_payment(credentials.payment, pipeline, labels["model_id"])
                gauge = self.metrics.in_flight.labels(**labels)
                gauge.inc()
                stack.callback(gauge.dec)
                if isinstance(runner, LeasedRunner):
                    response = await self._relay(request, pipeline, runner, body, stack)
                else:
                    assert self.remote is not None
                    response = await self.remote.serve(runner, request, pipeline, labels["model_id"], body, stack)
        except TimeoutError:
            response = go_text_response(GatewayTimeoutError(f"the job did not finish within {timeout or 0:g}s"))
        except JobError as exc:
            response = go_text_response(exc)
        except Exception as exc:  # a bug: log it whole, answer a plain 500 without a traceback
            log.exception("job failed unexpectedly", extra={"fields": {"pipeline": pipeline}})
            response = go_text_response(PipelineFailedError(f"internal error: {type(exc).__name__}"))
        if isinstance(response, RelayedStream):
            response.on_close = finish
        else:
            await finish(response.status_code)
        return response

    async def _take_payment(self, payment: Payment, pipeline: str, model_id: str) -> PaidJob:
        assert self.payments is not None
        sender = "0x" + bytes(payment.sender).hex() if payment.sender else ""
        advertised = self.prices.price(pipeline, model_id, sender) if self.prices is not None else None
        return await self.payments.take(payment, f"{spec(pipeline).capability}_{model_id}", advertised)

    def _only_model(self, pipeline: str) -> str:
        """An omitted model_id means the pipeline's only model; with several, the caller must choose."""
        served = [*self.pool.snapshot(), *(self.remote.snapshot() if self.remote else {})]
        models = sorted({m for p, m in served if p == pipeline})
        if len(models) == 1:
            return models[0]
        if not models:
            raise BadRequestError(f"{pipeline} is not served here")
        raise BadRequestError(f"model_id is required; {pipeline} models served here: {', '.join(models)}")

    async def _choose(
        self, stack: AsyncExitStack, pipeline: str, model_id: str, deadline: float | None
    ) -> LeasedRunner | WorkerLease:
        """Local runners first; a remote worker (:mod:`lpnode.orchestrator.remote_workers`) when the local
        pool cannot take the job now."""
        try:
            return await stack.enter_async_context(self.pool.lease(pipeline, model_id, deadline))
        except (InsufficientCapacity, UnknownModelError):
            lease = self.remote.reserve(pipeline, model_id) if self.remote else None
            if lease is None:
                raise
            return lease

    async def _relay(
        self, request: Request, pipeline: str, runner: LeasedRunner, body: JobBody, stack: AsyncExitStack
    ) -> Response:
        headers = {"Content-Type": request.headers["content-type"], **runner.headers}
        done = asyncio.Event()
        data: bytes | AsyncIterator[bytes]
        if body.rest is None:
            data = b"".join(body.prefix)
            done.set()
        else:
            data = _until_done(body.chunks(), done)
            length = request.headers.get("content-length")
            if length and "transfer-encoding" not in request.headers:
                headers["Content-Length"] = length
        call = self.session().post(f"{runner.url}/{pipeline}", data=data, headers=headers)
        try:
            upstream = await first_of(call, runner.lost, disconnected(request, done))
        except aiohttp.ClientError as exc:
            raise PipelineFailedError(
                f"the {pipeline} runner {runner.name} failed: {exc or type(exc).__name__}"
            ) from None
        stack.push_async_callback(release, upstream)
        if upstream.status != 200:
            error = await upstream.content.read(ERROR_BODY_LIMIT)
            raise runner_error(pipeline, upstream.status, error, upstream.headers.get("Retry-After"))
        passed = {k: v for k, v in upstream.headers.items() if k.lower() in _PASSED_HEADERS}
        worker = request.headers.get("authorization", "") == WORKER_AUTHORIZATION
        if needs_rehosting(pipeline, worker):
            answer = await first_of(upstream.read(), runner.lost, disconnected(request, done))
            rewritten = await store_results(pipeline, answer, self.store, new_request_id(), self.service_url)
            return Response(rewritten, media_type="application/json", headers=_without_type(passed))
        return RelayedStream(_body_of(upstream, runner), headers=passed)


async def _body_of(upstream: aiohttp.ClientResponse, runner: LeasedRunner) -> AsyncIterator[bytes]:
    try:
        async for chunk in upstream.content.iter_any():
            yield chunk
    except aiohttp.ClientError as exc:  # the runner died mid-answer; the client sees a cut-off body
        log_event(log, "runner failed while answering", logging.WARNING, runner=runner.name, problem=str(exc))


async def _until_done(chunks: AsyncIterator[bytes], done: asyncio.Event) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield chunk
    done.set()


def _without_type(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in ("content-type", "content-length")}
