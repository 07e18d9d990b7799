"""Sending a job to an orchestrator, and to another one when the first fails, within one deadline.

For each attempt: pick the best eligible offer (price caps, then the selector), make sure its auth token
is fresh, send the body with the headers a go-livepeer gateway sends (``Livepeer-Segment`` with the
session token and the job's capabilities, ``Livepeer-Payment`` empty off-chain, and ``Authorization:
Livepeer-AI-Worker-1.0`` except where results are wanted inline) and the time left (``Lpnode-Timeout``).
The answer decides what happens next (go-livepeer's classification, §5.2):

- 200: done. Results are stored and served by the gateway (images and audio are asked for inline, as
  ``data:`` URLs, by leaving out the worker header; videos are fetched from the orchestrator's URL); an
  SSE answer is relayed chunk by chunk.
- 400/413/415/422 (the input is wrong): the caller gets it, with the runner's message; no retry.
- 402/403 (payment or credentials): the orchestrator's info and token are fetched again, then the next
  attempt may use it again once.
- 503 ``insufficient capacity``: try another orchestrator; this one is not suspended.
- anything else, or no answer: this orchestrator is suspended, try another.

When no orchestrator is left, or the deadline passes, the caller gets a 503 saying why.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from fractions import Fraction

import aiohttp
from starlette.requests import Request
from starlette.responses import Response

from lpnode.errors import BadRequestError, JobError, PayloadTooLargeError, UnavailableError, UnsupportedMediaError
from lpnode.gateway.directory import Directory, Offer
from lpnode.gateway.orch_client import OrchestratorUnreachable
from lpnode.gateway.rehost import rehost
from lpnode.gateway.selection import Selector, Stats
from lpnode.gateway.settings import PriceCaps
from lpnode.http_relay import RelayedStream, disconnected, first_of, release
from lpnode.logs import log_event
from lpnode.orchestrator.runner_errors import error_message
from lpnode.protocol.capabilities import capability_bitstring, capability_for_pipeline
from lpnode.protocol.lp_rpc_pb2 import AuthToken, Capabilities, SegData
from lpnode.results import ResultStore

log = logging.getLogger("lpnode.gateway.forward")
MAX_ATTEMPTS = 6
ANSWER_LIMIT = 512 * 1024 * 1024
_FINAL = {400: BadRequestError, 413: PayloadTooLargeError, 415: UnsupportedMediaError, 422: BadRequestError}


class GatewayTimeoutError(JobError):
    status_code = 504


@dataclass
class Job:
    pipeline: str
    model_id: str
    body: bytes
    content_type: str
    request_id: str


@dataclass
class Outcome:
    """What a finished job reports for metering."""

    orchestrator: str = ""
    price: Fraction | None = None
    headers: dict[str, str] = field(default_factory=dict)
    key_id: int | None = None
    key_name: str = ""


class Forwarder:
    def __init__(
        self,
        directory: Directory,
        selector: Selector,
        stats: Stats,
        caps: PriceCaps,
        session: aiohttp.ClientSession,
        store: ResultStore,
        public_url: str,
    ) -> None:
        self.directory = directory
        self.selector = selector
        self.stats = stats
        self.caps = caps
        self.session = session
        self.store = store
        self.public_url = public_url.rstrip("/")

    async def run(self, job: Job, request: Request | None, deadline: float, outcome: Outcome) -> Response:
        """Serve ``job``; ``request`` is the caller's, watched for a disconnect (``None``: nobody waits)."""
        tried: set[str] = set()
        second_chance: set[str] = set()
        refreshed = False
        reasons: list[str] = []
        for _ in range(MAX_ATTEMPTS):
            if time.monotonic() >= deadline:
                raise GatewayTimeoutError("no orchestrator answered before the deadline")
            offers = [o for o in self.directory.offers(job.pipeline, job.model_id) if o.url not in tried]
            if not offers:  # every unsuspended one failed or none is left: give a suspended one a chance
                offers = [
                    o for o in self.directory.offers(job.pipeline, job.model_id, suspended=True) if o.url not in tried
                ]
            affordable = [o for o in offers if self.caps.allows(o)]
            if not affordable:
                if not refreshed:
                    refreshed = True
                    await asyncio.wait_for(self.directory.refresh(), max(0.1, deadline - time.monotonic()))
                    continue
                if offers:
                    cap = self.caps.cap(job.pipeline, job.model_id)
                    reasons.append(f"every offer is priced above the cap of {cap} wei per unit")
                break
            offer = self.selector.order(affordable, self.stats)[0]
            try:
                return await self._attempt(offer, job, request, deadline, outcome)
            except _Retry as retry:
                reasons.append(f"{offer.url}: {retry.reason}")
                if retry.again and offer.url not in second_chance:
                    second_chance.add(offer.url)
                else:
                    tried.add(offer.url)
        served = "; ".join(reasons) if reasons else "no orchestrator offers it"
        raise UnavailableError(f"no orchestrator could serve {job.pipeline} model {job.model_id!r}: {served}", 1)

    async def _attempt(
        self, offer: Offer, job: Job, request: Request | None, deadline: float, outcome: Outcome
    ) -> Response:
        try:
            token = await self.directory.token(offer.url)
        except OrchestratorUnreachable as exc:
            self.directory.suspend(offer.url, str(exc))
            raise _Retry(str(exc)) from None
        headers = {
            "Content-Type": job.content_type,
            "Livepeer-Segment": segment_header(token, job.pipeline, job.model_id),
            "Livepeer-Payment": "",
            **({} if job.pipeline in INLINE_RESULTS else {"Authorization": "Livepeer-AI-Worker-1.0"}),
            "Lpnode-Timeout": f"{max(0.1, deadline - time.monotonic()):.3f}",
        }
        self.stats.started(offer)
        started = time.monotonic()
        done = asyncio.Event()
        done.set()
        settled = False
        try:
            call = self.session.post(f"{offer.transcoder}/{job.pipeline}", data=job.body, headers=headers, ssl=False)
            try:
                upstream = await first_of(call, asyncio.Event(), _gone(request, done))
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.directory.suspend(offer.url, f"no answer: {exc or type(exc).__name__}")
                raise _Retry(f"no answer ({exc or type(exc).__name__})") from None
            if upstream.status != 200:
                error = await upstream.content.read(1024 * 1024)
                await release(upstream)
                if upstream.status in _FINAL:  # the caller's mistake, not the orchestrator's
                    self.stats.finished(offer, time.monotonic() - started)
                    settled = True
                self._failed(offer, upstream.status, error)
            outcome.orchestrator = offer.url
            outcome.price = offer.price
            outcome.headers = {k: v for k, v in upstream.headers.items() if k.lower() == "x-audio-duration"}
            if upstream.content_type == "text/event-stream":
                settled = True  # the stream's end settles it
                return self._stream(offer, upstream, started)
            answer = await first_of(upstream.read(), asyncio.Event(), _gone(request, done))
            await release(upstream)
            self.stats.finished(offer, time.monotonic() - started)
            settled = True
            self.directory.succeeded(offer.url)
            if job.pipeline in REHOSTED:
                answer = await rehost(answer, self.session, self.store, job.request_id, self.public_url)
            return Response(answer, media_type="application/json", headers=outcome.headers)
        finally:
            if not settled:
                self.stats.finished(offer, None)

    def _failed(self, offer: Offer, status: int, body: bytes) -> None:
        message = error_message(body)
        final = _FINAL.get(status)
        if final is not None:
            raise final(_runner_message(message))
        if status in (402, 403):
            self.directory.orchestrators[offer.url].info = None  # fetch info and token again
            raise _Retry(f"refused our credentials ({status}: {message})", again=True)
        if status == 503:
            raise _Retry(message or "insufficient capacity")
        self.directory.suspend(offer.url, f"answered {status}: {message}")
        raise _Retry(f"answered {status}: {message}")

    def _stream(self, offer: Offer, upstream: aiohttp.ClientResponse, started: float) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.content.iter_any():
                    yield chunk
            except aiohttp.ClientError as exc:
                log_event(log, "orchestrator stream broke", logging.WARNING, url=offer.url, problem=str(exc))

        response = RelayedStream(chunks(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

        async def close(status: int) -> None:
            complete = upstream.content.at_eof()
            await release(upstream)
            self.stats.finished(offer, time.monotonic() - started if complete else None)
            if complete:
                self.directory.succeeded(offer.url)

        response.on_close = close
        return response


async def _gone(request: Request | None, done: asyncio.Event) -> None:
    if request is None:
        await asyncio.Event().wait()  # nobody to lose: never
    else:
        await disconnected(request, done)


INLINE_RESULTS = frozenset({"text-to-image", "image-to-image", "upscale", "text-to-speech"})
"""Pipelines whose results are asked for inline: without ``Authorization: Livepeer-AI-Worker-1.0`` an
orchestrator answers ``data:`` URLs for these (go-livepeer's rule for older gateways), which spares it
storing each file and the gateway a second request to fetch it. Videos still come as URLs."""

REHOSTED = frozenset({"text-to-image", "image-to-image", "image-to-video", "upscale", "text-to-speech"})


class _Retry(Exception):
    def __init__(self, reason: str, again: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.again = again


def _runner_message(message: str) -> str:
    """The runner's own words from ``<pipeline> container returned 400: <msg>`` (go-livepeer's rule)."""
    marker = " returned 400:"
    return message.split(marker, 1)[1].strip() if marker in message else message


def segment_header(token: AuthToken, pipeline: str, model_id: str) -> str:
    """``Livepeer-Segment``: base64 ``SegData`` with the session token and the job's capabilities."""
    cap = capability_for_pipeline(pipeline)
    caps = Capabilities(bitstring=capability_bitstring([cap]))
    caps.capacities[cap] = 1
    caps.constraints.PerCapability[cap].models[model_id].warm = False
    seg = SegData(manifestId=f"{int(cap)}_{model_id}".encode(), profiles=b"invalid", capabilities=caps)
    seg.auth_token.CopyFrom(token)
    return base64.b64encode(seg.SerializeToString()).decode()
