"""The gateway's side of its dashboard: what the network and usage pages read, taken from the running gateway.

:class:`GatewayDashboardSource` implements :class:`lpnode.dashboard.sources.GatewaySource` over the
gateway's directory, selection measurements, price caps, key guard, usage log and (on chain) payments;
:func:`dashboard_routes` gives the gateway's apps the pages' routes over it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Protocol

from starlette.routing import Route

from lpnode.dashboard import gateway_pages
from lpnode.dashboard.sources import NetworkSnapshot, UsageBucket
from lpnode.dashboard.usage_series import usage_series as series_of
from lpnode.gateway.directory import Directory, KnownOrchestrator
from lpnode.gateway.forward import Forwarder
from lpnode.gateway.key_guard import KeyGuard
from lpnode.gateway.network_caps import network_capabilities
from lpnode.gateway.selection import Stats
from lpnode.gateway.usage import UsageLog

if TYPE_CHECKING:
    from lpnode.gateway.payments import GatewayPayments


class GatewayParts(Protocol):
    """What the source reads from the running gateway (:class:`lpnode.gateway.server.Gateway`)."""

    directory: Directory | None
    stats: Stats
    forwarder: Forwarder | None
    usage: UsageLog
    guard: KeyGuard | None
    payments: GatewayPayments | None


class UsageTable:
    """A usage log's records summed per time bucket, key and pipeline (``GROUP BY`` in the gateway's database)."""

    def __init__(self, usage: UsageLog) -> None:
        self.usage = usage

    def usage_buckets(self, since: float, step: float) -> Iterator[UsageBucket]:
        rows = self.usage.usage_buckets(since, step)  # from the gateway's state: SQLite or PostgreSQL
        for bucket, key_name, pipeline, requests, units, errors, spend, latency in rows:
            yield UsageBucket(
                bucket, key_name, pipeline, requests, units or 0, errors or 0, spend or 0.0, latency or 0.0
            )


class GatewayDashboardSource:
    """The gateway's pages' data, read at each call (the directory exists once the gateway runs)."""

    def __init__(self, gateway: GatewayParts) -> None:
        self.gateway = gateway

    @property
    def keys_required(self) -> bool:
        return self.gateway.guard is not None

    def usage_buckets(self, since: float, step: float) -> Iterator[UsageBucket]:
        return UsageTable(self.gateway.usage).usage_buckets(since, step)

    def network(self) -> NetworkSnapshot:
        """Every orchestrator that answered, with the gateway's measurements per offer: latency (EWMA, ms),
        successes, failures, success rate, jobs in flight, suspension and recent errors."""
        gateway = self.gateway
        assert gateway.directory is not None and gateway.forwarder is not None
        known = [o for o in gateway.directory.known() if o.info is not None]

        def annotate(index: int, pipeline: str, model_id: str) -> Mapping[str, Any]:
            orch = known[index]
            measure = gateway.stats.measures.get((orch.url, pipeline, model_id))
            done = (measure.successes + measure.failures) if measure else 0
            return {
                "url": orch.url,
                "latency_ms": None if measure is None or measure.latency is None else round(measure.latency * 1000, 1),
                "successes": measure.successes if measure else 0,
                "failures": measure.failures if measure else 0,
                "success_rate": round(measure.successes / done, 4) if measure and done else None,
                "in_flight": measure.in_flight if measure else 0,
                "suspended": orch.suspended,
                "problem": orch.problem,
                "errors": _errors(orch),
            }

        unreachable = [
            {"url": o.url, "problem": o.problem, "errors": _errors(o)}
            for o in gateway.directory.known()
            if o.info is None
        ]
        return NetworkSnapshot(
            document=network_capabilities((o.url, o.info) for o in known if o.info is not None),
            annotate=annotate,
            max_price=gateway.forwarder.caps.cap,
            unreachable=unreachable,
            last_refresh=gateway.directory.last_refresh,
        )

    async def payments(self, *, admin: bool) -> dict[str, Any] | None:
        """On chain: :func:`payments_view` of the gateway's payments, deposit and reserve read now (the chain
        watcher caches them, so this costs no chain call); ``None`` off-chain."""
        payments = self.gateway.payments
        if payments is None:
            return None
        from lpnode.payments.chain_errors import ChainError

        try:
            problem = await payments.funds_problem()
        except ChainError as exc:
            problem = f"cannot read the deposit and reserve: {exc}"
        network = payments.node.settings.network if payments.node is not None else ""
        return payments_view(payments.snapshot(), network=network, problem=problem, admin=admin)


def payments_view(snapshot: Mapping[str, Any], *, network: str, problem: str, admin: bool) -> dict[str, Any]:
    """The dashboard's ``payments`` block from :meth:`GatewayPayments.snapshot`: ``network``, ``address``,
    ``deposit_wei``, ``reserve_wei``, ``unlocking``, ``problem`` and ``orchestrators`` (tickets and EV sent,
    whole wei); with ``admin`` also ``credits``, each ``credit_wei`` rounded down to whole wei."""
    view: dict[str, Any] = {
        "network": network,
        "address": snapshot.get("address", ""),
        "deposit_wei": str(snapshot.get("deposit_wei", "0")),
        "reserve_wei": str(snapshot.get("reserve_wei", "0")),
        "unlocking": bool(snapshot.get("unlocking")),
        "problem": problem,
        "orchestrators": list(snapshot.get("orchestrators", [])),
    }
    if admin:
        view["credits"] = [{**c, "credit_wei": _whole(c.get("credit_wei", "0"))} for c in snapshot.get("credits", [])]
    return view


def _whole(amount: object) -> str:
    # The gateway keeps credit as an exact fraction; a page wants whole wei.
    try:
        return str(math.floor(Fraction(str(amount))))
    except (ValueError, ZeroDivisionError):
        return "0"


def _errors(orch: KnownOrchestrator) -> list[dict[str, Any]]:
    return [{"at": at, "problem": problem} for at, problem in orch.recent_errors]


def dashboard_routes(gateway: GatewayParts, *, admin: bool) -> list[Route]:
    """The dashboard's routes for the gateway's public app (``admin=False``) or its admin app."""
    return gateway_pages.dashboard_routes(GatewayDashboardSource(gateway), admin=admin)


def usage_series(usage: UsageLog, window: str = "1h", *, now: float | None = None) -> dict[str, Any]:
    """The usage page's series (:func:`lpnode.dashboard.usage_series.usage_series`) of ``usage``."""
    return series_of(UsageTable(usage), window, now=now)
