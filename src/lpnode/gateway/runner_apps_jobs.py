"""Batch jobs served by single-shot runner apps: ``POST /text-to-image`` (etc.) when orchestrators host the
pipeline only as an app.

:meth:`AppJobs.takes` decides, per job: a job goes to an app only when no orchestrator offers its (pipeline,
model) the classic way (not even a suspended one) and a single-shot app of an lpnode pipeline with that
pipeline and model is listed (:mod:`lpnode.gateway.runner_apps`). The classic path is preferred because it
carries the job hop's deadline, payment and capability checks end to end.

Everything else is the classic path's: the request was validated, given its model and counted by
:mod:`lpnode.gateway.api`; the same selector, stats and capacity queue choose and wait; tries move on the same
way (:class:`lpnode.gateway.tries.Tries`); the caller's mistakes come back in the runner's words; results are
stored and served by the gateway. The body goes unchanged to ``<app URL><path>`` (the runner's own route under
the app, as the app's metadata names it) and the runner's answer comes back the same way, so only the gateway's
result handling differs: an image-to-video answer is encoded into MP4 here
(:mod:`lpnode.gateway.runner_apps_video`), as the orchestrator does on the classic path.

What an orchestrator's answer for an app means: 400/413/415/422 go back to the caller; 503 (``no capacity
available for runner``) tries the next app or waits for capacity; 404 ``runner not found`` (the app left) drops
it until the next refresh; anything else, or no answer, suspends that app. An app on an on-chain orchestrator
answers 402 with a payment challenge: a gateway paying through a remote signer (``-remoteSignerUrl``) pays it and
sends the job again; the usage row has no price.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Collection
from dataclasses import replace
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from lpnode.errors import JobError, UnavailableError
from lpnode.gateway.directory import Offer
from lpnode.gateway.forward import ANSWER_LIMIT, BLAME_SECONDS, Forwarder, Job, gone, relay_stream
from lpnode.gateway.job_wrapper import JobRecord
from lpnode.gateway.result_hosting import host_results
from lpnode.gateway.runner_apps import AppDirectory, AppOffer
from lpnode.gateway.runner_apps_video import store_videos
from lpnode.gateway.transport import HopAnswer, HopError, HopRequest, HopTimeout
from lpnode.gateway.tries import BUSY_RETRY, Retry, Tries
from lpnode.http_relay import first_of
from lpnode.pipelines import Results, spec
from lpnode.protocol import runner_apps as wire
from lpnode.protocol.job_hop import ERROR_BODY_LIMIT, FINAL_STATUSES, answer_error, error_message

if TYPE_CHECKING:
    from lpnode.gateway.remote_signer import SignerPayments

log = logging.getLogger("lpnode.gateway.runner_apps")
GONE_MESSAGES = frozenset({wire.RUNNER_NOT_FOUND, wire.SESSION_NOT_FOUND, wire.NOT_SUPPORTED})
"""An orchestrator's 404 texts that mean the app is no longer there (not the app's own 404)."""


class AppJobs:
    """Serves batch jobs through runner apps, with ``forwarder``'s selector, stats, transport, result store and
    capacity queue."""

    def __init__(self, apps: AppDirectory, forwarder: Forwarder) -> None:
        self.apps = apps
        self.forwarder = forwarder
        self.signer: SignerPayments | None = None
        """Set when the gateway pays through a remote signer: an app's 402 challenge is paid through it."""

    async def takes(self, job: Job, deadline: float) -> bool:
        """Whether ``job`` goes to a runner app. When neither path offers it, both are refreshed once first."""
        for refreshed in (False, True):
            if self._classic(job):
                return False
            if self.apps.for_pipeline(job.pipeline, job.model_id) or self.apps.for_pipeline(
                job.pipeline, job.model_id, suspended=True
            ):
                return True
            if refreshed:
                return False
            left = max(0.1, deadline - time.monotonic())
            try:
                await asyncio.wait_for(asyncio.gather(self.forwarder.directory.refresh(), self.apps.refresh()), left)
            except TimeoutError:
                return False
        return False

    def _classic(self, job: Job) -> bool:
        directory = self.forwarder.directory
        return bool(
            directory.offers(job.pipeline, job.model_id) or directory.offers(job.pipeline, job.model_id, suspended=True)
        )

    async def run(self, job: Job, request: Request | None, deadline: float, record: JobRecord) -> Response:
        """Serve ``job`` through an app; when every app is at capacity, wait in the capacity queue and try again."""
        queues = self.forwarder.queues
        waited = False
        while True:
            tries = self._tries(job, deadline)
            try:
                return await tries.run(lambda app: self._attempt(app, job, request, deadline, record))
            except UnavailableError:
                if not tries.busy:
                    raise
            wait = queues.wait(
                job.pipeline, job.model_id, record.key_id, deadline, retry_after=tries.retry_after, again=waited
            )
            await first_of(wait, asyncio.Event(), gone(request))
            waited = True

    def _tries(self, job: Job, deadline: float) -> Tries[AppOffer]:
        async def pick(tried: Collection[str]) -> AppOffer | None:
            offers = [o for o in self.apps.for_pipeline(job.pipeline, job.model_id) if o.url not in tried]
            if not offers:
                offers = self.apps.for_pipeline(job.pipeline, job.model_id, suspended=True)
                offers = [o for o in offers if o.url not in tried]
            if not offers:
                return None
            by_url = {o.url: o for o in offers}
            best = self.forwarder.selector.order([o.as_offer() for o in offers], self.forwarder.stats)[0]
            return by_url[best.url]

        what = f"serve {job.pipeline} model {job.model_id!r}"
        return Tries(what, pick, lambda app: app.url, deadline=deadline)

    def _ended(self, offer: Offer, seconds: float | None, *, freed: bool = True) -> None:
        self.forwarder.stats.finished(offer, seconds)
        if freed:
            self.forwarder.queues.freed(offer.pipeline, offer.model_id)

    async def _attempt(
        self, app: AppOffer, job: Job, request: Request | None, deadline: float, record: JobRecord
    ) -> Response:
        offer = app.as_offer()
        hop = HopRequest(app.url + app.path, job.body, {"Content-Type": job.content_type}, deadline)
        given = deadline - time.monotonic()
        self.forwarder.stats.started(offer)
        started = time.monotonic()
        settled = False
        answer: HopAnswer | None = None
        try:
            try:
                answer = await first_of(self._send(app, hop), asyncio.Event(), gone(request))
                if answer.status != 200:
                    error = await answer.read(ERROR_BODY_LIMIT)
                    await answer.close()
                    self._ended(offer, time.monotonic() - started, freed=answer.status != 503)
                    settled = True
                    raise self._refusal(app, answer.status, error, answer.headers.get("Retry-After"))
                record.orchestrator, record.price = app.orchestrator, None
                record.headers = {k: v for k, v in answer.headers.items() if k.lower() == "x-audio-duration"}
                if answer.content_type == "text/event-stream":
                    settled = True  # the stream's end settles it
                    return self._stream(app, answer, started)
                body = await first_of(answer.read(ANSWER_LIMIT), asyncio.Event(), gone(request))
            except HopError as exc:
                if isinstance(exc, HopTimeout) and given < BLAME_SECONDS:
                    raise Retry(f"{exc} (it had {given:.1f}s)") from None
                self.apps.suspend(app, str(exc))
                raise Retry(str(exc)) from None
            await answer.close()
            self._ended(offer, time.monotonic() - started)
            settled = True
            self.apps.succeeded(app)
            body = await self._results(job, body)
            return Response(body, media_type="application/json", headers=record.headers)
        finally:
            if not settled:
                self._ended(offer, None, freed=answer is None or answer.status != 503)
                if answer is not None:
                    await answer.close()

    async def _send(self, app: AppOffer, hop: HopRequest) -> HopAnswer:
        """Send ``hop``; through a remote signer an app's 402 challenge is paid and the job sent once more (the
        call's one payment: the signer bills a fixed price once, a metered one for its opening seconds)."""
        transport = self.forwarder.transport
        if self.signer is None:
            return await transport.send(hop)
        from lpnode.gateway.remote_signer import SignerRefusal

        payer = {wire.PAYER_HEADER: self.signer.checksum_address}
        answer = await transport.send(replace(hop, headers={**hop.headers, **payer}))
        if answer.status != 402:
            return answer
        try:
            challenge = json.loads(await answer.read(ERROR_BODY_LIMIT))
        except ValueError:
            challenge = None
        await answer.close()
        if not isinstance(challenge, dict) or not all(k in challenge for k in wire.CHALLENGE_FIELDS):
            self.apps.suspend(app, "answered 402 without a payment challenge")
            raise Retry("answered 402 without a payment challenge")
        try:
            paid, _ = await self.signer.pay_challenge(challenge, app.app, app.price_unit, app.price_wei or None)
        except SignerRefusal as exc:
            self.apps.suspend(app, f"cannot pay it: {exc}")
            raise Retry(f"cannot pay it: {exc}") from None
        return await transport.send(replace(hop, headers={**hop.headers, **paid}))

    def _refusal(self, app: AppOffer, status: int, body: bytes, retry_after: str | None) -> JobError:
        """The caller's error for an app's error answer (returned), or a :class:`Retry` (raised)."""
        if status in FINAL_STATUSES:
            return answer_error(status, body)
        message = error_message(body)
        if status == 503:
            hint = _seconds(retry_after)
            raise Retry(message or "insufficient capacity", busy=True, retry_after=BUSY_RETRY if hint is None else hint)
        if status == 404 and message in GONE_MESSAGES:
            self.apps.drop(app)
            raise Retry(f"its orchestrator no longer has it ({message})")
        self.apps.suspend(app, f"answered {status}: {message}")
        raise Retry(f"answered {status}: {message}")

    async def _results(self, job: Job, body: bytes) -> bytes:
        forwarder = self.forwarder
        results = spec(job.pipeline).results
        if results is Results.VIDEO:
            return await asyncio.to_thread(store_videos, body, forwarder.store, job.request_id, forwarder.public_url)
        if results is Results.MEDIA:
            return await host_results(body, forwarder.session, forwarder.store, job.request_id, forwarder.public_url)
        return body

    def _stream(self, app: AppOffer, answer: HopAnswer, started: float) -> Response:
        offer = app.as_offer()

        def ended(seconds: float | None) -> None:
            self._ended(offer, seconds)
            if seconds is not None:
                self.apps.succeeded(app)

        return relay_stream(answer, started, ended, what="runner app stream broke", url=app.url)


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
