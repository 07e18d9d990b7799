"""The usage page's data: a gateway's usage records summed into time buckets, per API key and per pipeline.

The gateway sums its records per bucket (:class:`~lpnode.dashboard.sources.UsageSource`: in SQLite, one
indexed scan, not a Python loop per record); this module lays the sums out as the page's series. Spend is
summed as a float (the page draws it; ``lpnode usage`` gives exact totals).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from lpnode.dashboard.sources import UsageSource
from lpnode.errors import ConfigError

WINDOWS: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        "15m": (15 * 60, 30),
        "1h": (3600, 60),
        "6h": (6 * 3600, 600),
        "24h": (24 * 3600, 1800),
        "7d": (7 * 24 * 3600, 4 * 3600),
    }
)
"""Window name -> (window seconds, bucket seconds): 30 to 48 buckets each."""
NO_KEY = "(no key)"
_MEASURES = ("requests", "units", "errors", "spend_wei", "latency_ms")


def _empty(count: int) -> dict[str, list[float]]:
    return {name: [0.0] * count for name in (*_MEASURES, "_latency_sum")}


def usage_series(source: UsageSource, window: str = "1h", *, now: float | None = None) -> dict[str, Any]:
    """``{window, bucket_seconds, since, until, buckets: [start times], by_key: {name: series},
    by_pipeline: {name: series}, totals: {by_key: [...], by_pipeline: [...]}}``; a series holds one list per
    measure (``requests``, ``units``, ``errors``, ``spend_wei``, ``latency_ms`` = mean per bucket, 0 when
    empty). Requests without a key are under ``"(no key)"``."""
    if window not in WINDOWS:
        raise ConfigError(f"unknown window {window!r}; choose from {', '.join(WINDOWS)}")
    span, step = WINDOWS[window]
    until = time.time() if now is None else now
    count = int(span // step)
    since = until - count * step
    groups: dict[str, dict[str, dict[str, list[float]]]] = {"by_key": {}, "by_pipeline": {}}
    for row in source.usage_buckets(since, step):
        bucket = row.bucket
        if not 0 <= bucket < count:
            continue  # a record with a clock from the future
        for group, name in (("by_key", row.key_name or NO_KEY), ("by_pipeline", row.pipeline)):
            series = groups[group].setdefault(name, _empty(count))
            series["requests"][bucket] += row.requests
            series["units"][bucket] += row.units
            series["errors"][bucket] += row.errors
            series["spend_wei"][bucket] += row.spend_wei
            series["_latency_sum"][bucket] += row.latency_ms
    totals: dict[str, list[dict[str, Any]]] = {}
    for group, by_name in groups.items():
        totals[group] = []
        for name, series in by_name.items():
            latency_sum = series.pop("_latency_sum")
            requests = sum(series["requests"])
            series["latency_ms"] = [
                round(s / n, 3) if n else 0.0 for s, n in zip(latency_sum, series["requests"], strict=True)
            ]
            totals[group].append(
                {
                    "name": name,
                    "requests": int(requests),
                    "units": int(sum(series["units"])),
                    "errors": int(sum(series["errors"])),
                    "spend_wei": sum(series["spend_wei"]),
                    "latency_ms": round(sum(latency_sum) / requests, 3) if requests else 0.0,
                }
            )
        totals[group].sort(key=lambda t: (-t["requests"], t["name"]))
    return {
        "window": window,
        "bucket_seconds": step,
        "since": since,
        "until": until,
        "buckets": [since + i * step for i in range(count)],
        **groups,
        "totals": totals,
    }
