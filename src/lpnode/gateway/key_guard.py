"""Admitting requests under API keys: the ``Authorization: Bearer`` check, per-key rate (a token bucket)
and concurrency limits, and the errors a refused request gets (401, 429 with ``Retry-After``).

Key lookups are cached for the state's ``key_cache_seconds`` (5 s on SQLite, 1 s on PostgreSQL), so a revoked
key stops working within that time and the hot path does not read the database on every request. The counters
behind the limits come from the state (:meth:`lpnode.gateway.state.GatewayState.limits`): in the gateway process
with SQLite, in the database with PostgreSQL, where every gateway on it enforces one limit together.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from lpnode.errors import TooManyRequestsError, UnauthorizedError
from lpnode.gateway.keys import BEARER_HINT, KEY_PATTERN, KEY_PREFIX, KeyRecord, KeyStore, hash_key
from lpnode.gateway.state import KeyLimits, Refusal


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

    __slots__ = ("_guard", "key", "lease", "released")

    def __init__(self, guard: KeyGuard, key: KeyRecord, lease: str) -> None:
        self._guard = guard
        self.key = key
        self.lease = lease
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


class KeyGuard:
    """Admits requests by API key and enforces each key's limits (see the module docstring).

    Rate: a token bucket per key holding ``rate_per_minute`` requests, refilled at ``rate_per_minute / 60``
    per second, so a key may burst its whole minute's allowance and then goes at the steady rate.
    Concurrency: at most ``max_concurrent`` admissions not yet released. Safe to use from several threads.
    ``cache_seconds`` defaults to the state's ``key_cache_seconds``; ``clock`` times the cache (and the buckets,
    where they live in this process).
    """

    def __init__(
        self,
        store: KeyStore,
        *,
        clock: Callable[[], float] = time.monotonic,
        cache_seconds: float | None = None,
        cache_size: int = 10_000,
    ) -> None:
        self._store = store
        self._clock = clock
        self._cache_seconds = store.state.key_cache_seconds if cache_seconds is None else cache_seconds
        self._cache_size = cache_size
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}
        self._limits: KeyLimits = store.state.limits(clock)
        self._lock = threading.Lock()

    @property
    def cache_seconds(self) -> float:
        """At most how long a revoked key is still admitted."""
        return self._cache_seconds

    def admit(self, authorization: str | None) -> KeyAdmission:
        """Admit a request with this ``Authorization`` header value, or raise 401 / 429.

        On a cache miss, or with limits counted in the database, this waits on the database; in async code
        prefer :meth:`admit_async`.
        """
        key = bearer_key(authorization)
        digest = hash_key(key)
        found, record = self._cached(digest)
        if not found:
            record = self._remember(digest, self._store.lookup(key))
        return self._admit(record)

    async def admit_async(self, authorization: str | None) -> KeyAdmission:
        """:meth:`admit`, with any database work done off the event loop."""
        key = bearer_key(authorization)
        digest = hash_key(key)
        found, record = self._cached(digest)
        if not found:
            return await asyncio.to_thread(lambda: self._admit(self._remember(digest, self._store.lookup(key))))
        if self._limits.blocking and record is not None and record.active:
            return await asyncio.to_thread(self._admit, record)
        return self._admit(record)

    def in_flight(self, key_id: int) -> int:
        """Requests of this key in progress (with PostgreSQL: on every gateway)."""
        return self._limits.in_flight(key_id)

    def close(self) -> None:
        """Give back the slots still held (with PostgreSQL, so other gateways need not wait for their leases)."""
        self._limits.close()

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
        lease = self._limits.acquire(record)
        if isinstance(lease, Refusal):
            raise _too_many(record, lease)
        return KeyAdmission(self, record, lease)

    def _release(self, admission: KeyAdmission) -> None:
        with self._lock:
            if admission.released:
                return
            admission.released = True
        self._limits.release(admission.key, admission.lease)


def _too_many(record: KeyRecord, refusal: Refusal) -> TooManyRequestsError:
    if refusal.over == "concurrency":
        return TooManyRequestsError(
            f"API key {record.name!r} already has {refusal.in_flight} requests in progress, its limit; "
            "retry when one finishes",
            retry_after=1,
            key_id=record.id,
            key_name=record.name,
        )
    return TooManyRequestsError(
        f"API key {record.name!r} is over its limit of {record.rate_per_minute} requests per "
        f"minute; retry in {refusal.retry_after} s",
        retry_after=refusal.retry_after,
        key_id=record.id,
        key_name=record.name,
    )
