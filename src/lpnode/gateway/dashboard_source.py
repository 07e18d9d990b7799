"""The gateway's side of its dashboard: what the network and usage pages read, taken from the running gateway.

:class:`GatewayDashboardSource` implements :class:`lpnode.dashboard.sources.GatewaySource` over the
gateway's directory, selection measurements, price caps, key guard and usage log; :func:`dashboard_routes`
gives the gateway's apps the pages' routes over it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import closing
from typing import Any, Protocol

from starlette.routing import Route

from lpnode.dashboard import gateway_pages
from lpnode.dashboard.sources import NetworkSnapshot, UsageBucket
from lpnode.dashboard.usage_series import usage_series as series_of
from lpnode.gateway.directory import Directory, KnownOrchestrator
from lpnode.gateway.forward import Forwarder
from lpnode.gateway.key_guard import KeyGuard
from lpnode.gateway.keys import connect
from lpnode.gateway.network_caps import network_capabilities
from lpnode.gateway.selection import Stats
from lpnode.gateway.usage import UsageLog

_SQL = """
SELECT CAST((time - ?) / ? AS INTEGER) AS bucket, key_name, pipeline, COUNT(*),
       SUM(CASE WHEN status BETWEEN 200 AND 299 THEN units ELSE 0 END), SUM(status >= 400),
       SUM(CAST(price_wei AS REAL)), SUM(latency_ms)
FROM usage WHERE time >= ? GROUP BY bucket, key_name, pipeline
"""


class GatewayParts(Protocol):
    """What the source reads from the running gateway (:class:`lpnode.gateway.server.Gateway`)."""

    directory: Directory | None
    stats: Stats
    forwarder: Forwarder | None
    usage: UsageLog
    guard: KeyGuard | None


class UsageTable:
    """A usage log's records summed per time bucket, key and pipeline (in SQLite: ``GROUP BY``)."""

    def __init__(self, usage: UsageLog) -> None:
        self.usage = usage

    def usage_buckets(self, since: float, step: float) -> Iterator[UsageBucket]:
        self.usage.flush()
        with closing(connect(self.usage.path)) as conn:
            rows = list(conn.execute(_SQL, (since, step, since)))
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


def _errors(orch: KnownOrchestrator) -> list[dict[str, Any]]:
    return [{"at": at, "problem": problem} for at, problem in orch.recent_errors]


def dashboard_routes(gateway: GatewayParts, *, admin: bool) -> list[Route]:
    """The dashboard's routes for the gateway's public app (``admin=False``) or its admin app."""
    return gateway_pages.dashboard_routes(GatewayDashboardSource(gateway), admin=admin)


def usage_series(usage: UsageLog, window: str = "1h", *, now: float | None = None) -> dict[str, Any]:
    """The usage page's series (:func:`lpnode.dashboard.usage_series.usage_series`) of ``usage``."""
    return series_of(UsageTable(usage), window, now=now)
