"""The gateway's state: API keys, usage records, asynchronous jobs, runner-app sessions and the per-key limit
counters.

:class:`GatewayState` is the one interface the stores above it use (:class:`~lpnode.gateway.keys.KeyStore`,
:class:`~lpnode.gateway.usage.UsageLog`, :class:`~lpnode.gateway.async_jobs.AsyncJobs`,
:class:`~lpnode.gateway.runner_apps_sessions.AppSessions`, :class:`~lpnode.gateway.key_guard.KeyGuard`). Two
implementations hold it:

- :class:`~lpnode.gateway.state_sqlite.SqliteState`, the embedded default: ``DATA_DIR/gateway.sqlite`` (keys,
  usage, sessions) and ``DATA_DIR/async_jobs.sqlite``; limits are counted in the gateway process;
- :class:`~lpnode.gateway.state_postgres.PostgresState`, for ``--db-url postgresql://...``: every table in one
  PostgreSQL database, limits counted in the database, so gateway replicas on it share keys, limits, usage, jobs
  and sessions.

:func:`open_state` picks one. Errors: :class:`~lpnode.errors.ConfigError` when the state cannot be opened (a bad
URL, an unreachable server, a file that is not a database), :class:`~lpnode.errors.UnavailableError` (503) when
the database stops answering later. Neither ever carries a database password: :func:`masked_url` is how a URL is
shown anywhere.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from lpnode.errors import ConfigError

DB_URL_ENV = "LPNODE_DB_URL"
SHARED_CACHE_SECONDS = 1.0
"""How long a gateway on PostgreSQL keeps a key it looked up: every gateway refuses a revoked key within 1 s."""
KEY_PREFIX = "lpk_"
URL_SCHEMES = ("postgresql", "postgres")
_PASSWORD_PARAMS = {"password", "sslpassword"}


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


def _now() -> float:
    return time.time()


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageRecord:
    """One request as the gateway served it. ``key_id`` is ``None`` (and ``key_name`` empty) without keys.

    ``price_wei`` is the fee, units × price per unit, as a decimal string in wei; empty when the request was not
    priced or not served (only a 2xx is charged). ``units`` is what the request asked for, whatever its status.
    ``status`` is the HTTP status the caller got (499 when it went away before the whole answer was sent),
    ``latency_ms`` how long the gateway took to answer, ``time`` when the request arrived (unix seconds; default:
    now).
    """

    pipeline: str
    model_id: str = ""
    key_id: int | None = None
    key_name: str = ""
    units: int = 0
    price_wei: str = ""
    orchestrator: str = ""
    latency_ms: float = 0.0
    status: int = 200
    request_id: str = ""
    time: float = field(default_factory=_now)


USAGE_COLUMNS = tuple(f.name for f in fields(UsageRecord))


@dataclass(frozen=True, slots=True)
class JobState:
    """An asynchronous job as stored: ``result`` (the JSON text of its answer) once finished, else ``None`` with
    ``running_until``, the time past which the gateway that runs it cannot still be running it."""

    result: str | None
    running_until: float | None = None


@dataclass(frozen=True, slots=True)
class AppSessionRecord:
    """A runner-app session reserved through a gateway: which app, on which orchestrator, for which API key (``None``
    without keys), and where the orchestrator serves it. ``reserved_at`` is unix seconds."""

    session_id: str
    app: str
    orchestrator: str
    app_url: str
    control_url: str
    key_id: int | None
    model_id: str
    reserved_at: float


APP_SESSION_COLUMNS = tuple(f.name for f in fields(AppSessionRecord))


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a key's request was not admitted: ``over`` its ``concurrency`` (``in_flight`` requests already) or its
    ``rate`` (a request is allowed again in ``retry_after`` seconds)."""

    over: Literal["concurrency", "rate"]
    in_flight: int = 0
    retry_after: int = 1


class KeyNameTaken(Exception):
    """An active key already has this name."""


class KeyLimits(Protocol):
    """The counters that decide whether a key's request is admitted: a token bucket per key (``rate_per_minute``,
    refilled at ``rate_per_minute / 60`` per second, a burst of up to ``rate_per_minute``) and the key's requests
    in progress (``max_concurrent``). A refused request takes neither a token nor a slot."""

    blocking: bool
    """True when :meth:`acquire` waits on a database (call it off the event loop)."""

    def acquire(self, key: KeyRecord) -> str | Refusal:
        """Admit one request of ``key``: a lease to hand to :meth:`release` when it ends, or why not."""

    def release(self, key: KeyRecord, lease: str) -> None:
        """The request of ``lease`` ended; never blocks. Call once per lease."""

    def in_flight(self, key_id: int) -> int:
        """Requests of this key in progress (with shared counters: on every gateway)."""

    def close(self) -> None:
        """Give back every slot still held; the counters are unusable afterwards."""


class GatewayState(Protocol):
    """Where a gateway keeps its state. Every method is thread-safe and may block on the database (call it off
    the event loop). ``where`` names the place for messages (a path, or a URL with its password masked)."""

    where: str
    key_cache_seconds: float
    """How long a gateway may keep a key it looked up: how soon a revoked key is refused."""

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
        """Store a new key; its id. :class:`KeyNameTaken` if an active key has ``name``."""

    def list_keys(self) -> list[KeyRecord]:
        """Every key, revoked ones included, oldest first."""

    def key_by_id(self, key_id: int) -> KeyRecord | None: ...

    def active_key_named(self, name: str) -> KeyRecord | None: ...

    def key_by_hash(self, key_hash: str) -> KeyRecord | None: ...

    def revoke_key(self, key_id: int, revoked_at: float) -> bool:
        """Revoke an active key; False if it was revoked already."""

    # usage
    def add_usage(self, records: Sequence[UsageRecord]) -> None:
        """Store records in one transaction."""

    def usage_rows(
        self, columns: Sequence[str], since: float | None, *, newest_first: bool = False, limit: int | None = None
    ) -> list[tuple[Any, ...]]:
        """``columns`` (of :data:`USAGE_COLUMNS`) of the records since ``since`` (all if ``None``)."""

    def usage_buckets(self, since: float, step: float) -> list[tuple[Any, ...]]:
        """Records since ``since`` summed per ``step``-second bucket, key name and pipeline: rows of bucket number,
        key name, pipeline, requests, units served, errors (status 400 or more), spend (wei, float), latency sum."""

    # asynchronous jobs
    def job_started(self, request_id: str, running_until: float) -> None: ...

    def job_finished(self, request_id: str, result: str) -> None: ...

    def job(self, request_id: str, since: float) -> JobState | None:
        """The job, if it started or finished at ``since`` or later."""

    def drop_jobs(self, before: float) -> None:
        """Forget jobs that started or finished before ``before``."""

    # runner-app sessions
    def session_reserved(self, session: AppSessionRecord) -> None: ...

    def app_session(self, session_id: str) -> AppSessionRecord | None: ...

    def session_ended(self, session_id: str) -> bool:
        """Forget a session; False if it was not known (ended already, maybe by another gateway)."""

    def drop_sessions(self, before: float) -> None:
        """Forget sessions reserved before ``before``."""

    # limits
    def limits(self, clock: Callable[[], float]) -> KeyLimits:
        """The counters of the keys' limits; ``clock`` (monotonic seconds) is used where they live in-process."""

    def close(self) -> None: ...


def check_db_url(url: str) -> str:
    """``url`` if it is a PostgreSQL URL this gateway can use, else a :class:`ConfigError` (password masked)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise ConfigError(f"--db-url {masked_url(url)!r} is not a URL: {scrub(str(exc), url)}") from None
    if parts.scheme not in URL_SCHEMES:
        raise ConfigError(
            f"--db-url {masked_url(url)!r}: give a PostgreSQL URL, postgresql://USER:PASSWORD@HOST:PORT/DATABASE "
            f"(or leave it out to keep the gateway's state in SQLite in --data-dir)"
        )
    return url


def masked_url(url: str) -> str:
    """``url`` with its password (in the authority or a ``password=`` parameter) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)
    netloc = parts.netloc
    if password is not None:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:***@{hostinfo}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k.lower() in _PASSWORD_PARAMS else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def scrub(text: str, url: str) -> str:
    """``text`` (say, a driver's error) with every password of ``url`` replaced by ``***``."""
    secrets: list[str] = []
    try:
        parts = urlsplit(url)
        if parts.password:
            secrets.append(parts.password)
        secrets += [v for k, v in parse_qsl(parts.query) if k.lower() in _PASSWORD_PARAMS and v]
    except ValueError:
        found = re.search(r"//[^:/@]*:([^@]*)@", url)
        if found and found[1]:
            secrets.append(found[1])
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def open_state(data_dir: Path, db_url: str = "") -> GatewayState:
    """The gateway's state: in PostgreSQL at ``db_url`` (tables created on first use), else in SQLite files in
    ``data_dir``. :class:`ConfigError` when it cannot be used."""
    if db_url:
        from lpnode.gateway.state_postgres import PostgresState

        return PostgresState(check_db_url(db_url))
    from lpnode.gateway.state_sqlite import SqliteState

    return SqliteState(sqlite_path(data_dir))


def sqlite_path(data_dir: Path) -> Path:
    """Where the embedded state keeps keys and usage: ``DATA_DIR/gateway.sqlite``."""
    return data_dir.expanduser() / "gateway.sqlite"


def describe(data_dir: Path, db_url: str = "") -> str:
    """Where :func:`open_state` keeps the state, for messages: the SQLite file, or the URL with its password masked."""
    return masked_url(db_url) if db_url else str(sqlite_path(data_dir))
