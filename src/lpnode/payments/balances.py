"""What each sender has paid an orchestrator for, per session (go-livepeer's ``core.Balances``).

A balance is kept per (sender address, manifest id): tickets credit their expected value, jobs debit their fee.
Both are exact :class:`~fractions.Fraction` wei. A balance may go negative (a job debits after it ran). The first
payment of a session pins the session's price (:meth:`Balances.set_fixed_price`), so a later change of the
orchestrator's prices does not reach a running session. Idle sessions are dropped by :meth:`Balances.sweep`.

Methods are safe to call from several threads.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from lpnode.payments.signatures import checksum


@dataclass
class _Session:
    balance: Fraction
    fixed_price: Fraction | None
    last_update: float


class Balances:
    """Credit per (sender, manifest id). ``clock`` returns seconds (monotonic); tests may pass their own."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[tuple[bytes, str], _Session] = {}

    def _session(self, sender: bytes, manifest_id: str) -> _Session:
        key = (sender, manifest_id)
        session = self._sessions.get(key)
        if session is None:
            session = self._sessions[key] = _Session(Fraction(0), None, self._now())
        return session

    def _now(self) -> float:
        return self._clock()

    def credit(self, sender: bytes, manifest_id: str, amount: Fraction) -> Fraction:
        """Add ``amount`` wei; returns the new balance."""
        with self._lock:
            session = self._session(sender, manifest_id)
            session.balance += amount
            session.last_update = self._now()
            return session.balance

    def debit(self, sender: bytes, manifest_id: str, amount: Fraction) -> Fraction:
        """Take ``amount`` wei; returns the new balance, which may be negative."""
        with self._lock:
            session = self._session(sender, manifest_id)
            session.balance -= amount
            session.last_update = self._now()
            return session.balance

    def balance(self, sender: bytes, manifest_id: str) -> Fraction:
        """The current balance in wei (0 for a session never seen)."""
        with self._lock:
            session = self._sessions.get((sender, manifest_id))
            return session.balance if session is not None else Fraction(0)

    def fixed_price(self, sender: bytes, manifest_id: str) -> Fraction | None:
        """The price (wei per unit) pinned for the session, or None before its first payment."""
        with self._lock:
            session = self._sessions.get((sender, manifest_id))
            return session.fixed_price if session is not None else None

    def set_fixed_price(self, sender: bytes, manifest_id: str, price: Fraction, *, replace: bool = False) -> Fraction:
        """Pin ``price`` for the session unless one is pinned already (or ``replace``); returns the pinned price."""
        with self._lock:
            session = self._session(sender, manifest_id)
            if session.fixed_price is None or replace:
                session.fixed_price = Fraction(price)
            return session.fixed_price

    def sweep(self, idle_seconds: float) -> int:
        """Forget sessions untouched for ``idle_seconds``; returns how many were dropped."""
        with self._lock:
            limit = self._now() - idle_seconds
            stale = [key for key, session in self._sessions.items() if session.last_update <= limit]
            for key in stale:
                del self._sessions[key]
            return len(stale)

    def snapshot(self) -> list[dict[str, str]]:
        """Every session for status pages: ``sender`` (checksum), ``manifest`` and ``balance`` (decimal wei, rounded
        down to an integer), plus ``fixed_price`` (wei per unit as a decimal string, ``""`` when not pinned)."""
        with self._lock:
            items = sorted(self._sessions.items())
        return [
            {
                "sender": checksum(sender),
                "manifest": manifest_id,
                "balance": str(math.floor(session.balance)),
                "fixed_price": "" if session.fixed_price is None else _decimal(session.fixed_price),
            }
            for (sender, manifest_id), session in items
        ]


def _decimal(value: Fraction, places: int = 6) -> str:
    scaled = round(value * 10**places)
    sign = "-" if scaled < 0 else ""
    whole, part = divmod(abs(scaled), 10**places)
    text = f"{sign}{whole}.{part:0{places}d}".rstrip("0").rstrip(".")
    return text or "0"
