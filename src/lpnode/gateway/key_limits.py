"""Per-key limit counters held in the gateway process (:class:`LocalLimits`), for the embedded SQLite state: each
gateway process counts on its own. The PostgreSQL state counts in the database instead
(:class:`lpnode.gateway.state_postgres.SharedLimits`); both follow :class:`lpnode.gateway.state.KeyLimits`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

from lpnode.gateway.state import KeyRecord, Refusal


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


def refill(tokens: float, elapsed: float, rate_per_minute: int) -> float:
    """A bucket's tokens ``elapsed`` seconds after it held ``tokens`` (never more than ``rate_per_minute``)."""
    return min(float(rate_per_minute), tokens + max(0.0, elapsed) * rate_per_minute / 60.0)


def seconds_until_token(tokens: float, rate_per_minute: int) -> int:
    """0 if a bucket holding ``tokens`` has a whole one, else whole seconds until it has."""
    if tokens >= 1.0 - 1e-9:
        return 0
    return max(1, math.ceil((1.0 - tokens) / (rate_per_minute / 60.0) - 1e-9))


class LocalLimits:
    """Token buckets and requests-in-progress counts in this process; thread-safe, never blocks."""

    blocking = False

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._buckets: dict[int, _Bucket] = {}
        self._in_flight: dict[int, int] = {}
        self._lock = threading.Lock()

    def acquire(self, key: KeyRecord) -> str | Refusal:
        with self._lock:
            in_flight = self._in_flight.get(key.id, 0)
            if key.max_concurrent is not None and in_flight >= key.max_concurrent:
                return Refusal("concurrency", in_flight=in_flight)
            if key.rate_per_minute is not None:
                wait = self._take_token(key.id, key.rate_per_minute)
                if wait:
                    return Refusal("rate", in_flight=in_flight, retry_after=wait)
            self._in_flight[key.id] = in_flight + 1
        return ""

    def _take_token(self, key_id: int, rate_per_minute: int) -> int:
        now = self._clock()
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = _Bucket(float(rate_per_minute), now)
        else:
            bucket.tokens = refill(bucket.tokens, now - bucket.updated, rate_per_minute)
            bucket.updated = now
        wait = seconds_until_token(bucket.tokens, rate_per_minute)
        if not wait:
            bucket.tokens -= 1.0
        return wait

    def release(self, key: KeyRecord, lease: str) -> None:
        with self._lock:
            left = self._in_flight.get(key.id, 1) - 1
            if left > 0:
                self._in_flight[key.id] = left
            else:
                self._in_flight.pop(key.id, None)

    def in_flight(self, key_id: int) -> int:
        with self._lock:
            return self._in_flight.get(key_id, 0)

    def close(self) -> None:
        """Nothing to give back: the counts live and die with the process."""
