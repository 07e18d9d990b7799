"""Runner apps (go-livepeer's Live Runner) as the gateway sees them: what every orchestrator lists in its
``GET /discovery``.

:class:`AppDirectory` asks each orchestrator the :class:`~lpnode.gateway.directory.Directory` knows (``--orch-addr``
and the webhook's) for its ``/discovery`` in parallel, on a period of its own (apps come and go faster than
orchestrators: at most :data:`APP_REFRESH_SECONDS`) and on demand. An orchestrator without runner apps (404) or
that does not answer lists none until its next good answer. An app that fails a call is suspended the way the
directory suspends an offer (10 s doubling up to 5 min, cleared by its next success); an app its orchestrator no
longer knows (``404 runner not found``) is dropped until the next refresh lists it again.

Each listed runner is an :class:`AppOffer`. An lpnode pipeline's app names its pipeline and model in its
``metadata`` (:func:`lpnode.protocol.runner_apps.read_pipeline_app_metadata`), so a single-shot one can serve
that pipeline's batch jobs (:mod:`lpnode.gateway.runner_apps_jobs`); any app can be called by name
(:mod:`lpnode.gateway.runner_apps_routes`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from lpnode.gateway.directory import DISCOVERY_TIMEOUT, MAX_SUSPEND_SECONDS, SUSPEND_SECONDS, Directory, Offer
from lpnode.logs import log_event
from lpnode.protocol import runner_apps as wire

log = logging.getLogger("lpnode.gateway.runner_apps")
APP_REFRESH_SECONDS = 10.0
"""The longest the gateway goes without asking every orchestrator for its runner apps."""
APP_PIPELINE_PREFIX = "app:"
"""The usage ``pipeline`` of a call through ``/apps/<name>/...``: ``app:<name>``."""


@dataclass(frozen=True)
class AppOffer:
    """One runner app as one orchestrator lists it. ``url`` is its discovery URL (``.../apps/<id>/app`` for a
    single-shot app, ``.../apps/<id>/session`` for a persistent one); ``pipeline``, ``model_id`` and ``path`` are
    set for an lpnode pipeline's app."""

    orchestrator: str
    app: str
    url: str
    mode: str
    capacity: int
    capacity_used: int
    version: str = ""
    metadata: str = ""
    pipeline: str = ""
    model_id: str = ""
    path: str = ""
    price_wei: int = 0
    """On chain: the app's price in wei per :attr:`price_unit` (0: not priced)."""
    price_unit: str = ""
    """``seconds``, ``720p-pixel-seconds`` or ``fixed`` (what a remote signer is asked to pay by)."""

    @property
    def single_shot(self) -> bool:
        return self.mode == wire.MODE_SINGLE_SHOT

    def as_offer(self) -> Offer:
        """This app as an :class:`~lpnode.gateway.directory.Offer`, so the gateway's selectors, price caps and
        stats apply to it unchanged (keyed by the app's URL; off-chain, so no price)."""
        pipeline = self.pipeline or APP_PIPELINE_PREFIX + self.app
        return Offer(
            url=self.url, pipeline=pipeline, model_id=self.model_id, warm=True, capacity=self.capacity,
            capacity_in_use=self.capacity_used, price=None, transcoder=self.url,
        )  # fmt: skip


@dataclass
class _Listing:
    offers: list[AppOffer] = field(default_factory=list)
    problem: str = ""
    fetched_at: float = 0.0


@dataclass
class _Suspension:
    failures: int
    until: float
    problem: str


class AppDirectory:
    """The runner apps of the orchestrators in ``directory``; :meth:`run` keeps them fresh."""

    def __init__(
        self,
        directory: Directory,
        session: aiohttp.ClientSession,
        *,
        refresh_seconds: float = APP_REFRESH_SECONDS,
        timeout: float = DISCOVERY_TIMEOUT,
    ) -> None:
        self.directory = directory
        self.session = session
        self.refresh_seconds = min(refresh_seconds, APP_REFRESH_SECONDS)
        self.timeout = timeout
        self.listings: dict[str, _Listing] = {}
        self._suspended: dict[str, _Suspension] = {}
        self._dropped: set[str] = set()
        self._refreshing: asyncio.Task[None] | None = None

    # --- refreshing ----------------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Ask every known orchestrator for its runner apps now (joins a refresh already running)."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._refresh())
        await asyncio.shield(self._refreshing)

    async def run(self) -> None:
        """Refresh on the period, forever (cancel to stop)."""
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # a refresh must never end the loop
                log_event(log, "runner app refresh failed", logging.ERROR, problem=str(exc))
            await asyncio.sleep(self.refresh_seconds)

    async def _refresh(self) -> None:
        urls = [o.url for o in self.directory.known()]
        answers = await asyncio.gather(*(self._fetch(url) for url in urls))
        self.listings = dict(zip(urls, answers, strict=True))
        self._dropped.clear()  # what an orchestrator lists now is on offer again

    async def _fetch(self, url: str) -> _Listing:
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            async with self.session.get(url + wire.DISCOVERY_PATH, timeout=timeout, ssl=False) as answer:
                if answer.status == 404:  # no runner apps on this node
                    return _Listing(fetched_at=time.time())
                if answer.status != 200:
                    text = (await answer.content.read(300)).decode(errors="replace").strip()
                    return self._failed(url, f"/discovery answered {answer.status}: {text}")
                document = await answer.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return self._failed(url, f"/discovery: {exc or type(exc).__name__}")
        if not isinstance(document, list):
            return self._failed(url, "/discovery is not a JSON array")
        offers = [offer for entry in document for offer in _offers(url, entry)]
        return _Listing(offers, fetched_at=time.time())

    def _failed(self, url: str, problem: str) -> _Listing:
        log_event(log, "runner apps unavailable", logging.WARNING, url=url, problem=problem)
        return _Listing(problem=problem, fetched_at=time.time())

    # --- what is offered -----------------------------------------------------------------------------------

    def all(self) -> list[AppOffer]:
        """Every app listed (suspended and dropped ones included)."""
        return [offer for listing in self.listings.values() for offer in listing.offers]

    def _usable(self, offers: Iterable[AppOffer], suspended: bool) -> list[AppOffer]:
        found = []
        for offer in offers:
            if offer.url in self._dropped:
                continue
            if self.suspended(offer) == suspended:
                found.append(offer)
        return found

    def for_pipeline(self, pipeline: str, model_id: str, *, suspended: bool = False) -> list[AppOffer]:
        """The single-shot apps of lpnode pipeline ``pipeline`` with ``model_id``: the unsuspended ones, or with
        ``suspended`` the suspended ones (a last resort)."""
        matching = (
            o for o in self.all() if o.single_shot and o.pipeline == pipeline and o.model_id == model_id and o.path
        )
        return self._usable(matching, suspended)

    def named(self, app: str, *, suspended: bool = False) -> list[AppOffer]:
        """The apps called ``app`` (any mode), unsuspended or, with ``suspended``, suspended."""
        return self._usable((o for o in self.all() if o.app == app), suspended)

    def listed(self) -> list[AppOffer]:
        """Every app on offer: listed by its orchestrator and not dropped since (suspended ones included)."""
        return [o for o in self.all() if o.url not in self._dropped]

    def names(self) -> set[str]:
        return {o.app for o in self.all()}

    def models(self, pipeline: str) -> set[str]:
        """The models of ``pipeline`` single-shot apps serve (suspended ones included)."""
        return {o.model_id for o in self.all() if o.single_shot and o.pipeline == pipeline and o.path}

    def suspended(self, offer: AppOffer) -> bool:
        held = self._suspended.get(offer.url)
        orch = self.directory.orchestrators.get(offer.orchestrator)
        return (held is not None and time.monotonic() < held.until) or (orch is not None and orch.suspended)

    # --- outcomes ------------------------------------------------------------------------------------------

    def suspend(self, offer: AppOffer, problem: str) -> None:
        """A call to ``offer`` failed although its orchestrator answered, or it did not answer at all."""
        held = self._suspended.get(offer.url)
        failures = 1 + (held.failures if held is not None else 0)
        seconds = min(MAX_SUSPEND_SECONDS, SUSPEND_SECONDS * 2 ** (failures - 1))
        self._suspended[offer.url] = _Suspension(failures, time.monotonic() + seconds, problem)
        log_event(
            log, "runner app suspended", logging.WARNING, app=offer.app, url=offer.url, seconds=seconds,
            problem=problem,
        )  # fmt: skip

    def drop(self, offer: AppOffer) -> None:
        """Its orchestrator no longer knows it: not offered again until a refresh lists it."""
        self._dropped.add(offer.url)

    def succeeded(self, offer: AppOffer) -> None:
        self._suspended.pop(offer.url, None)

    def status(self) -> list[dict[str, Any]]:
        """For the gateway's ``/status``: each listed app, where, and whether it is offered now (with the
        problem that suspended it, if one did)."""
        shown = []
        for o in self.all():
            held = self._suspended.get(o.url)
            suspended = self.suspended(o)
            shown.append(
                {
                    "app": o.app, "orchestrator": o.orchestrator, "mode": o.mode, "capacity": o.capacity,
                    "capacity_used": o.capacity_used, "ready": not suspended and o.url not in self._dropped,
                    **({"problem": held.problem} if suspended and held is not None else {}),
                }
            )  # fmt: skip
        return shown


def _offers(orchestrator: str, entry: Any) -> list[AppOffer]:
    """The usable runners of one ``/discovery`` entry (the SDK's rule: a non-empty string ``url`` and ``app``)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("runners"), list):
        return []
    offers = []
    for runner in entry["runners"]:
        if not isinstance(runner, dict):
            continue
        url, app = runner.get("url"), runner.get("app")
        if not isinstance(url, str) or not url or not isinstance(app, str) or not app:
            continue
        mode = wire.normalize_mode(str(runner.get("mode") or "")) or wire.MODE_PERSISTENT
        metadata = runner.get("metadata") if isinstance(runner.get("metadata"), str) else ""
        described = wire.read_pipeline_app_metadata(metadata or "") or {}
        offers.append(
            AppOffer(
                orchestrator=orchestrator, app=app, url=url.rstrip("/"), mode=mode,
                capacity=_int(runner.get("capacity")), capacity_used=_int(runner.get("capacity_used")),
                version=str(runner.get("version") or ""), metadata=metadata or "",
                pipeline=described.get("pipeline", ""), model_id=described.get("model_id", ""),
                path=described.get("path", ""), **_price(runner.get("price_info")),
            )
        )  # fmt: skip
    return offers


def _price(value: Any) -> dict[str, Any]:
    """``price_wei`` and ``price_unit`` from a discovery ``price_info`` in wei (nothing for anything else)."""
    if not isinstance(value, dict) or str(value.get("currency", "")).lower() != "wei":
        return {}
    price, unit = value.get("price"), value.get("unit")
    if not isinstance(price, int) or isinstance(price, bool) or not isinstance(unit, str):
        return {}
    return {"price_wei": price, "price_unit": unit}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
