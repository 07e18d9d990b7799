"""Sending a batch job to an orchestrator, and to another one when the first fails, within one deadline.

For each try (:mod:`lpnode.gateway.tries`): pick the best eligible offer (price caps, then the selector), make
sure its auth token is fresh, and send the body with the job hop's headers (:mod:`lpnode.protocol.job_hop`:
``Livepeer-Segment``, an empty ``Livepeer-Payment`` off-chain, ``Authorization: Livepeer-AI-Worker-1.0`` except
where results are wanted inline, and ``Lpnode-Timeout`` with the time left) through the transport
(:mod:`lpnode.gateway.transport`), which abandons the exchange when the deadline passes.

- 200: done. Results are stored and served by the gateway (images and audio are asked for inline, as ``data:``
  URLs; videos are fetched from the orchestrator's URL); an SSE answer is relayed chunk by chunk. A whole answer
  over :data:`ANSWER_LIMIT` is refused.
- an error answer, or none: :func:`lpnode.gateway.tries.refusal` / :func:`~lpnode.gateway.tries.unreachable`
  decide between handing the error to the caller, trying this orchestrator again, or moving on.

On chain (``payments`` given), each try uses the orchestrator's session for this (pipeline, model)
(:meth:`lpnode.gateway.directory.Directory.session_info`: that model's price and ticket params) and carries
tickets worth the job's fee, units × price (:mod:`lpnode.gateway.payments`): the credit is settled when the
orchestrator serves and put back when it does not; refused ticket params are fetched again (go's rules, in
:func:`lpnode.gateway.tries.refusal`). An audio-to-text job's length is read before it is paid for.

When every orchestrator offering the model is at capacity, the job waits its turn in the capacity queue
(:mod:`lpnode.gateway.capacity_queue`) and tries again when a place frees. When no orchestrator is left the
caller gets a 503 saying why; past the deadline, a 504.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import aiohttp
from starlette.requests import Request
from starlette.responses import Response

from lpnode.errors import UnavailableError
from lpnode.gateway.capacity_queue import CapacityQueues
from lpnode.gateway.directory import Directory, KnownOrchestrator, Offer
from lpnode.gateway.job_wrapper import JobRecord
from lpnode.gateway.orch_client import OrchestratorUnreachable
from lpnode.gateway.result_hosting import host_results
from lpnode.gateway.selection import Selector, Stats
from lpnode.gateway.settings import PriceCaps
from lpnode.gateway.transport import HopAnswer, HopError, HopRequest, HopTimeout, OrchestratorTransport
from lpnode.gateway.tries import Retry, Tries, payment_refusal, refusal, unreachable
from lpnode.http_relay import RelayedStream, disconnected, first_of
from lpnode.logs import log_event
from lpnode.pipelines import audio_units, spec
from lpnode.protocol.capabilities import pipeline_for_capability
from lpnode.protocol.job_hop import (
    ERROR_BODY_LIMIT,
    PAYMENT_HEADER,
    SEGMENT_HEADER,
    TIMEOUT_HEADER,
    WORKER_AUTHORIZATION,
    encode_segment,
    timeout_value,
)
from lpnode.protocol.lp_rpc_pb2 import AuthToken
from lpnode.results import ResultStore

if TYPE_CHECKING:
    from lpnode.gateway.payments import GatewayPayments, Staged
    from lpnode.gateway.runner_apps_jobs import AppJobs

log = logging.getLogger("lpnode.gateway.forward")
MAX_ATTEMPTS = 6
BLAME_SECONDS = 2.0
"""An orchestrator that had less time than this before the deadline is not suspended for missing it."""
ANSWER_LIMIT = 512 * 1024 * 1024
"""The largest whole (not streamed) answer the gateway reads from an orchestrator."""


@dataclass
class Job:
    pipeline: str
    model_id: str
    body: bytes
    content_type: str
    request_id: str


class Forwarder:
    def __init__(
        self,
        directory: Directory,
        selector: Selector,
        stats: Stats,
        caps: PriceCaps,
        transport: OrchestratorTransport,
        session: aiohttp.ClientSession,
        store: ResultStore,
        public_url: str,
        queues: CapacityQueues | None = None,
        payments: GatewayPayments | None = None,
    ) -> None:
        self.directory = directory
        self.payments = payments  # None: off-chain, an empty Livepeer-Payment
        self.queues = queues or CapacityQueues()
        directory.listeners.append(self._capacity_seen)
        self.selector = selector
        self.stats = stats
        self.caps = caps
        self.transport = transport
        self.session = session  # fetches result files
        self.store = store
        self.public_url = public_url.rstrip("/")
        self.apps: AppJobs | None = None
        """Runner apps serving what no orchestrator offers the classic way (:mod:`lpnode.gateway.runner_apps_jobs`)."""

    async def run(self, job: Job, request: Request | None, deadline: float, record: JobRecord) -> Response:
        """Serve ``job``; ``request`` is the caller's, watched for a disconnect (``None``: nobody waits). When every
        orchestrator offering the model is at capacity, the job waits in the capacity queue and tries again."""
        if self.apps is not None and await self.apps.takes(job, deadline):
            return await self.apps.run(job, request, deadline, record)
        waited = False
        if self.payments is not None and job.pipeline == "audio-to-text" and not record.units:
            from lpnode.gateway.audio_duration import upload_seconds

            record.units = audio_units(str(await upload_seconds(job.body, job.content_type)))
        if self.queues.waiting(job.pipeline, job.model_id):  # others wait for this model: join the line
            await self._wait(self.queues.wait(job.pipeline, job.model_id, record.key_id, deadline), request)
            waited = True
        while True:
            tries = self._tries(job, deadline)
            try:
                return await tries.run(lambda offer: self._attempt(offer, job, request, deadline, record))
            except UnavailableError:
                if not tries.busy:
                    raise
            wait = self.queues.wait(
                job.pipeline, job.model_id, record.key_id, deadline, retry_after=tries.retry_after, again=waited
            )
            await self._wait(wait, request)
            waited = True

    def _tries(self, job: Job, deadline: float) -> Tries[Offer]:
        refreshed = False

        async def pick(tried: Collection[str]) -> Offer | None:
            nonlocal refreshed
            while True:
                offers = [o for o in self.directory.offers(job.pipeline, job.model_id) if o.url not in tried]
                if not offers:  # every unsuspended one failed or none is left: give a suspended one a chance
                    offers = self.directory.offers(job.pipeline, job.model_id, suspended=True)
                    offers = [o for o in offers if o.url not in tried]
                affordable = [o for o in offers if self.caps.allows(o)]
                if affordable:
                    return self.selector.order(affordable, self.stats)[0]
                if refreshed:
                    if offers:
                        cap = self.caps.cap(job.pipeline, job.model_id)
                        tries.reasons.append(f"every offer is priced above the cap of {cap} wei per unit")
                    return None
                refreshed = True
                try:
                    await asyncio.wait_for(self.directory.refresh(), max(0.1, deadline - time.monotonic()))
                except TimeoutError:
                    tries.reasons.append("no orchestrator answered discovery before the deadline")
                    return None

        what = f"serve {job.pipeline} model {job.model_id!r}"
        tries: Tries[Offer] = Tries(what, pick, lambda o: o.url, deadline=deadline, limit=MAX_ATTEMPTS)
        return tries

    async def _wait(self, wait: Awaitable[None], request: Request | None) -> None:
        """Wait in the capacity queue, unless the caller leaves first."""
        await first_of(wait, asyncio.Event(), gone(request))

    def _ended(self, offer: Offer, seconds: float | None, *, freed: bool = True) -> None:
        """A job this gateway sent to ``offer`` ended: its measure, and (unless the orchestrator turned it away for
        want of capacity, which frees nothing) a freed place for a waiting job."""
        self.stats.finished(offer, seconds)
        if freed:
            self.queues.freed(offer.pipeline, offer.model_id)

    def _capacity_seen(self, orch: KnownOrchestrator) -> None:
        """A refresh showed ``orch``'s capacity: wake as many waiters as it has free places per model."""
        info = orch.info
        if info is None or orch.suspended:
            return
        for cap, constraints in info.capabilities.constraints.PerCapability.items():
            try:
                pipeline = pipeline_for_capability(cap)
            except ValueError:
                continue
            for model_id, model in constraints.models.items():
                free = model.capacity - model.capacityInUse
                if free > 0 and self.queues.waiting(pipeline, model_id):
                    self.queues.freed(pipeline, model_id, free)

    async def _attempt(
        self, offer: Offer, job: Job, request: Request | None, deadline: float, record: JobRecord
    ) -> Response:
        staged: Staged | None = None
        price = offer.price
        if self.payments is None:
            token = await self._token(offer)
        else:
            token, staged, price = await self._pay(offer, job, record.units)
        try:
            return await self._send(offer, job, request, deadline, record, token, staged, price)
        finally:
            if staged is not None and not staged.done:
                assert self.payments is not None
                self.payments.restore(staged)

    async def _token(self, offer: Offer) -> AuthToken:
        try:
            return await self.directory.token(offer.url)
        except OrchestratorUnreachable as exc:
            self.directory.suspend(offer.url, str(exc))
            raise Retry(str(exc)) from None

    async def _pay(self, offer: Offer, job: Job, units: int) -> tuple[AuthToken, Staged, Fraction]:
        """On chain: the session's token, a staged payment of ``units`` × the session's price, and that price (the
        session's ``PriceInfo``, which may differ from the advertised one: it is what the job is paid and
        metered at)."""
        from lpnode.gateway.payments import SessionRefused, manifest_for

        payments = self.payments
        assert payments is not None
        if offer.price is None or offer.price > 0:
            await payments.require_funds()  # an orchestrator makes no ticket params for an empty deposit
        try:
            info = await self.directory.session_info(offer.url, job.pipeline, job.model_id)
        except OrchestratorUnreachable as exc:
            self.directory.suspend(offer.url, str(exc))
            raise Retry(str(exc)) from None
        session = payments.session(offer.url, manifest_for(job.pipeline, job.model_id), info)
        cap = self.caps.cap(job.pipeline, job.model_id)
        if cap is not None and session.price > cap:
            raise Retry(f"its price of {session.price} wei per unit is above the cap of {cap}")
        try:
            staged = await payments.pay(session, Fraction(units) * session.price)
        except SessionRefused as exc:
            if exc.refresh:
                self.directory.forget_session(offer.url)
                raise Retry(f"cannot pay it: {exc}", again=True) from None
            self.directory.suspend_offer(offer.url, job.pipeline, job.model_id, f"cannot pay it: {exc}")
            raise Retry(f"cannot pay it: {exc}") from None
        return info.auth_token, staged, session.price

    def _segment(self, token: AuthToken, job: Job) -> str:
        if self.payments is None:
            return encode_segment(token, job.pipeline, job.model_id)
        return self.payments.segment(token, job.pipeline, job.model_id)  # signed: checked on chain

    async def _send(
        self,
        offer: Offer,
        job: Job,
        request: Request | None,
        deadline: float,
        record: JobRecord,
        token: AuthToken,
        staged: Staged | None,
        price: Fraction | None,
    ) -> Response:
        headers = {
            "Content-Type": job.content_type,
            SEGMENT_HEADER: self._segment(token, job),
            PAYMENT_HEADER: staged.header if staged is not None else "",
            **({} if spec(job.pipeline).asks_inline else {"Authorization": WORKER_AUTHORIZATION}),
            TIMEOUT_HEADER: timeout_value(deadline - time.monotonic()),
        }
        hop = HopRequest(f"{offer.transcoder}/{job.pipeline}", job.body, headers, deadline)
        given = deadline - time.monotonic()
        self.stats.started(offer)
        started = time.monotonic()
        settled = False
        answer: HopAnswer | None = None
        try:
            try:
                answer = await first_of(self.transport.send(hop), asyncio.Event(), gone(request))
                if answer.status != 200:
                    error = await answer.read(ERROR_BODY_LIMIT)
                    await answer.close()
                    if staged is not None and payment_refusal(answer.status, error) == "balance":
                        assert self.payments is not None
                        self.payments.drop(staged)  # our credit there is short: pay the whole fee next time
                    failure = refusal(
                        self.directory, offer.url, answer.status, error, pipeline=job.pipeline,
                        model_id=job.model_id, retry_after=answer.headers.get("Retry-After"),
                    )  # fmt: skip
                    self._ended(offer, time.monotonic() - started)  # the caller's mistake: it answered
                    settled = True
                    raise failure
                if staged is not None:
                    assert self.payments is not None
                    self.payments.settle(staged)  # it accepted the payment and serves
                record.orchestrator, record.price = offer.url, price
                record.headers = {k: v for k, v in answer.headers.items() if k.lower() == "x-audio-duration"}
                if answer.content_type == "text/event-stream":
                    settled = True  # the stream's end settles it
                    return self._stream(offer, answer, started)
                body = await first_of(answer.read(ANSWER_LIMIT), asyncio.Event(), gone(request))
            except HopError as exc:
                if answer is not None:
                    await answer.close()
                if isinstance(exc, HopTimeout) and given < BLAME_SECONDS:
                    raise Retry(f"{exc} (it had {given:.1f}s)") from None  # too little time to blame it
                raise unreachable(self.directory, offer.url, str(exc)) from None
            await answer.close()
            self._ended(offer, time.monotonic() - started)
            settled = True
            self.directory.succeeded(offer.url, job.pipeline, job.model_id)
            if spec(job.pipeline).rehosted:
                body = await host_results(body, self.session, self.store, job.request_id, self.public_url)
            return Response(body, media_type="application/json", headers=record.headers)
        finally:
            if not settled:
                self._ended(offer, None, freed=answer is None or answer.status != 503)
                if answer is not None:
                    await answer.close()

    def _stream(self, offer: Offer, answer: HopAnswer, started: float) -> Response:
        def ended(seconds: float | None) -> None:
            self._ended(offer, seconds)
            if seconds is not None:
                self.directory.succeeded(offer.url, offer.pipeline, offer.model_id)

        return relay_stream(answer, started, ended, what="orchestrator stream broke", url=offer.url)


def relay_stream(
    answer: HopAnswer, started: float, ended: Callable[[float | None], None], *, what: str, url: str
) -> RelayedStream:
    """An SSE answer relayed as it arrives. A broken upstream cuts it off (metered as the failure it is, not a 200)
    and logs ``what``; when it closes, ``ended`` gets the seconds since ``started`` if the answer came whole, else
    None."""

    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for chunk in answer.chunks():
                yield chunk
        except HopError as exc:
            response.cut_off()
            log_event(log, what, logging.WARNING, url=url, problem=str(exc))

    response = RelayedStream(chunks(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    async def close(status: int) -> None:
        complete = answer.complete
        await answer.close()
        ended(time.monotonic() - started if complete else None)

    response.on_close = close
    return response


async def gone(request: Request | None) -> None:
    """Returns when the caller of ``request`` goes away (never without one)."""
    if request is None:
        await asyncio.Event().wait()  # nobody to lose: never
        return
    done = asyncio.Event()
    done.set()
    await disconnected(request, done)
