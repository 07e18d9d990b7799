"""Starting a live stream on an orchestrator: ``POST {orchestrator}/live-video-to-video``, as go-livepeer's
gateway does, trying the next orchestrator when one refuses or fails.

Offers come from the gateway's directory (capability 35, ``live-video-to-video``, constraint = the live
pipeline name) after price caps, ordered by the gateway's selector with orchestrators at their advertised
capacity last. Each start carries ``Livepeer-Segment`` (the session's auth token), an empty
``Livepeer-Payment`` off-chain (on chain: tickets for the first 60 seconds at the live model's price, from the
orchestrator's session for that model, from no credit; once started, that credit is the stream's, kept under its
``manifest_id`` as the orchestrator keeps it) and the body ``{"model_id", "params", "gateway_request_id",
"stream_id"}``.
The answer's trickle URLs may be relative; they are made absolute on the orchestrator's address.

Tries follow the batch forwarder's (:mod:`lpnode.gateway.tries`): 402/403 fetch the orchestrator's info again
and try it once more, 503 moves on without suspending, a 400 is the caller's mistake and ends the start,
anything else, or no answer within ``timeout``, suspends the orchestrator and moves on.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Collection
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import aiohttp

from lpnode.errors import UnavailableError
from lpnode.gateway.directory import Directory, Offer
from lpnode.gateway.orch_client import OrchestratorUnreachable
from lpnode.gateway.selection import Selector, Stats
from lpnode.gateway.settings import PriceCaps
from lpnode.gateway.transport import AiohttpTransport, HopError, HopRequest, OrchestratorTransport
from lpnode.gateway.tries import Retry, Tries, refusal, unreachable
from lpnode.protocol.job_hop import (
    ERROR_BODY_LIMIT,
    PAYMENT_HEADER,
    SEGMENT_HEADER,
    WORKER_AUTHORIZATION,
    encode_segment,
)
from lpnode.protocol.lp_rpc_pb2 import AuthToken, OrchestratorInfo

if TYPE_CHECKING:
    from lpnode.gateway.payments import GatewayPayments, Staged

PIPELINE = "live-video-to-video"
ANSWER_LIMIT = 1024 * 1024
BUSY_RETRY_SECONDS = 0.5


@dataclass(frozen=True)
class LiveUrls:
    """The orchestrator's answer, from the gateway's side: it publishes input to ``publish_url``, reads
    output from ``subscribe_url``, writes params to ``control_url`` and reads ``events_url``."""

    orchestrator: str
    publish_url: str
    subscribe_url: str
    control_url: str
    events_url: str
    manifest_id: str
    transcoder: str = ""
    """Where the orchestrator takes jobs and live payments (``POST {transcoder}/payment``)."""
    info: OrchestratorInfo | None = None
    """On chain: the session info the stream was started and is paid with."""


@dataclass(frozen=True)
class StartRequest:
    model_id: str
    params: dict[str, Any]
    stream_id: str
    request_id: str


@dataclass
class OrchestratorStarter:
    """Starts streams on the directory's orchestrators."""

    directory: Directory
    selector: Selector
    stats: Stats
    caps: PriceCaps
    session: aiohttp.ClientSession
    timeout: float = 30.0
    attempts: int = 6
    busy_wait: float = 10.0
    """How long a start waits, trying again every :data:`BUSY_RETRY_SECONDS`, while every orchestrator offering
    the pipeline answers that it is at capacity (a stream that just ended frees its runner seconds later)."""

    transport: OrchestratorTransport | None = None  # default: over ``session``
    payments: GatewayPayments | None = None  # None: off-chain

    async def start(self, job: StartRequest, avoid: Collection[str] = ()) -> tuple[Offer, LiveUrls]:
        """The first orchestrator (not in ``avoid`` unless nothing else is left) that starts ``job``.
        Raises :class:`UnavailableError` (503) saying why none did, :class:`BadRequestError` for a 400. While every
        orchestrator is at capacity it tries again for up to :attr:`busy_wait` seconds."""
        deadline = time.monotonic() + self.busy_wait
        while True:
            tries = self._tries(job, avoid)
            try:
                return await tries.run(lambda offer: self._attempt(offer, job))
            except UnavailableError:
                if not tries.busy or time.monotonic() + BUSY_RETRY_SECONDS > deadline:
                    raise
            await asyncio.sleep(BUSY_RETRY_SECONDS)

    def _tries(self, job: StartRequest, avoid: Collection[str]) -> Tries[Offer]:
        refreshed = False

        async def pick(tried: Collection[str]) -> Offer | None:
            nonlocal refreshed
            offer = self._pick(job.model_id, tried, avoid)
            if offer is None and not refreshed:
                refreshed = True
                await asyncio.wait_for(self.directory.refresh(), self.timeout)
                offer = self._pick(job.model_id, tried, avoid)
            return offer

        what = f"start live pipeline {job.model_id!r}"
        return Tries(what, pick, lambda o: o.url, limit=self.attempts)

    def _pick(self, model_id: str, tried: Collection[str], avoid: Collection[str]) -> Offer | None:
        for suspended in (False, True):
            offers = [o for o in self.directory.offers(PIPELINE, model_id, suspended=suspended) if o.url not in tried]
            affordable = [o for o in offers if self.caps.allows(o)]
            preferred = [o for o in affordable if o.url not in avoid] or affordable
            if preferred:
                free = [o for o in preferred if o.capacity_in_use < o.capacity] or preferred
                return self.selector.order(free, self.stats)[0]
        return None

    async def _attempt(self, offer: Offer, job: StartRequest) -> tuple[Offer, LiveUrls]:
        info: OrchestratorInfo | None = None
        staged: Staged | None = None
        try:
            if self.payments is None:
                token = await self.directory.token(offer.url)
            else:
                if offer.price is None or offer.price > 0:
                    await self.payments.require_funds()  # no ticket params are made for an empty deposit
                info = await self.directory.session_info(offer.url, PIPELINE, job.model_id)
                token = info.auth_token
        except OrchestratorUnreachable as exc:
            self.directory.suspend(offer.url, str(exc))
            raise Retry(str(exc)) from None
        if info is not None:
            staged = await self._pay(offer, job, info)
        try:
            offer, urls = await self._send(offer, job, token, staged)
        except BaseException:
            if staged is not None and self.payments is not None:
                self.payments.restore(staged)
            raise
        if staged is not None and self.payments is not None:
            self.payments.settle(staged)
            _carry_credit(self.payments, staged, urls.manifest_id)
        return offer, replace(urls, info=info)

    async def _pay(self, offer: Offer, job: StartRequest, info: OrchestratorInfo) -> Staged:
        """The start's payment: :data:`LIVE_INITIAL_SECONDS` of live units at the session's price."""
        from lpnode.gateway.payments import LIVE_INITIAL_SECONDS, LIVE_UNITS_PER_SECOND, SessionRefused, manifest_for

        assert self.payments is not None
        session = self.payments.session(offer.url, manifest_for(PIPELINE, job.model_id), info)
        cap = self.caps.cap(PIPELINE, job.model_id)
        if cap is not None and session.price > cap:
            raise Retry(f"its price of {session.price} wei per unit is above the cap of {cap}")
        fee = Fraction(LIVE_INITIAL_SECONDS * LIVE_UNITS_PER_SECOND) * session.price
        # A stream starts with no credit (go-livepeer's clearSessionBalance): the orchestrator keeps a new
        # stream's balance under a new manifest id, so credit left by another start would not be there. The
        # clear and the staging in pay() happen in one step of the event loop.
        self.payments.balances.clear((session.recipient, session.manifest_id))
        try:
            return await self.payments.pay(session, fee)
        except SessionRefused as exc:
            if exc.refresh:
                self.directory.forget_session(offer.url)
                raise Retry(f"cannot pay it: {exc}", again=True) from None
            self.directory.suspend_offer(offer.url, PIPELINE, job.model_id, f"cannot pay it: {exc}")
            raise Retry(f"cannot pay it: {exc}") from None

    async def _send(
        self, offer: Offer, job: StartRequest, token: AuthToken, staged: Staged | None
    ) -> tuple[Offer, LiveUrls]:
        payments = self.payments
        headers = {
            "Content-Type": "application/json",
            SEGMENT_HEADER: payments.segment(token, PIPELINE, job.model_id)
            if payments is not None
            else encode_segment(token, PIPELINE, job.model_id),
            PAYMENT_HEADER: staged.header if staged is not None else "",
            "Authorization": WORKER_AUTHORIZATION,
        }
        body = {
            "publish_url": "",
            "subscribe_url": "",
            "model_id": job.model_id,
            "params": job.params,
            "gateway_request_id": job.request_id,
            "stream_id": job.stream_id,
        }
        started = time.monotonic()
        hop = HopRequest(f"{offer.transcoder}/{PIPELINE}", json.dumps(body).encode(), headers, started + self.timeout)
        transport = self.transport or AiohttpTransport(self.session)
        try:
            answer = await transport.send(hop)
            try:
                raw = await answer.read(ERROR_BODY_LIMIT if answer.status != 200 else ANSWER_LIMIT)
            finally:
                await answer.close()
        except HopError as exc:
            raise unreachable(self.directory, offer.url, str(exc)) from None
        if answer.status != 200:
            prefix = "the orchestrator refused the stream: "
            raise refusal(
                self.directory, offer.url, answer.status, raw, pipeline=PIPELINE, model_id=job.model_id,
                final_prefix=prefix,
            )  # fmt: skip
        urls = _parse_urls(offer, raw)
        if urls is None:
            self.directory.suspend(offer.url, "live start answer without trickle URLs")
            raise Retry("the answer lacks control_url or the other trickle URLs")
        self.directory.succeeded(offer.url, PIPELINE, job.model_id)
        measure = self.stats.of(offer)
        seconds = time.monotonic() - started
        measure.latency = seconds if measure.latency is None else 0.7 * measure.latency + 0.3 * seconds
        return offer, urls


def _carry_credit(payments: GatewayPayments, staged: Staged, manifest_id: str) -> None:
    """Move the start's credit to the stream's own balance, ``(orchestrator, manifest_id)``, where the
    orchestrator credited the start's tickets. The first minute paid up front is credit, not spent: it is spent
    second by second as the payment loop pays for the time that passed (the orchestrator debits it the same way),
    so the gateway's record and the orchestrator's balance stay within one payment interval of each other."""
    if staged.ev <= 0 or not manifest_id:
        return
    balances = payments.balances
    credit = balances.balance(staged.key)
    balances.clear(staged.key)
    balances.restore((staged.key[0], manifest_id), credit + staged.fee)


def _parse_urls(offer: Offer, raw: bytes) -> LiveUrls | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    base = offer.transcoder.rstrip("/") + "/"
    found: dict[str, str] = {}
    for key in ("publish_url", "subscribe_url", "control_url", "events_url"):
        value = data.get(key)
        if not isinstance(value, str) or not value:
            return None
        found[key] = urljoin(base, value)
    return LiveUrls(
        orchestrator=offer.url,
        manifest_id=str(data.get("manifest_id") or ""),
        transcoder=offer.transcoder,
        publish_url=found["publish_url"],
        subscribe_url=found["subscribe_url"],
        control_url=found["control_url"],
        events_url=found["events_url"],
    )
