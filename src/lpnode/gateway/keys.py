"""The gateway's API keys: create, list, revoke and look up hashed keys in the gateway's state
(:mod:`lpnode.gateway.state`: SQLite in the data dir, or PostgreSQL with ``--db-url``). The guard that admits
requests by key is :mod:`lpnode.gateway.key_guard`.

A key is ``lpk_`` followed by 32 URL-safe random characters (192 bits). It is shown once, when created;
the store keeps only its SHA-256 (hex) and a non-secret prefix (the 8 characters after ``lpk_``) so a
listing can tell keys apart. Lookups go by the hash of the whole key, never by prefix, so how long a
lookup takes says nothing about how much of a guessed key is right.

:class:`~lpnode.gateway.key_guard.KeyGuard` admits a request from its ``Authorization: Bearer <key>`` header, or raises:

    UnauthorizedError      401: no key, a malformed header, an unknown key, or a revoked key
    TooManyRequestsError   429: over the key's requests per minute or requests at once; has ``retry_after``

Both are :class:`~lpnode.errors.JobError` and carry the response headers to send (``headers``).
The guard keeps what it looked up for the state's ``key_cache_seconds`` (5 s with SQLite, 1 s with PostgreSQL),
so a revoked key keeps working for at most that long in a running gateway.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from dataclasses import replace
from pathlib import Path

from lpnode.errors import ConfigError
from lpnode.gateway.state import KEY_PREFIX, GatewayState, KeyNameTaken, KeyRecord, sqlite_path
from lpnode.gateway.state_sqlite import CACHE_SECONDS, SqliteState, connect, init_database
from lpnode.logs import log_event

__all__ = [
    "BEARER_HINT", "CACHE_SECONDS", "DATABASE_NAME", "KEY_PATTERN", "KEY_PREFIX", "KeyRecord", "KeyStore",
    "connect", "database_path", "hash_key", "init_database",
]  # fmt: skip

log = logging.getLogger("lpnode.gateway.keys")

DATABASE_NAME = "gateway.sqlite"
PREFIX_LENGTH = 8
BEARER_HINT = "send your API key as 'Authorization: Bearer <key>'"
KEY_PATTERN = re.compile(r"lpk_[A-Za-z0-9_-]{32}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


def database_path(data_dir: Path) -> Path:
    """Where the embedded state keeps keys and usage: ``DATA_DIR/gateway.sqlite``."""
    return sqlite_path(data_dir)


def hash_key(key: str) -> str:
    """What the store keeps of a key: its SHA-256, hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def _utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def _check_limit(what: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"{what} must be 1 or more (leave it out for no limit), got {value}")


class KeyStore:
    """API keys in ``state``, or in the SQLite file at that path (created with its tables on first use).

    Thread-safe, and the ``lpnode keys`` commands can change keys while a gateway runs.
    """

    def __init__(self, state: GatewayState | Path) -> None:
        self.state: GatewayState = SqliteState(state) if isinstance(state, Path) else state

    def create(
        self, name: str, *, rate_per_minute: int | None = None, max_concurrent: int | None = None
    ) -> tuple[str, KeyRecord]:
        """A new key: ``(plaintext, record)``. The plaintext is not stored; this is the only time it exists."""
        if not _NAME.fullmatch(name) or name.isdigit():
            raise ConfigError(
                f"key name {name!r}: use 1-64 letters, digits and . _ @ - (starting with a letter or digit, "
                "not all digits), e.g. alice or mobile-app"
            )
        _check_limit("rate per minute", rate_per_minute)
        _check_limit("max concurrent", max_concurrent)
        key = KEY_PREFIX + secrets.token_urlsafe(24)
        prefix = key[len(KEY_PREFIX) : len(KEY_PREFIX) + PREFIX_LENGTH]
        created_at = time.time()
        try:
            key_id = self.state.add_key(name, prefix, hash_key(key), created_at, rate_per_minute, max_concurrent)
        except KeyNameTaken:
            raise ConfigError(
                f"an active key named {name!r} already exists; revoke it first (lpnode keys revoke {name}) "
                "or choose another name"
            ) from None
        record = KeyRecord(key_id, name, prefix, created_at, None, rate_per_minute, max_concurrent)
        log_event(log, "api key created", name=name, id=record.id, prefix=record.shown_prefix)
        return key, record

    def list(self) -> list[KeyRecord]:
        """Every key, revoked ones included, oldest first."""
        return self.state.list_keys()

    def revoke(self, name_or_id: str | int) -> KeyRecord:
        """Revoke the active key with this name, or the key with this id (names are never all digits)."""
        if isinstance(name_or_id, int) or name_or_id.isdigit():
            record = self.state.key_by_id(int(name_or_id))
            missing = f"no key with id {name_or_id}"
        else:
            record = self.state.active_key_named(name_or_id)
            missing = f"no active key named {name_or_id!r}"
        if record is None:
            raise ConfigError(f"{missing}; 'lpnode keys list' shows the keys")
        revoked_at = time.time()
        if not self.state.revoke_key(record.id, revoked_at):
            again = self.state.key_by_id(record.id)
            when = _utc(again.revoked_at) if again is not None and again.revoked_at is not None else "just now"
            raise ConfigError(f"key {record.id} ({record.name}) was already revoked at {when}")
        log_event(log, "api key revoked", name=record.name, id=record.id, prefix=record.shown_prefix)
        return replace(record, revoked_at=revoked_at)

    def lookup(self, plaintext: str) -> KeyRecord | None:
        """The record of this key, revoked or not (see ``active``); ``None`` for anything else."""
        if not KEY_PATTERN.fullmatch(plaintext):
            return None
        return self.state.key_by_hash(hash_key(plaintext))
