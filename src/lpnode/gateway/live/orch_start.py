"""Starting a live stream on an orchestrator: ``POST {orchestrator}/live-video-to-video``, as go-livepeer's
gateway does, trying the next orchestrator when one refuses or fails.

Offers come from the gateway's directory (capability 35, ``live-video-to-video``, constraint = the live
pipeline name) after price caps, ordered by the gateway's selector with orchestrators at their advertised
capacity last. Each start carries ``Livepeer-Segment`` (the session's auth token), an empty
``Livepeer-Payment`` (off-chain) and the body ``{"model_id", "params", "gateway_request_id", "stream_id"}``.
The answer's trickle URLs may be relative; they are made absolute on the orchestrator's address.

Retries follow the batch forwarder: 402/403 fetch the orchestrator's info again and try it once more, 503
moves on without suspending, a 400 is the caller's mistake and ends the start, anything else suspends the
orchestrator and moves on.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import aiohttp

from lpnode.errors import BadRequestError, UnavailableError
from lpnode.gateway.directory import Directory, Offer
from lpnode.gateway.forward import segment_header
from lpnode.gateway.orch_client import OrchestratorUnreachable
from lpnode.gateway.selection import Selector, Stats
from lpnode.gateway.settings import PriceCaps
from lpnode.orchestrator.runner_errors import error_message

PIPELINE = "live-video-to-video"
WORKER_AUTHORIZATION = "Livepeer-AI-Worker-1.0"


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


@dataclass(frozen=True)
class StartRequest:
    model_id: str
    params: dict[str, Any]
    stream_id: str
    request_id: str


class _Retry(Exception):
    def __init__(self, reason: str, again: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.again = again


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

    async def start(self, job: StartRequest, avoid: Collection[str] = ()) -> tuple[Offer, LiveUrls]:
        """The first orchestrator (not in ``avoid`` unless nothing else is left) that starts ``job``.
        Raises :class:`UnavailableError` (503) saying why none did, :class:`BadRequestError` for a 400."""
        tried: set[str] = set()
        second_chance: set[str] = set()
        refreshed = False
        reasons: list[str] = []
        for _ in range(self.attempts):
            offer = self._pick(job.model_id, tried, avoid)
            if offer is None:
                if not refreshed:
                    refreshed = True
                    await asyncio.wait_for(self.directory.refresh(), self.timeout)
                    continue
                break
            try:
                return offer, await self._attempt(offer, job)
            except _Retry as retry:
                reasons.append(f"{offer.url}: {retry.reason}")
                if retry.again and offer.url not in second_chance:
                    second_chance.add(offer.url)
                else:
                    tried.add(offer.url)
        why = "; ".join(reasons) if reasons else "no orchestrator offers it"
        raise UnavailableError(f"no orchestrator could start live pipeline {job.model_id!r}: {why}", 1)

    def _pick(self, model_id: str, tried: set[str], avoid: Collection[str]) -> Offer | None:
        for suspended in (False, True):
            offers = [o for o in self.directory.offers(PIPELINE, model_id, suspended=suspended) if o.url not in tried]
            affordable = [o for o in offers if self.caps.allows(o)]
            preferred = [o for o in affordable if o.url not in avoid] or affordable
            if preferred:
                free = [o for o in preferred if o.capacity_in_use < o.capacity] or preferred
                return self.selector.order(free, self.stats)[0]
        return None

    async def _attempt(self, offer: Offer, job: StartRequest) -> LiveUrls:
        try:
            token = await self.directory.token(offer.url)
        except OrchestratorUnreachable as exc:
            self.directory.suspend(offer.url, str(exc))
            raise _Retry(str(exc)) from None
        headers = {
            "Content-Type": "application/json",
            "Livepeer-Segment": segment_header(token, PIPELINE, job.model_id),
            "Livepeer-Payment": "",
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
        try:
            async with self.session.post(
                f"{offer.transcoder}/{PIPELINE}",
                data=json.dumps(body),
                headers=headers,
                ssl=False,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as answer:
                raw = await answer.read()
                status = answer.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.directory.suspend(offer.url, f"no answer: {exc or type(exc).__name__}")
            raise _Retry(f"no answer ({exc or type(exc).__name__})") from None
        if status != 200:
            message = error_message(raw)
            if status == 400:
                raise BadRequestError(f"the orchestrator refused the stream: {message}")
            if status in (402, 403):
                self.directory.orchestrators[offer.url].info = None  # fetch info and token again
                raise _Retry(f"refused our credentials ({status}: {message})", again=True)
            if status == 503:
                raise _Retry(message or "insufficient capacity")
            self.directory.suspend(offer.url, f"live start answered {status}: {message}")
            raise _Retry(f"answered {status}: {message}")
        urls = _parse_urls(offer, raw)
        if urls is None:
            self.directory.suspend(offer.url, "live start answer without trickle URLs")
            raise _Retry("the answer lacks control_url or the other trickle URLs")
        self.directory.succeeded(offer.url)
        measure = self.stats.of(offer)
        seconds = time.monotonic() - started
        measure.latency = seconds if measure.latency is None else 0.7 * measure.latency + 0.3 * seconds
        return urls


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
    return LiveUrls(orchestrator=offer.url, manifest_id=str(data.get("manifest_id") or ""), **found)
