"""The gateway's state in SQLite files (the embedded default): keys and usage in ``DATA_DIR/gateway.sqlite``,
asynchronous jobs in ``DATA_DIR/async_jobs.sqlite``, key limits counted in the gateway process
(:class:`~lpnode.gateway.key_limits.LocalLimits`). See :mod:`lpnode.gateway.state`.

Every call opens its own connection, so one state serves any number of threads, and the ``lpnode keys``
commands can change keys while a gateway runs (the files are in WAL mode).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import astuple
from pathlib import Path
from typing import Any

from lpnode.errors import ConfigError
from lpnode.gateway.key_limits import LocalLimits
from lpnode.gateway.state import (
    APP_SESSION_COLUMNS,
    USAGE_COLUMNS,
    AppSessionRecord,
    JobState,
    KeyNameTaken,
    KeyRecord,
    UsageRecord,
)

KEY_COLUMNS = "id, name, prefix, created_at, revoked_at, rate_per_minute, max_concurrent"
CACHE_SECONDS = 5.0  # a gateway reads each key at most once per 5 s; a revoked key works that long at most
_KEYS_SCHEMA = """
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
CREATE TABLE IF NOT EXISTS usage (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    key_id INTEGER,
    key_name TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    model_id TEXT NOT NULL,
    units INTEGER NOT NULL,
    price_wei TEXT NOT NULL,
    orchestrator TEXT NOT NULL,
    latency_ms REAL NOT NULL,
    status INTEGER NOT NULL,
    request_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_time ON usage (time);
CREATE TABLE IF NOT EXISTS app_sessions (
    session_id TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    orchestrator TEXT NOT NULL,
    app_url TEXT NOT NULL,
    control_url TEXT NOT NULL,
    key_id INTEGER,
    model_id TEXT NOT NULL,
    reserved_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS app_sessions_reserved ON app_sessions (reserved_at);
"""
# ``result`` is '' while the job runs (the column predates running rows and is NOT NULL in older files)
_JOBS_SCHEMA = """
CREATE TABLE IF NOT EXISTS async_jobs (
    request_id TEXT PRIMARY KEY, result TEXT NOT NULL, finished REAL NOT NULL, running_until REAL
);
"""
_INSERT_USAGE = f"INSERT INTO usage ({', '.join(USAGE_COLUMNS)}) VALUES ({', '.join('?' * len(USAGE_COLUMNS))})"
_INSERT_SESSION = (
    f"INSERT OR REPLACE INTO app_sessions ({', '.join(APP_SESSION_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(APP_SESSION_COLUMNS))})"
)
_BUCKETS = """
SELECT CAST((time - ?) / ? AS INTEGER) AS bucket, key_name, pipeline, COUNT(*),
       SUM(CASE WHEN status BETWEEN 200 AND 299 THEN units ELSE 0 END), SUM(status >= 400),
       SUM(CAST(price_wei AS REAL)), SUM(latency_ms)
FROM usage WHERE time >= ? GROUP BY bucket, key_name, pipeline
"""


def connect(path: Path) -> sqlite3.Connection:
    """A new connection to a gateway database file; it waits up to 10 s for another writer. Close it."""
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


class SqliteState:
    """The gateway's state in ``path`` (keys, usage) and ``jobs_path`` (default: ``async_jobs.sqlite`` beside it),
    each created with its tables on first use."""

    key_cache_seconds = CACHE_SECONDS

    def __init__(self, path: Path, jobs_path: Path | None = None) -> None:
        self.path = Path(path)
        self.jobs_path = Path(jobs_path) if jobs_path is not None else self.path.parent / "async_jobs.sqlite"
        self.where = str(self.path)
        init_database(self.path, _KEYS_SCHEMA)
        self._jobs_ready = False

    @contextmanager
    def _transaction(self, path: Path | None = None) -> Iterator[sqlite3.Connection]:
        with closing(connect(path or self.path)) as conn, conn:
            yield conn

    # API keys

    def add_key(
        self,
        name: str,
        prefix: str,
        key_hash: str,
        created_at: float,
        rate_per_minute: int | None,
        max_concurrent: int | None,
    ) -> int:
        try:
            with self._transaction() as conn:
                cursor = conn.execute(
                    "INSERT INTO api_keys (name, prefix, key_hash, created_at, rate_per_minute, max_concurrent) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (name, prefix, key_hash, created_at, rate_per_minute, max_concurrent),
                )
        except sqlite3.IntegrityError:
            raise KeyNameTaken(name) from None
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def list_keys(self) -> list[KeyRecord]:
        return [KeyRecord(*row) for row in self._query(f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY id", ())]

    def key_by_id(self, key_id: int) -> KeyRecord | None:
        return self._one(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,))

    def active_key_named(self, name: str) -> KeyRecord | None:
        return self._one(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE name = ? AND revoked_at IS NULL", (name,))

    def key_by_hash(self, key_hash: str) -> KeyRecord | None:
        return self._one(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?", (key_hash,))

    def revoke_key(self, key_id: int, revoked_at: float) -> bool:
        with self._transaction() as conn:
            sql = "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"
            return conn.execute(sql, (revoked_at, key_id)).rowcount > 0

    def _one(self, sql: str, params: tuple[Any, ...]) -> KeyRecord | None:
        rows = self._query(sql, params)
        return KeyRecord(*rows[0]) if rows else None

    def _query(self, sql: str, params: Sequence[Any], path: Path | None = None) -> list[tuple[Any, ...]]:
        with closing(connect(path or self.path)) as conn:
            return list(conn.execute(sql, params))

    # usage

    def add_usage(self, records: Sequence[UsageRecord]) -> None:
        with self._transaction() as conn:
            conn.executemany(_INSERT_USAGE, [astuple(r) for r in records])

    def usage_rows(
        self, columns: Sequence[str], since: float | None, *, newest_first: bool = False, limit: int | None = None
    ) -> list[tuple[Any, ...]]:
        sql, params = usage_select(columns, since, newest_first, limit, "?")
        return self._query(sql, params)

    def usage_buckets(self, since: float, step: float) -> list[tuple[Any, ...]]:
        return self._query(_BUCKETS, (since, step, since))

    # asynchronous jobs

    def _jobs(self) -> Path:
        if not self._jobs_ready:
            init_database(self.jobs_path, _JOBS_SCHEMA)
            with self._transaction(self.jobs_path) as conn:
                columns = {row[1] for row in conn.execute("PRAGMA table_info(async_jobs)")}
                if "running_until" not in columns:  # a file from before running jobs were stored
                    conn.execute("ALTER TABLE async_jobs ADD COLUMN running_until REAL")
            self._jobs_ready = True
        return self.jobs_path

    def job_started(self, request_id: str, running_until: float) -> None:
        with self._transaction(self._jobs()) as conn:
            conn.execute(
                "INSERT OR REPLACE INTO async_jobs (request_id, result, finished, running_until) VALUES (?, '', ?, ?)",
                (request_id, time.time(), running_until),
            )

    def job_finished(self, request_id: str, result: str) -> None:
        with self._transaction(self._jobs()) as conn:
            conn.execute(
                "INSERT OR REPLACE INTO async_jobs (request_id, result, finished, running_until) "
                "VALUES (?, ?, ?, NULL)",
                (request_id, result, time.time()),
            )

    def job(self, request_id: str, since: float) -> JobState | None:
        sql = "SELECT result, running_until FROM async_jobs WHERE request_id = ? AND finished >= ?"
        rows = self._query(sql, (request_id, since), self._jobs())
        if not rows:
            return None
        result, running_until = rows[0]
        return JobState(result or None, running_until)

    def drop_jobs(self, before: float) -> None:
        with self._transaction(self._jobs()) as conn:
            conn.execute("DELETE FROM async_jobs WHERE finished < ?", (before,))

    # runner-app sessions

    def session_reserved(self, session: AppSessionRecord) -> None:
        with self._transaction() as conn:
            conn.execute(_INSERT_SESSION, astuple(session))

    def app_session(self, session_id: str) -> AppSessionRecord | None:
        sql = f"SELECT {', '.join(APP_SESSION_COLUMNS)} FROM app_sessions WHERE session_id = ?"
        rows = self._query(sql, (session_id,))
        return AppSessionRecord(*rows[0]) if rows else None

    def session_ended(self, session_id: str) -> bool:
        with self._transaction() as conn:
            return conn.execute("DELETE FROM app_sessions WHERE session_id = ?", (session_id,)).rowcount > 0

    def drop_sessions(self, before: float) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM app_sessions WHERE reserved_at < ?", (before,))

    def limits(self, clock: Callable[[], float]) -> LocalLimits:
        return LocalLimits(clock)

    def close(self) -> None:
        """Nothing held open: every call has its own connection."""


def usage_select(
    columns: Sequence[str], since: float | None, newest_first: bool, limit: int | None, mark: str
) -> tuple[str, list[Any]]:
    """The usage query both backends run; ``mark`` is the driver's parameter marker."""
    unknown = set(columns) - set(USAGE_COLUMNS)
    if unknown:
        raise ValueError(f"not usage columns: {sorted(unknown)}")
    sql = f"SELECT {', '.join(columns)} FROM usage"
    params: list[Any] = []
    if since is not None:
        sql += f" WHERE time >= {mark}"
        params.append(since)
    if newest_first:
        sql += " ORDER BY time DESC, id DESC"
    if limit is not None:
        sql += f" LIMIT {mark}"
        params.append(limit)
    return sql, params
