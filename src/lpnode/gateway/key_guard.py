"""Admitting requests under API keys: the ``Authorization: Bearer`` check, per-key rate (a token bucket)
and concurrency limits, and the errors a refused request gets (401, 429 with ``Retry-After``).

Key lookups are cached for a few seconds (``CACHE_SECONDS``), so a revoked key stops working within that
time and the hot path does not read SQLite on every request.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from lpnode.errors import TooManyRequestsError, UnauthorizedError
from lpnode.gateway.keys import BEARER_HINT, CACHE_SECONDS, KEY_PATTERN, KEY_PREFIX, KeyRecord, KeyStore, hash_key


def bearer_key(authorization: str | None) -> str:
    """The key in an ``Authorization: Bearer <key>`` header value; :class:`UnauthorizedError` if there is none."""
    if not authorization or not authorization.strip():
        raise UnauthorizedError(f"missing API key: {BEARER_HINT}")
    scheme, _, key = authorization.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not KEY_PATTERN.fullmatch(key):
        raise UnauthorizedError(f"malformed Authorization header: {BEARER_HINT} (keys start with {KEY_PREFIX})")
    return key


class KeyAdmission:
    """A request admitted under ``key``. ``release()`` (or leaving ``with`` / ``async with``) frees its
    place among the key's requests at once; only the first release counts."""

    __slots__ = ("_guard", "key", "released")

    def __init__(self, guard: KeyGuard, key: KeyRecord) -> None:
        self._guard = guard
        self.key = key
        self.released = False

    def release(self) -> None:
        self._guard._release(self)

    def __enter__(self) -> KeyAdmission:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    async def __aenter__(self) -> KeyAdmission:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class KeyGuard:
    """Admits requests by API key and enforces each key's limits (see the module docstring).

    Rate: a token bucket per key holding ``rate_per_minute`` requests, refilled at ``rate_per_minute / 60``
    per second, so a key may burst its whole minute's allowance and then goes at the steady rate.
    Concurrency: at most ``max_concurrent`` admissions not yet released. Safe to use from several threads.
    """

    def __init__(
        self,
        store: KeyStore,
        *,
        clock: Callable[[], float] = time.monotonic,
        cache_seconds: float = CACHE_SECONDS,
        cache_size: int = 10_000,
    ) -> None:
        self._store = store
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._cache_size = cache_size
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}
        self._buckets: dict[int, _Bucket] = {}
        self._in_flight: dict[int, int] = {}
        self._lock = threading.Lock()

    def admit(self, authorization: str | None) -> KeyAdmission:
        """Admit a request with this ``Authorization`` header value, or raise 401 / 429.

        On a cache miss this reads SQLite (one indexed row); in async code prefer :meth:`admit_async`.
        """
        key = bearer_key(authorization)
        digest = hash_key(key)
        found, record = self._cached(digest)
        if not found:
            record = self._remember(digest, self._store.lookup(key))
        return self._admit(record)

    async def admit_async(self, authorization: str | None) -> KeyAdmission:
        """:meth:`admit`, with the SQLite read of a cache miss done off the event loop."""
        key = bearer_key(authorization)
        digest = hash_key(key)
        found, record = self._cached(digest)
        if not found:
            record = self._remember(digest, await asyncio.to_thread(self._store.lookup, key))
        return self._admit(record)

    def in_flight(self, key_id: int) -> int:
        with self._lock:
            return self._in_flight.get(key_id, 0)

    def _cached(self, digest: str) -> tuple[bool, KeyRecord | None]:
        with self._lock:
            entry = self._cache.get(digest)
        if entry is None or entry[0] <= self._clock():
            return False, None
        return True, entry[1]

    def _remember(self, digest: str, record: KeyRecord | None) -> KeyRecord | None:
        now = self._clock()
        with self._lock:
            if len(self._cache) >= self._cache_size:
                self._cache = {h: e for h, e in self._cache.items() if e[0] > now}
                if len(self._cache) >= self._cache_size:  # a flood of distinct keys: start over
                    self._cache.clear()
            self._cache[digest] = (now + self._cache_seconds, record)
        return record

    def _admit(self, record: KeyRecord | None) -> KeyAdmission:
        if record is None:
            raise UnauthorizedError(f"unknown API key: {BEARER_HINT}, using a key the operator gave you")
        if not record.active:
            raise UnauthorizedError(f"this API key was revoked: ask for a new one and {BEARER_HINT}")
        with self._lock:
            in_flight = self._in_flight.get(record.id, 0)
            if record.max_concurrent is not None and in_flight >= record.max_concurrent:
                raise TooManyRequestsError(
                    f"API key {record.name!r} already has {in_flight} requests in progress, its limit; "
                    "retry when one finishes",
                    retry_after=1,
                    key_id=record.id,
                    key_name=record.name,
                )
            if record.rate_per_minute is not None:
                wait = self._take_token(record.id, record.rate_per_minute)
                if wait:
                    raise TooManyRequestsError(
                        f"API key {record.name!r} is over its limit of {record.rate_per_minute} requests per "
                        f"minute; retry in {wait} s",
                        retry_after=wait,
                        key_id=record.id,
                        key_name=record.name,
                    )
            self._in_flight[record.id] = in_flight + 1
        return KeyAdmission(self, record)

    def _take_token(self, key_id: int, rate_per_minute: int) -> int:
        """Take one request from the key's bucket: 0 if taken, else whole seconds until one is there."""
        now = self._clock()
        per_second = rate_per_minute / 60.0
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = _Bucket(float(rate_per_minute), now)
        else:
            bucket.tokens = min(float(rate_per_minute), bucket.tokens + (now - bucket.updated) * per_second)
            bucket.updated = now
        if bucket.tokens >= 1.0 - 1e-9:
            bucket.tokens -= 1.0
            return 0
        return max(1, math.ceil((1.0 - bucket.tokens) / per_second - 1e-9))

    def _release(self, admission: KeyAdmission) -> None:
        with self._lock:
            if admission.released:
                return
            admission.released = True
            key_id = admission.key.id
            left = self._in_flight.get(key_id, 1) - 1
            if left > 0:
                self._in_flight[key_id] = left
            else:
                self._in_flight.pop(key_id, None)
