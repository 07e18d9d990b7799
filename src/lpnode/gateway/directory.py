"""What the gateway knows about its orchestrators: their latest ``OrchestratorInfo``, fetched in parallel,
refreshed on a period and on demand, and which of them are suspended after failures.

Orchestrators come from ``--orch-addr`` and/or ``--orch-webhook-url`` (go-livepeer's discovery webhook: a
GET answering ``[{"address": "https://o:8935", ...}]``), or on chain from the pool of active orchestrators
(``discover``, :mod:`lpnode.gateway.chain_directory`), whose every answer replaces the list: an orchestrator gone
from it is dropped. Each is asked ``GetOrchestrator`` without
capabilities, so its answer carries every model it serves, with prices and hardware. An orchestrator's
auth token is fetched again before it expires (in the last tenth of its validity, as go-livepeer does).
A failed orchestrator is suspended, for longer each time it fails again (10 s doubling up to 5 min), and
cleared by its next success.

On chain, every ``GetOrchestrator`` carries the gateway's address and signature (``request``), and jobs use a
second kind of info: :meth:`Directory.session_info`, asked with the job's capability and model so the
orchestrator prices that model and makes ticket params for that price (go-livepeer's session refresh). It is
kept per (orchestrator, pipeline, model) and fetched again when its token nears expiry, its ticket params
expire (``expired``), or the orchestrator refuses its credentials (:meth:`Directory.forget_session`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import aiohttp

from lpnode.gateway.orch_client import OrchestratorClient, OrchestratorUnreachable
from lpnode.logs import log_event
from lpnode.protocol.capabilities import capability_bitstring, capability_for_pipeline, pipeline_for_capability
from lpnode.protocol.lp_rpc_pb2 import AuthToken, Capabilities, OrchestratorInfo, OrchestratorRequest

log = logging.getLogger("lpnode.gateway.directory")
REFRESH_SECONDS = 60.0
DISCOVERY_TIMEOUT = 5.0
SUSPEND_SECONDS = 10.0
MAX_SUSPEND_SECONDS = 300.0
RECENT_ERRORS = 5


@dataclass
class KnownOrchestrator:
    url: str
    info: OrchestratorInfo | None = None
    fetched_at: float = 0.0  # wall clock, to compare with token expiry
    response_seconds: float = 0.0
    problem: str = ""
    failures: int = 0
    suspended_until: float = 0.0  # monotonic
    recent_errors: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=RECENT_ERRORS))
    """The last suspensions: (unix time, problem)."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    offer_suspensions: dict[tuple[str, str], Suspension] = field(default_factory=dict)
    """(pipeline, model) -> the suspension of that one offer (a job of it failed; the node answered)."""
    sessions: dict[tuple[str, str], tuple[OrchestratorInfo, float]] = field(default_factory=dict)
    """On chain: (pipeline, model) -> the info asked with that capability, and when it was fetched (wall clock)."""

    @property
    def suspended(self) -> bool:
        return time.monotonic() < self.suspended_until

    def offer_suspended(self, pipeline: str, model_id: str) -> bool:
        held = self.offer_suspensions.get((pipeline, model_id))
        return held is not None and time.monotonic() < held.until


@dataclass
class Suspension:
    """One offer's suspension: ``failures`` in a row, suspended until ``until`` (monotonic), and why."""

    failures: int
    until: float
    problem: str


@dataclass(frozen=True)
class Offer:
    """One orchestrator's offer of one (pipeline, model)."""

    url: str
    pipeline: str
    model_id: str
    warm: bool
    capacity: int
    capacity_in_use: int
    price: Fraction | None  # wei per unit; None: not advertised
    transcoder: str  # where to send jobs (OrchestratorInfo.transcoder)


class Directory:
    def __init__(
        self,
        client: OrchestratorClient,
        addresses: Sequence[str],
        *,
        webhook_url: str = "",
        session: aiohttp.ClientSession | None = None,
        refresh_seconds: float = REFRESH_SECONDS,
        timeout: float = DISCOVERY_TIMEOUT,
        request: Callable[[Capabilities | None], OrchestratorRequest] | None = None,
        expired: Callable[[OrchestratorInfo], bool] | None = None,
        discover: Callable[[], Awaitable[Sequence[str] | None]] | None = None,
    ) -> None:
        self.client = client
        self.discover = discover
        """Where the rest of the orchestrators come from (on chain: the pool), asked at each refresh: its answer
        replaces the list (``addresses`` stay); ``None`` keeps the list as it is (the source could not be read)."""
        self.request = request
        """On chain: the signed ``GetOrchestrator`` request (with a job's capabilities, or ``None``)."""
        self.expired = expired
        """On chain: whether an info's ticket params have expired."""
        self.static = list(addresses)
        self.webhook_url = webhook_url
        self.session = session
        self.refresh_seconds = refresh_seconds
        self.timeout = timeout
        self.orchestrators: dict[str, KnownOrchestrator] = {u: KnownOrchestrator(u) for u in addresses}
        self.last_refresh = 0.0
        self._refreshing: asyncio.Task[None] | None = None
        self.listeners: list[Callable[[KnownOrchestrator], None]] = []
        """Called with an orchestrator each time its info is fetched (e.g. to learn freed capacity)."""

    # --- refreshing ----------------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Ask every orchestrator for its info now (joins a refresh already running)."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._refresh())
        await asyncio.shield(self._refreshing)

    async def run(self) -> None:
        """Refresh on the configured period, forever (cancel to stop). Between refreshes, an orchestrator that has
        not answered yet (just listed, e.g. by the chain, before it was up) is asked again as soon as its
        suspension ends, rather than at the next period."""
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # a refresh must never end the loop
                log_event(log, "orchestrator refresh failed", logging.ERROR, problem=str(exc))
            await self._until_next_refresh()

    async def _until_next_refresh(self) -> None:
        deadline = time.monotonic() + self.refresh_seconds
        while (left := deadline - time.monotonic()) > 0:
            waiting = [o for o in self.orchestrators.values() if o.info is None and o.suspended_until]
            due = min((o.suspended_until for o in waiting), default=deadline)
            # At most a second: orchestrators may be listed meanwhile (a refresh on demand, the chain's pool).
            await asyncio.sleep(max(0.05, min(left, due - time.monotonic(), 1.0)))
            unheard = [o for o in self.orchestrators.values() if o.info is None and o.suspended_until]
            await asyncio.gather(*(self._fetch(o) for o in unheard if not o.suspended))

    async def _refresh(self) -> None:
        for url in await self._webhook_addresses():
            self.orchestrators.setdefault(url, KnownOrchestrator(url))
        if self.discover is not None:
            self._replace(await self.discover())
        await asyncio.gather(*(self._fetch(o) for o in list(self.orchestrators.values())))
        self.last_refresh = time.time()
        usable = sum(1 for o in self.orchestrators.values() if o.info is not None and not o.suspended)
        log_event(log, "orchestrators refreshed", known=len(self.orchestrators), usable=usable)

    def _replace(self, found: Sequence[str] | None) -> None:
        if found is None:
            return
        wanted = {normalize_address(url) for url in found} | set(self.static)
        for url in [u for u in self.orchestrators if u not in wanted]:
            del self.orchestrators[url]
            log_event(log, "orchestrator dropped", url=url, reason="no longer listed")
        for url in sorted(wanted - set(self.orchestrators)):
            self.orchestrators[url] = KnownOrchestrator(url)
            log_event(log, "orchestrator listed", url=url)

    def _listed(self, url: str) -> KnownOrchestrator:
        orch = self.orchestrators.get(url)
        if orch is None:  # dropped from the list since the job picked it
            raise OrchestratorUnreachable(f"{url} is no longer listed")
        return orch

    async def _webhook_addresses(self) -> list[str]:
        if not self.webhook_url or self.session is None:
            return []
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            async with self.session.get(self.webhook_url, timeout=timeout) as response:
                response.raise_for_status()
                entries = await response.json(content_type=None)
            return [normalize_address(e["address"]) for e in entries if isinstance(e, dict) and e.get("address")]
        except (aiohttp.ClientError, TimeoutError, ValueError, TypeError, KeyError) as exc:
            log_event(log, "orchestrator webhook failed", logging.WARNING, url=self.webhook_url, problem=str(exc))
            return []

    async def _fetch(self, orch: KnownOrchestrator) -> None:
        async with orch.lock:
            started = time.monotonic()
            try:
                if self.request is None:
                    info = await self.client.get_info(orch.url, timeout=self.timeout)
                else:
                    info = await self.client.get_info(orch.url, self.request(None), timeout=self.timeout)
            except OrchestratorUnreachable as exc:
                self.suspend(orch.url, str(exc))
                return
            if not info.transcoder:
                self.suspend(orch.url, f"{orch.url} advertised no service address")
                return
            orch.info, orch.fetched_at = info, time.time()
            orch.response_seconds = time.monotonic() - started
            orch.problem = ""
        for listener in self.listeners:
            listener(orch)

    async def token(self, url: str) -> AuthToken:
        """A valid auth token for ``url``, fetching a new one when the current one is in its last tenth."""
        orch = self._listed(url)
        info = orch.info
        if info is None or _expiring(info.auth_token, orch.fetched_at):
            await self._fetch(orch)
            info = orch.info
            if info is None:
                raise OrchestratorUnreachable(orch.problem or f"{url}: no answer")
        return info.auth_token

    async def session_info(self, url: str, pipeline: str, model_id: str) -> OrchestratorInfo:
        """On chain: ``url``'s info asked with (pipeline, model_id), whose ``price_info`` is that model's price
        and whose ticket params are made for it; fetched again when its token nears expiry or its ticket params
        expired. Raises :class:`OrchestratorUnreachable` when the orchestrator does not answer (or is no longer
        listed)."""
        orch = self._listed(url)
        key = (pipeline, model_id)
        async with orch.lock:
            held = orch.sessions.get(key)
            if held is not None and not self._stale(*held):
                return held[0]
            caps = job_capabilities(pipeline, model_id)
            request = self.request(caps) if self.request is not None else OrchestratorRequest(capabilities=caps)
            request.ignoreCapacityCheck = True
            info = await self.client.get_info(url, request, timeout=self.timeout)
            orch.sessions[key] = (info, time.time())
            return info

    def _stale(self, info: OrchestratorInfo, fetched_at: float) -> bool:
        return _expiring(info.auth_token, fetched_at) or (self.expired is not None and self.expired(info))

    def forget_session(self, url: str) -> None:
        """``url`` refused its session's credentials or ticket params: the next :meth:`token` or
        :meth:`session_info` fetches new info, a new token and new params before the orchestrator is used again
        (it stays on offer meanwhile)."""
        orch = self.orchestrators.get(url)
        if orch is not None:
            orch.fetched_at = 0.0
            orch.sessions.clear()
            if orch.info is not None:
                orch.info.auth_token.expiration = 0

    # --- suspension ----------------------------------------------------------------------------------------

    def suspend(self, url: str, problem: str) -> None:
        orch = self.orchestrators.get(url)
        if orch is None:
            return
        orch.failures += 1
        seconds = min(MAX_SUSPEND_SECONDS, SUSPEND_SECONDS * 2 ** (orch.failures - 1))
        orch.suspended_until = time.monotonic() + seconds
        orch.problem = problem
        orch.recent_errors.append((time.time(), problem))
        log_event(log, "orchestrator suspended", logging.WARNING, url=url, seconds=seconds, problem=problem)

    def suspend_offer(self, url: str, pipeline: str, model_id: str, problem: str) -> None:
        """A job of (pipeline, model_id) failed on ``url`` while the node itself answered: only that offer is
        suspended (10 s doubling up to 5 min), the orchestrator's other pipelines and models stay on offer."""
        orch = self.orchestrators.get(url)
        if orch is None:
            return
        held = orch.offer_suspensions.get((pipeline, model_id))
        failures = 1 + (held.failures if held is not None else 0)
        seconds = min(MAX_SUSPEND_SECONDS, SUSPEND_SECONDS * 2 ** (failures - 1))
        orch.offer_suspensions[(pipeline, model_id)] = Suspension(failures, time.monotonic() + seconds, problem)
        orch.recent_errors.append((time.time(), f"{pipeline} {model_id}: {problem}"))
        log_event(
            log, "offer suspended", logging.WARNING, url=url, pipeline=pipeline, model_id=model_id,
            seconds=seconds, problem=problem,
        )  # fmt: skip

    def succeeded(self, url: str, pipeline: str = "", model_id: str = "") -> None:
        """A job (of ``pipeline`` and ``model_id``, when given) succeeded on ``url``: its suspensions end."""
        orch = self.orchestrators.get(url)
        if orch is None:
            return
        if orch.failures:
            orch.failures, orch.suspended_until, orch.problem = 0, 0.0, ""
        orch.offer_suspensions.pop((pipeline, model_id), None)

    # --- what is offered -----------------------------------------------------------------------------------

    def offers(self, pipeline: str, model_id: str, *, suspended: bool = False) -> list[Offer]:
        """Every orchestrator's offer of (pipeline, model_id), in discovery (response time) order: the
        unsuspended ones, or with ``suspended`` the suspended ones (a last resort when no other is left)."""
        cap = capability_for_pipeline(pipeline)
        found = []
        for orch in sorted(self.orchestrators.values(), key=lambda o: o.response_seconds):
            info = orch.info
            if info is None or cap not in info.capabilities.constraints.PerCapability:
                continue
            if (orch.suspended or orch.offer_suspended(pipeline, model_id)) != suspended:
                continue
            model = info.capabilities.constraints.PerCapability[cap].models.get(model_id)
            if model is None:
                continue
            found.append(
                Offer(
                    url=orch.url,
                    pipeline=pipeline,
                    model_id=model_id,
                    warm=model.warm,
                    capacity=model.capacity,
                    capacity_in_use=model.capacityInUse,
                    price=_price(info, cap, model_id),
                    transcoder=info.transcoder.rstrip("/"),
                )
            )
        return found

    def models(self, pipeline: str | None = None, *, suspended: bool = False) -> dict[str, set[str]]:
        """Pipeline -> model ids offered by any unsuspended orchestrator (with ``suspended``: by any at all)."""
        served: dict[str, set[str]] = {}
        for orch in self.orchestrators.values():
            if orch.info is None or (orch.suspended and not suspended):
                continue
            for cap, constraints in orch.info.capabilities.constraints.PerCapability.items():
                try:
                    name = pipeline_for_capability(cap)
                except ValueError:
                    continue
                if pipeline is None or name == pipeline:
                    served.setdefault(name, set()).update(constraints.models)
        return served

    def known(self) -> Iterable[KnownOrchestrator]:
        return self.orchestrators.values()


def normalize_address(address: str) -> str:
    """``host:port`` / ``https://host:port`` → ``https://host:port`` (go-livepeer's default port 8935)."""
    text = address.strip().rstrip("/")
    if "://" not in text:
        text = "https://" + text
    scheme, rest = text.split("://", 1)
    if ":" not in rest.rsplit("]", 1)[-1]:
        rest += ":8935"
    return f"{scheme}://{rest}"


def job_capabilities(pipeline: str, model_id: str) -> Capabilities:
    """What a job's ``GetOrchestrator`` asks with: its capability, a ``capacities`` entry for it (which makes
    the orchestrator price the request per model) and the model's constraint, as go-livepeer's sessions do."""
    cap = capability_for_pipeline(pipeline)
    caps = Capabilities(bitstring=capability_bitstring([cap]))
    caps.capacities[cap] = 1
    caps.constraints.PerCapability[cap].models[model_id].warm = False
    return caps


def _price(info: OrchestratorInfo, cap: int, model_id: str) -> Fraction | None:
    for price in info.capabilities_prices:
        if price.capability == cap and price.constraint == model_id and price.pixelsPerUnit > 0:
            return Fraction(price.pricePerUnit, price.pixelsPerUnit)
    return None


def _expiring(token: AuthToken, fetched_at: float) -> bool:
    if not token.token:
        return True
    validity = max(1.0, token.expiration - fetched_at)
    return time.time() > token.expiration - validity / 10
