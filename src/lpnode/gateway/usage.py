"""Usage records: one row per gateway request, in the gateway's state (table ``usage``: in ``gateway.sqlite``, or
in PostgreSQL with ``--db-url``, where every gateway on the database adds its rows to the one table).

:meth:`UsageLog.record` never waits on the disk: it puts the record on a bounded queue, and a
background thread writes what is queued in batches, one transaction each. :meth:`UsageLog.flush`
waits until everything recorded before it is written; :meth:`UsageLog.close` flushes and stops the
thread, so a clean shutdown loses nothing. Should the queue ever fill (100,000 records the disk could
not keep up with), further records are dropped, counted in ``dropped`` and logged, rather than
slowing requests down. A record made after ``close()`` is written at once, on the caller's thread.
"""

from __future__ import annotations

import logging
import queue
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation, localcontext
from fractions import Fraction
from pathlib import Path
from typing import Any

from lpnode.errors import CANCELLED_STATUS, ConfigError
from lpnode.gateway.state import USAGE_COLUMNS, GatewayState, UsageRecord
from lpnode.gateway.state_sqlite import SqliteState
from lpnode.logs import log_event

__all__ = ["GROUPS", "UsageLog", "UsageRecord", "fee_wei", "served"]

log = logging.getLogger("lpnode.gateway.usage")

GROUPS = {"key": "key_name", "pipeline": "pipeline", "model": "model_id"}
_COLUMNS = USAGE_COLUMNS


def fee_wei(units: int, price_per_unit: Fraction | Decimal | int | str | None) -> str:
    """``units × price_per_unit`` (wei) as a plain decimal string (``"1500"``, ``"0.25"``); ``""`` without a price.

    Exact for whole and decimal results; a fraction such as 1/3 wei is written to 30 significant digits.
    """
    if price_per_unit is None or price_per_unit == "":
        return ""
    fee = units * Fraction(price_per_unit)
    if fee.denominator == 1:
        return str(fee.numerator)
    with localcontext(prec=30):
        return _decimal_text(Decimal(fee.numerator) / Decimal(fee.denominator))


def _decimal_text(value: Decimal) -> str:
    return str(int(value)) if value == value.to_integral_value() else format(value.normalize(), "f")


class UsageLog:
    """Usage records in ``state``, or in the SQLite file at that path (created with its table on first use).
    Close it."""

    def __init__(self, state: GatewayState | Path, *, max_queue: int = 100_000, batch_size: int = 500) -> None:
        self.state: GatewayState = SqliteState(state) if isinstance(state, Path) else state
        self.dropped = 0
        self._batch_size = batch_size
        self._queue: queue.Queue[UsageRecord | threading.Event | None] = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._write_loop, name="lpnode-usage-writer", daemon=True)
        self._thread.start()

    def record(self, record: UsageRecord) -> None:
        """Queue ``record`` for writing; returns at once."""
        with self._lock:
            if not self._closed:
                try:
                    self._queue.put_nowait(record)
                except queue.Full:
                    self.dropped += 1
                    if self.dropped % 1000 == 1:
                        log_event(log, "usage queue full; records dropped", logging.WARNING, dropped=self.dropped)
                return
        self._insert([record])

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every record made before this call is written; ``False`` if that took over ``timeout``."""
        if not self._thread.is_alive():
            return True
        marker = threading.Event()
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
        deadline = time.monotonic() + timeout
        while not marker.wait(0.05):
            if not self._thread.is_alive():  # closed meanwhile: close() wrote everything
                return True
            if time.monotonic() > deadline:
                return False
        return True

    def close(self) -> None:
        """Write everything queued and stop the writer thread. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(None)
        self._thread.join()

    def __enter__(self) -> UsageLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def path(self) -> Path:
        """The SQLite file holding the records (only with the embedded state)."""
        if not isinstance(self.state, SqliteState):
            raise ConfigError(f"usage records are in {self.state.where}, not in a SQLite file")
        return self.state.path

    def _write_loop(self) -> None:
        while True:
            batch: list[UsageRecord] = []
            markers: list[threading.Event] = []
            item = self._queue.get()
            while item is not None:
                if isinstance(item, threading.Event):
                    markers.append(item)
                else:
                    batch.append(item)
                if len(batch) >= self._batch_size:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._insert(batch)
            for marker in markers:
                marker.set()
            if item is None:
                return

    def _insert(self, batch: list[UsageRecord]) -> None:
        error: Exception | None = None
        for attempt in range(3):
            try:
                self.state.add_usage(batch)
                return
            except Exception as exc:  # disk full, locked, database away: keep serving, say what was lost
                error = exc
                time.sleep(0.2 * (attempt + 1))
        with self._lock:
            self.dropped += len(batch)
        log_event(
            log, "usage records not written", logging.ERROR, records=len(batch), database=self.state.where, error=error
        )

    def summary(self, *, since: float | None = None, group_by: Sequence[str] = ("key",)) -> list[dict[str, Any]]:
        """Totals per group since ``since`` (unix time; ``None``: all time), busiest group first.

        ``group_by`` is a subset of ``key``, ``pipeline``, ``model`` (empty: one row for everything). Each
        row has the group's values under those names and ``requests`` (every record), ``served`` (status
        2xx), ``refused`` (4xx but 499: the caller's mistake or the key's limits), ``failed`` (5xx),
        ``cancelled`` (499: the client went away before the whole answer was sent), ``errors`` (status 400
        or more: refused + failed + cancelled), ``units`` and ``spend_wei`` (of served requests only;
        ``spend_wei`` is a decimal string, ``""`` if no served request was priced), ``latency_p50_ms`` and
        ``latency_mean_ms`` (over every request).
        """
        groups = list(dict.fromkeys(group_by))
        for name in groups:
            if name not in GROUPS:
                raise ConfigError(f"cannot group usage by {name!r}; choose from {', '.join(GROUPS)}")
        self.flush()
        columns = [GROUPS[name] for name in groups] + ["units", "price_wei", "latency_ms", "status"]
        totals: dict[tuple[str, ...], _Totals] = {}
        for row in self.state.usage_rows(columns, since):
            group = tuple(row[: len(groups)])
            totals.setdefault(group, _Totals()).add(*row[len(groups) :])
        result = [dict(zip(groups, group, strict=True)) | t.as_dict() for group, t in totals.items()]
        result.sort(key=lambda r: (-r["requests"], *(r[g] for g in groups)))
        return result

    def rows(self, limit: int = 100, since: float | None = None) -> list[UsageRecord]:
        """The latest ``limit`` records (since ``since``, if given), newest first."""
        self.flush()
        found = self.state.usage_rows(_COLUMNS, since, newest_first=True, limit=limit)
        return [UsageRecord(**dict(zip(_COLUMNS, row, strict=True))) for row in found]

    def usage_buckets(self, since: float, step: float) -> list[tuple[Any, ...]]:
        """Records since ``since`` summed per ``step``-second bucket, key name and pipeline (see
        :meth:`lpnode.gateway.state.GatewayState.usage_buckets`)."""
        self.flush()
        return self.state.usage_buckets(since, step)


def served(status: int) -> bool:
    """Whether a request with this final status was served, and so counts towards units and spend."""
    return 200 <= status < 300


@dataclass(slots=True)
class _Totals:
    requests: int = 0
    served: int = 0
    refused: int = 0
    failed: int = 0
    cancelled: int = 0
    units: int = 0
    spend: Decimal = Decimal(0)
    priced: bool = False
    latencies: list[float] = field(default_factory=list)

    def add(self, units: int, price_wei: str, latency_ms: float, status: int) -> None:
        self.requests += 1
        self.latencies.append(latency_ms)
        if status == CANCELLED_STATUS:
            self.cancelled += 1
        elif 400 <= status < 500:
            self.refused += 1
        elif status >= 500:
            self.failed += 1
        if not served(status):  # nothing was delivered: neither its units nor a fee count
            return
        self.served += 1
        self.units += units
        if price_wei:
            try:
                fee = Decimal(price_wei)
            except InvalidOperation:  # not written by lpnode; counted as unpriced
                return
            if fee.is_finite():
                self.spend += fee
                self.priced = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "served": self.served,
            "refused": self.refused,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "errors": self.refused + self.failed + self.cancelled,
            "units": self.units,
            "spend_wei": _decimal_text(self.spend) if self.priced else "",
            "latency_p50_ms": round(statistics.median(self.latencies), 3),
            "latency_mean_ms": round(statistics.fmean(self.latencies), 3),
        }
