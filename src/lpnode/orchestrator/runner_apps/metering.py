"""Metering a paid runner-app session: a debit every ``-livePaymentInterval`` for the time gone by.

A :class:`Meter` runs one task per metered session (units ``seconds`` or ``720p-pixel-seconds``). Each tick it
first checks the session is still held (a released session stops its meter), then debits ``units a second ×
seconds elapsed`` (the fraction of a unit left over carries to the next tick) at the session's price, the price
pinned by its first payment. The first debit comes one interval after the reservation. A tick that finds the
balance below the fee calls ``on_short`` (the caller releases the session, which tells the runner, and cuts off a
single-shot call in flight) and stops; nothing is debited then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from lpnode.logs import log_event
from lpnode.payments.balances import Balances
from lpnode.payments.signatures import checksum

log = logging.getLogger("lpnode.orchestrator.runner_apps")


@dataclass(frozen=True)
class Metered:
    """Who pays for one session: the balance (``sender``, ``manifest_id``), units a second, the price (wei a unit)."""

    sender: bytes
    manifest_id: str
    units_per_second: int
    price: Fraction


class Meter:
    """Debits one session every ``interval`` seconds until :meth:`stop` or a short balance."""

    def __init__(
        self,
        balances: Balances,
        metered: Metered,
        interval: float,
        still_held: Callable[[], bool],
        on_short: Callable[[str], None],
        *,
        on_debit: Callable[[Fraction], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.balances = balances
        self.metered = metered
        self.interval = interval
        self.still_held = still_held
        self.on_short = on_short
        self.on_debit = on_debit
        self.clock = clock
        self.debited = Fraction(0)
        self._carry = Fraction(0)
        self._last = clock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._last = self.clock()
        self._task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._task = None

    async def _run(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(self.interval)
                if not self.still_held() or not self.tick():
                    return

    def tick(self) -> bool:
        """One debit for the time since the last; False when the balance could not cover it (``on_short`` called)."""
        now = self.clock()
        m = self.metered
        units = Fraction(now - self._last) * m.units_per_second + self._carry
        self._last = now
        whole = int(units)
        self._carry = units - whole
        fee = m.price * whole
        balance = self.balances.balance(m.sender, m.manifest_id)
        if fee > 0 and balance < fee:
            reason = f"insufficient balance, mid={m.manifest_id}, fee={int(fee)}, balance={int(balance)}"
            log_event(
                log, "runner app session unpaid: released", logging.INFO, sender=checksum(m.sender),
                manifest_id=m.manifest_id, fee_wei=int(fee), balance_wei=int(balance),
            )  # fmt: skip
            self.on_short(reason)
            return False
        if fee > 0:
            self.balances.debit(m.sender, m.manifest_id, fee)
            self.debited += fee
            if self.on_debit is not None:
                self.on_debit(fee)
        return True
