"""The gateway's API keys: a SQLite store of hashed keys (the guard that admits requests by key is
:mod:`lpnode.gateway.key_guard`).

A key is ``lpk_`` followed by 32 URL-safe random characters (192 bits). It is shown once, when created;
the store keeps only its SHA-256 (hex) and a non-secret prefix (the 8 characters after ``lpk_``) so a
listing can tell keys apart. Lookups go by the hash of the whole key, never by prefix, so how long a
lookup takes says nothing about how much of a guessed key is right.

:class:`~lpnode.gateway.key_guard.KeyGuard` admits a request from its ``Authorization: Bearer <key>`` header, or raises:

    UnauthorizedError      401: no key, a malformed header, an unknown key, or a revoked key
    TooManyRequestsError   429: over the key's requests per minute or requests at once; has ``retry_after``

Both are :class:`~lpnode.errors.JobError` and carry the response headers to send (``headers``).
The guard keeps what it looked up for ``cache_seconds`` (5 s by default), so a revoked key keeps
working for at most that long in a running gateway, and a busy gateway reads SQLite once per key per
5 s rather than once per request. Limits live in the gateway process: each gateway counts on its own.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from lpnode.errors import ConfigError
from lpnode.logs import log_event

log = logging.getLogger("lpnode.gateway.keys")

DATABASE_NAME = "gateway.sqlite"
KEY_PREFIX = "lpk_"
PREFIX_LENGTH = 8
CACHE_SECONDS = 5.0
BEARER_HINT = "send your API key as 'Authorization: Bearer <key>'"
KEY_PATTERN = re.compile(r"lpk_[A-Za-z0-9_-]{32}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_COLUMNS = "id, name, prefix, created_at, revoked_at, rate_per_minute, max_concurrent"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    revoked_at REAL,
    rate_per_minute INTEGER,
    max_concurrent INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;
"""


def database_path(data_dir: Path) -> Path:
    """Where the gateway keeps keys and usage: ``DATA_DIR/gateway.sqlite``."""
    return data_dir.expanduser() / DATABASE_NAME


def connect(path: Path) -> sqlite3.Connection:
    """A new connection to the gateway database; it waits up to 10 s for another writer. Close it."""
    conn = sqlite3.connect(path, timeout=10.0)
    conn.execute("PRAGMA synchronous=NORMAL")  # safe with WAL: a power cut loses at most the last commits
    return conn


def init_database(path: Path, schema: str) -> None:
    """Create the file (readable by its owner only), switch it to WAL and run ``schema``.

    A file that is not a usable database is a :class:`ConfigError` naming it.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        with closing(connect(path)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(schema)
    except (sqlite3.Error, OSError) as exc:
        raise ConfigError(f"cannot use {path} as the gateway database: {exc}") from None


def hash_key(key: str) -> str:
    """What the store keeps of a key: its SHA-256, hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def _utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One API key as stored: never the key itself. ``None`` limits mean no limit."""

    id: int
    name: str
    prefix: str
    created_at: float
    revoked_at: float | None
    rate_per_minute: int | None
    max_concurrent: int | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def shown_prefix(self) -> str:
        """How the key starts, e.g. ``lpk_Ab3dE9xZ…``: enough to recognise it, useless to use it."""
        return f"{KEY_PREFIX}{self.prefix}…"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"active": self.active}


def _check_limit(what: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"{what} must be 1 or more (leave it out for no limit), got {value}")


class KeyStore:
    """API keys in the SQLite file at ``path`` (created with its tables on first use).

    Every call opens its own connection, so one store serves any number of threads, and the
    ``lpnode keys`` commands can change keys while a gateway runs.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        init_database(self.path, _SCHEMA)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with closing(connect(self.path)) as conn, conn:
            yield conn

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
            with self._transaction() as conn:
                cursor = conn.execute(
                    "INSERT INTO api_keys (name, prefix, key_hash, created_at, rate_per_minute, max_concurrent) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (name, prefix, hash_key(key), created_at, rate_per_minute, max_concurrent),
                )
        except sqlite3.IntegrityError:
            raise ConfigError(
                f"an active key named {name!r} already exists; revoke it first (lpnode keys revoke {name}) "
                "or choose another name"
            ) from None
        assert cursor.lastrowid is not None
        record = KeyRecord(cursor.lastrowid, name, prefix, created_at, None, rate_per_minute, max_concurrent)
        log_event(log, "api key created", name=name, id=record.id, prefix=record.shown_prefix)
        return key, record

    def list(self) -> list[KeyRecord]:
        """Every key, revoked ones included, oldest first."""
        with closing(connect(self.path)) as conn:
            return [KeyRecord(*row) for row in conn.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY id")]

    def revoke(self, name_or_id: str | int) -> KeyRecord:
        """Revoke the active key with this name, or the key with this id (names are never all digits)."""
        by_id = isinstance(name_or_id, int) or name_or_id.isdigit()
        with self._transaction() as conn:
            if by_id:
                row = conn.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = ?", (int(name_or_id),)).fetchone()
                missing = f"no key with id {name_or_id}"
            else:
                query = f"SELECT {_COLUMNS} FROM api_keys WHERE name = ? AND revoked_at IS NULL"
                row = conn.execute(query, (name_or_id,)).fetchone()
                missing = f"no active key named {name_or_id!r}"
            if row is None:
                raise ConfigError(f"{missing}; 'lpnode keys list' shows the keys")
            record = KeyRecord(*row)
            revoked_at = time.time()
            done = conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (revoked_at, record.id)
            ).rowcount
            if not done:
                when = _utc(record.revoked_at) if record.revoked_at is not None else "just now"
                raise ConfigError(f"key {record.id} ({record.name}) was already revoked at {when}")
        log_event(log, "api key revoked", name=record.name, id=record.id, prefix=record.shown_prefix)
        return replace(record, revoked_at=revoked_at)

    def lookup(self, plaintext: str) -> KeyRecord | None:
        """The record of this key, revoked or not (see ``active``); ``None`` for anything else."""
        if not KEY_PATTERN.fullmatch(plaintext):
            return None
        with closing(connect(self.path)) as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE key_hash = ?", (hash_key(plaintext),)).fetchone()
        return KeyRecord(*row) if row else None
