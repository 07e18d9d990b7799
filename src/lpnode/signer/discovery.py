"""``GET /discover-orchestrators`` (``-remoteDiscovery``): the orchestrators worth paying, for key-less clients.

The signer polls its orchestrators (``-orchAddr`` or ``-orchWebhookUrl``) every ``-liveAICapReportInterval`` with
``GetOrchestrator`` (signed with its own address, as a paying gateway's) and ``GET {orchestrator}/discovery`` (their
Live Runner apps; 2 s, at most 1 MiB; a failure drops only the runners). The snapshot is rebuilt when a request
finds it older than the interval, and on every request while it is empty.

Each orchestrator is listed as ``{"address": <its URL>, "score": 1, "capabilities": [...], "runners": [...]}``:

- ``capabilities``: every ``pipeline/model`` it offers whose price (its per-model price, else its global price)
  is within the configured maximum for that pair, plus the ``app`` of each valid runner;
- ``runners``: its Live Runner records with a ``url``, an ``app``, a ``metadata`` string of at most 1,024 bytes (or
  none) and a positive ``price_info`` in wei per ``seconds``, ``720p-pixel-seconds`` or ``fixed`` within the global
  maximum (per-capability maximums do not apply to runners, as in go-livepeer); only the keys below pass through,
  the first record of a URL wins; addresses are merged with a trailing ``/`` ignored, shown as first seen.

An address that is not an absolute URL is never listed, nor is one with no capability left; ``?caps=X&caps=Y``
keeps those offering any of them, in the order asked (empty values ignored). No orchestrator at all is a 503
``cache empty``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from lpnode.logs import log_event
from lpnode.protocol.capabilities import pipeline_for_capability
from lpnode.protocol.lp_rpc_pb2 import Capabilities, OrchestratorInfo, OrchestratorRequest
from lpnode.protocol.runner_apps import DISCOVERY_PATH, METADATA_MAX_BYTES
from lpnode.signer.ceilings import ConfiguredPrices

log = logging.getLogger("lpnode.signer.discovery")

RUNNER_KEYS = ("url", "gpu", "app", "version", "metadata", "mode", "capacity", "capacity_used",
               "capacity_available", "price_info")  # fmt: skip
RUNNER_UNITS = frozenset({"seconds", "720p-pixel-seconds", "fixed"})
DISCOVERY_TIMEOUT = 2.0
DISCOVERY_MAX_BYTES = 1024 * 1024
SCORE = 1

InfoFetcher = Callable[[str, OrchestratorRequest], Awaitable[OrchestratorInfo]]


@dataclass
class Listing:
    address: str
    capabilities: set[str] = field(default_factory=set)
    runners: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"address": self.address, "score": SCORE}
        if self.capabilities:
            out["capabilities"] = sorted(self.capabilities)
        if self.runners:
            out["runners"] = self.runners
        return out


def _price(info: OrchestratorInfo, cap: int, model: str) -> Fraction | None:
    for entry in info.capabilities_prices:
        if entry.capability == cap and entry.constraint == model and entry.pixelsPerUnit > 0:
            return Fraction(entry.pricePerUnit, entry.pixelsPerUnit)
    if info.HasField("price_info") and info.price_info.pixelsPerUnit > 0:
        return Fraction(info.price_info.pricePerUnit, info.price_info.pixelsPerUnit)
    return None


def offered_capabilities(info: OrchestratorInfo, prices: ConfiguredPrices) -> set[str]:
    """``pipeline/model`` for each model ``info`` offers at a price within the configured maximum."""
    found: set[str] = set()
    for cap, constraints in info.capabilities.constraints.PerCapability.items():
        try:
            pipeline = pipeline_for_capability(cap)
        except ValueError:
            continue
        for model in constraints.models:
            price = _price(info, cap, model)
            if price is None:
                continue
            one = Capabilities()
            one.constraints.PerCapability[cap].models[model].warm = False
            limit = prices.for_capabilities(one)
            if limit is None or price <= limit:
                found.add(f"{pipeline}/{model}")
    return found


def is_address(text: object) -> bool:
    """An orchestrator address a client can call: an absolute URL with a scheme and a host."""
    if not isinstance(text, str) or not text:
        return False
    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    return bool(parts.scheme) and bool(parts.hostname)


def metadata_problem(metadata: object) -> str:
    """Why a runner's ``metadata`` is not one an orchestrator accepts ("" when it is, or when there is none)."""
    if metadata is None:
        return ""
    if not isinstance(metadata, str):
        return "invalid metadata: not a string"
    try:
        size = len(metadata.encode())
    except UnicodeEncodeError:  # a lone surrogate escaped in the JSON: not UTF-8
        return "invalid metadata: not valid UTF-8"
    if size > METADATA_MAX_BYTES:
        return f"invalid metadata: over {METADATA_MAX_BYTES} bytes"
    if "\ufffd" in metadata:
        return "invalid metadata: contains U+FFFD"
    return ""


def runner_problem(runner: object, global_max: Fraction | None) -> str:
    """Why a ``/discovery`` runner record is not listed ("" when it is)."""
    if not isinstance(runner, dict):
        return "not an object"
    if not isinstance(runner.get("url"), str) or not runner["url"]:
        return "missing URL"
    if not isinstance(runner.get("app"), str) or not runner["app"].strip():
        return "missing app"
    problem = metadata_problem(runner.get("metadata"))
    if problem:
        return problem
    price = runner.get("price_info")
    if not isinstance(price, dict):
        return "invalid price"
    try:
        raw = price.get("price")
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise ValueError
        amount = Fraction(str(raw).strip())
    except (ValueError, ZeroDivisionError):
        return "invalid price"
    if amount <= 0:
        return "invalid price"
    if str(price.get("currency") or "").strip().lower() != "wei":
        return "unsupported currency"
    if str(price.get("unit") or "").strip().lower() not in RUNNER_UNITS:
        return "unsupported unit"
    if global_max is not None and amount > global_max:
        return "above global max price"
    return ""


def merge_runners(listings: dict[str, Listing], answer: object, global_max: Fraction | None) -> None:
    """Add the runner records of one ``/discovery`` answer to ``listings`` (keyed by address, no trailing /)."""
    if not isinstance(answer, list):
        return
    for node in answer:
        if not isinstance(node, dict) or not is_address(node.get("address")):
            continue
        address = node["address"]
        listing = listings.setdefault(address.rstrip("/"), Listing(address))
        seen = {r["url"] for r in listing.runners}
        for runner in node.get("runners") or []:
            problem = runner_problem(runner, global_max)
            if problem:
                log_event(log, "Filtered remote discovery runner", address=address, reason=problem)
                continue
            if runner["url"] in seen:
                continue
            seen.add(runner["url"])
            listing.runners.append({k: runner[k] for k in RUNNER_KEYS if k in runner})
            listing.capabilities.add(runner["app"])


class DiscoveryPool:
    """The snapshot behind ``/discover-orchestrators``. ``addresses`` gives the orchestrators to poll (the
    ``-orchAddr`` list or the ``-orchWebhookUrl`` answer); ``fetch_info`` calls ``GetOrchestrator``."""

    def __init__(
        self,
        addresses: Callable[[], Awaitable[list[str]]],
        fetch_info: InfoFetcher,
        request: OrchestratorRequest,
        prices: ConfiguredPrices,
        session: aiohttp.ClientSession,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._addresses = addresses
        self._fetch_info = fetch_info
        self._request = request
        self._prices = prices
        self._session = session
        self._interval = interval
        self._clock = clock
        self._snapshot: list[Listing] = []
        self._built = -float("inf")
        self._lock = asyncio.Lock()

    async def orchestrators(self, caps: Iterable[str]) -> list[dict[str, Any]] | None:
        """The listings, filtered by ``caps`` (any of them); None when no orchestrator is known at all."""
        async with self._lock:
            if not self._snapshot or self._clock() - self._built >= self._interval:
                self._snapshot = await self._build()
                self._built = self._clock()
        if not self._snapshot:
            return None
        wanted = [c for c in caps if c]
        if not wanted:
            return [item.to_json() for item in self._snapshot]
        found: dict[int, Listing] = {}  # in the order of the caps asked for, each orchestrator once (go's order)
        for cap in wanted:
            for index, item in enumerate(self._snapshot):
                if cap in item.capabilities:
                    found.setdefault(index, item)
        return [item.to_json() for item in found.values()]

    async def _build(self) -> list[Listing]:
        try:
            addresses = await self._addresses()
        except Exception as exc:  # a webhook that fails leaves the snapshot empty, retried on the next request
            log_event(log, "orchestrator list unavailable", logging.WARNING, problem=str(exc) or type(exc).__name__)
            return []
        global_max = self._prices.global_wei()
        listings: dict[str, Listing] = {}
        addresses = [a for a in addresses if is_address(a)]
        answers = await asyncio.gather(*(self._poll(a) for a in addresses))
        # Each orchestrator's own capabilities first, then every /discovery answer: go-livepeer's order.
        for address, (info, _) in zip(addresses, answers, strict=True):
            offered = offered_capabilities(info, self._prices) if info is not None else set()
            if offered:
                listings.setdefault(address.rstrip("/"), Listing(address)).capabilities |= offered
        for _, runners in answers:
            if runners is not None:
                merge_runners(listings, runners, global_max)
        return [item for item in listings.values() if item.capabilities]

    async def _poll(self, address: str) -> tuple[OrchestratorInfo | None, object]:
        async def info() -> OrchestratorInfo | None:
            try:
                found = await self._fetch_info(address, self._request)
            except Exception as exc:
                log_event(log, "orchestrator unreachable", logging.WARNING, url=address, problem=str(exc))
                return None
            if not found.address or not found.HasField("price_info"):
                return None  # go's poller drops orchestrators with no address or price
            return found

        async def runners() -> object:
            try:
                async with self._session.get(
                    address.rstrip("/") + DISCOVERY_PATH, ssl=False,
                    timeout=aiohttp.ClientTimeout(total=DISCOVERY_TIMEOUT),
                ) as answer:  # fmt: skip
                    if answer.status != 200:
                        return None
                    return json.loads(await answer.content.read(DISCOVERY_MAX_BYTES))
            except (aiohttp.ClientError, TimeoutError, ValueError):
                return None

        found, listed = await asyncio.gather(info(), runners())
        return found, listed
