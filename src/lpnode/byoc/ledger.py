"""BYOC balances on the orchestrator: per (sender, capability), in wei, debited ``price × ceil(seconds)``
per job.

Off-chain there is no way to pay, so nothing is ever credited and a priced capability's balances only
go down: the balance says what a sender's jobs have cost (``Livepeer-Balance``, the job token's
``balance``). Jobs are not refused for a low balance off-chain (go-livepeer requires 60 s worth on-chain).
An unsigned job's sender is ``""``. At most :data:`MAX_ACCOUNTS` balances are kept; the least recently
used goes first.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from fractions import Fraction

MAX_ACCOUNTS = 10_000


def seconds_charged(elapsed: float) -> int:
    """Whole seconds a job of ``elapsed`` seconds is charged for (ceil; at least 1)."""
    return max(1, math.ceil(elapsed - 1e-9))


class Ledger:
    def __init__(self, max_accounts: int = MAX_ACCOUNTS) -> None:
        self._balances: OrderedDict[tuple[str, str], Fraction] = OrderedDict()
        self.max_accounts = max_accounts

    def balance(self, sender: str, capability: str) -> Fraction:
        return self._balances.get((sender.lower(), capability), Fraction(0))

    def debit(self, sender: str, capability: str, amount: Fraction) -> Fraction:
        """Take ``amount`` wei off the balance; the new balance."""
        key = (sender.lower(), capability)
        balance = self._balances.pop(key, Fraction(0)) - amount
        self._balances[key] = balance
        while len(self._balances) > self.max_accounts:
            self._balances.popitem(last=False)
        return balance


def balance_text(balance: Fraction) -> str:
    """A balance as ``Livepeer-Balance`` carries it: whole wei, rounded down."""
    return str(math.floor(balance))
