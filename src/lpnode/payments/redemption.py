"""Winning tickets, kept in SQLite until they are redeemed on chain, and the loop that redeems them.

:class:`RedemptionQueue` is a table in the orchestrator's data dir (WAL, full sync): :meth:`RedemptionQueue.add`
returns only once the ticket is on disk, so an orchestrator killed right after loses none. :class:`Redeemer`
redeems queued tickets oldest first, one sender's in order, when

- the ticket is still valid: ``creation_round + ticket_validity_period > current_round`` (the chain's own rule;
  older tickets are dropped as *expired*, so a round boundary between receiving and redeeming is fine);
- the sender's deposit plus the share of its reserve this recipient may claim covers the face value, and the
  sender is not unlocked (else the ticket waits: the sender may fund again before it expires);
- the gas price is at most ``max_gas_price`` (0: no cap; else every ticket waits for it to fall).

Each ticket ends *redeemed* (with the transaction hash), *failed* (with the contract's reason) or *expired*;
transient problems (the chain unreachable, the round not initialised yet) are retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lpnode.payments.chain_client import ChainClient
from lpnode.payments.chain_errors import ChainError, ChainRevert, GasPriceTooHigh
from lpnode.payments.chain_view import ChainView
from lpnode.payments.signatures import checksum
from lpnode.payments.ticket import Ticket

log = logging.getLogger(__name__)

QUEUE_FILE = "tickets.sqlite3"
QUEUED, REDEEMED, FAILED, EXPIRED = "queued", "redeemed", "failed", "expired"
_MAX_BACKOFF = 300.0
# Reverts that say "not now" rather than "never": retried until the ticket expires.
_TRANSIENT_REVERTS = ("current round is not initialized", "system is paused", "round already initialized")
# Reverts that say the sender cannot pay now: the ticket waits for funds until it expires.
_UNFUNDED_REVERTS = ("sender is unlocked", "sender deposit and reserve are zero")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tickets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_hash BLOB NOT NULL UNIQUE,
    recipient BLOB NOT NULL,
    sender BLOB NOT NULL,
    face_value TEXT NOT NULL,
    win_prob TEXT NOT NULL,
    sender_nonce INTEGER NOT NULL,
    recipient_rand_hash BLOB NOT NULL,
    creation_round INTEGER NOT NULL,
    creation_round_block_hash BLOB NOT NULL,
    params_expiration_block INTEGER NOT NULL,
    sig BLOB NOT NULL,
    rand TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued',
    tx_hash TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL DEFAULT 0,
    added_at REAL NOT NULL,
    done_at REAL
);
CREATE INDEX IF NOT EXISTS tickets_status ON tickets (status, id);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class QueuedTicket:
    """A ticket waiting for redemption: its row id, the ticket, its signature and the recipient's rand."""

    id: int
    ticket: Ticket
    sig: bytes
    rand: int
    attempts: int


class RedemptionQueue:
    """Winning tickets in a SQLite file (``DATA_DIR/tickets.sqlite3`` by convention, :data:`QUEUE_FILE`).

    Safe to use from the event loop and from threads; every call is short. Also counts tickets received (not
    only winners) for ``lpnode tickets``: :meth:`note_received` is cheap and written at most once a second.
    """

    def __init__(self, db_path: Path) -> None:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        self.path = db_path
        self._db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a winning ticket is money: on disk before add returns
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._received = 0
        self._flushed_at = time.monotonic()

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._db.close()

    def add(self, ticket: Ticket, sig: bytes, rand: int) -> bool:
        """Queue a winning ticket, durably. False when the same ticket was queued before (nothing changes)."""
        row = (
            ticket.hash(),
            ticket.recipient,
            ticket.sender,
            str(ticket.face_value),
            str(ticket.win_prob),
            ticket.sender_nonce,
            ticket.recipient_rand_hash,
            ticket.creation_round,
            ticket.creation_round_block_hash,
            ticket.params_expiration_block,
            sig,
            str(rand),
            time.time(),
        )
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO tickets (ticket_hash, recipient, sender, face_value, win_prob, sender_nonce,"
                " recipient_rand_hash, creation_round, creation_round_block_hash, params_expiration_block, sig, rand,"
                " added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
        return cursor.rowcount == 1

    def note_received(self, count: int = 1) -> None:
        """Count tickets received (winning or not). Only counted here (it runs on every paid job); the count is
        written by :meth:`flush`, which the redeemer calls off the event loop on each pass, and at close."""
        self._received += count

    def flush(self) -> None:
        """Write the received count now."""
        count, self._received = self._received, 0
        self._flushed_at = time.monotonic()
        if count:
            with self._lock:
                self._db.execute(
                    "INSERT INTO counters (name, value) VALUES ('received', ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                    (count,),
                )

    def queued(self, due_before: float | None = None) -> list[QueuedTicket]:
        """Queued tickets, oldest first; only those due by ``due_before`` (a ``time.time()``) when given."""
        query = (
            "SELECT id, recipient, sender, face_value, win_prob, sender_nonce, recipient_rand_hash, creation_round,"
            " creation_round_block_hash, params_expiration_block, sig, rand, attempts FROM tickets"
            " WHERE status = 'queued'"
        )
        args: tuple[Any, ...] = ()
        if due_before is not None:
            query += " AND next_try <= ?"
            args = (due_before,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY id", args).fetchall()
        return [
            QueuedTicket(
                id=r[0],
                ticket=Ticket(
                    recipient=bytes(r[1]),
                    sender=bytes(r[2]),
                    face_value=int(r[3]),
                    win_prob=int(r[4]),
                    sender_nonce=r[5],
                    recipient_rand_hash=bytes(r[6]),
                    creation_round=r[7],
                    creation_round_block_hash=bytes(r[8]),
                    params_expiration_block=r[9],
                ),
                sig=bytes(r[10]),
                rand=int(r[11]),
                attempts=r[12],
            )
            for r in rows
        ]

    def finish(self, ticket_id: int, status: str, *, tx_hash: str = "", reason: str = "") -> None:
        """Record a ticket's outcome: :data:`REDEEMED`, :data:`FAILED` or :data:`EXPIRED`."""
        with self._lock:
            self._db.execute(
                "UPDATE tickets SET status = ?, tx_hash = ?, reason = ?, done_at = ? WHERE id = ?",
                (status, tx_hash, reason, time.time(), ticket_id),
            )

    def retry_later(self, ticket_id: int, reason: str, delay: float, *, count_attempt: bool = True) -> None:
        """Keep a ticket queued and try it again after ``delay`` seconds."""
        with self._lock:
            self._db.execute(
                "UPDATE tickets SET reason = ?, next_try = ?, attempts = attempts + ? WHERE id = ?",
                (reason, time.time() + delay, 1 if count_attempt else 0, ticket_id),
            )

    def stats(self) -> dict[str, Any]:
        """``received`` (every ticket), ``won`` (winners queued ever), ``queued``, ``redeemed``, ``failed``,
        ``expired``, ``earned_wei`` (face values redeemed, an int), ``queued_wei`` and the last ``recent``
        outcomes (newest first)."""
        with self._lock:
            counts = dict(self._db.execute("SELECT status, COUNT(*) FROM tickets GROUP BY status").fetchall())
            face_values = self._db.execute(
                "SELECT status, face_value FROM tickets WHERE status IN (?, ?)", (REDEEMED, QUEUED)
            )
            earned = queued_wei = 0
            for status, face_value in face_values.fetchall():
                if status == REDEEMED:
                    earned += int(face_value)
                else:
                    queued_wei += int(face_value)
            received_row = self._db.execute("SELECT value FROM counters WHERE name = 'received'").fetchone()
            recent = self._db.execute(
                "SELECT sender, face_value, status, tx_hash, reason, done_at FROM tickets"
                " WHERE status != 'queued' ORDER BY done_at DESC LIMIT 10"
            ).fetchall()
        won = sum(counts.values())
        return {
            "received": max((received_row[0] if received_row else 0) + self._received, won),
            "won": won,
            "queued": counts.get(QUEUED, 0),
            "redeemed": counts.get(REDEEMED, 0),
            "failed": counts.get(FAILED, 0),
            "expired": counts.get(EXPIRED, 0),
            "earned_wei": earned,
            "queued_wei": queued_wei,
            "recent": [
                {
                    "sender": checksum(bytes(r[0])),
                    "face_value_wei": int(r[1]),
                    "status": r[2],
                    "tx_hash": r[3],
                    "reason": r[4],
                    "at": r[5],
                }
                for r in recent
            ],
        }


class Redeemer:
    """Redeems a :class:`RedemptionQueue` through ``client`` (whose wallet pays the gas), reading rounds, gas and
    senders' funds from ``view``. Run :meth:`run` as a task; :meth:`add` is what ``Recipient.on_winner`` calls."""

    def __init__(
        self,
        queue: RedemptionQueue,
        client: ChainClient,
        view: ChainView,
        max_gas_price: int = 0,
        *,
        poll_seconds: float = 2.0,
        base_backoff: float = 2.0,
    ) -> None:
        self.queue = queue
        self.client = client
        self.view = view
        self.max_gas_price = max_gas_price
        self.poll_seconds = poll_seconds
        self.base_backoff = base_backoff
        self.holding = ""  # why tickets wait right now ("" when nothing holds them), for status pages
        self._validity: int | None = None
        self._wake = asyncio.Event()

    def add(self, ticket: Ticket, sig: bytes, rand: int) -> None:
        """Queue a winning ticket (on disk before this returns) and wake the redemption loop."""
        if self.queue.add(ticket, sig, rand):
            self._wake.set()

    def stats(self) -> dict[str, Any]:
        return {**self.queue.stats(), "holding": self.holding}

    async def run(self) -> None:
        """Redeem until cancelled."""
        while True:
            try:
                await asyncio.to_thread(self.queue.flush)  # the received count: an fsync, kept off the loop
                await self.redeem_due()
            except ChainError as exc:
                log.warning("redemption: %s; retrying", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            self._wake.clear()

    async def redeem_due(self) -> int:
        """One pass over the queued tickets that are due; returns how many were redeemed."""
        due = self.queue.queued(due_before=time.time())
        if not due:
            self.holding = ""
            return 0
        if self._validity is None:
            self._validity = await self.client.ticket_validity_period()
        redeemed = 0
        blocked: set[bytes] = set()  # senders whose oldest ticket waits: their later ones wait behind it
        self.holding = ""
        for item in due:
            ticket = item.ticket
            current_round = self.view.current_round()
            if ticket.creation_round + self._validity <= current_round:
                self._finish(item, EXPIRED, reason=f"created in round {ticket.creation_round}, now {current_round}")
                continue
            if ticket.sender in blocked:
                continue
            if self.max_gas_price and self.view.gas_price() > self.max_gas_price:
                self.holding = f"gas price {self.view.gas_price()} wei is above -maxGasPrice {self.max_gas_price}"
                return redeemed
            if not await self._covered(ticket, current_round):
                blocked.add(ticket.sender)
                self.holding = f"waiting for {checksum(ticket.sender)} to fund its deposit"
                continue
            outcome = await self._redeem(item)
            if outcome == REDEEMED:
                redeemed += 1
            elif outcome is None:  # still queued: its sender's later tickets wait behind it, or all wait for gas
                if self.holding.startswith("gas"):
                    return redeemed
                blocked.add(ticket.sender)
        return redeemed

    async def _covered(self, ticket: Ticket, current_round: int) -> bool:
        info = await self.view.sender_info(ticket.sender)
        if info.withdraw_round and info.withdraw_round <= current_round:
            return False  # unlocked: the broker refuses its tickets
        claimed = await self.view.claimed_reserve(ticket.sender, ticket.recipient)
        claimable = max(0, info.reserve // self.view.transcoder_pool_size() - claimed)
        return info.deposit + claimable >= ticket.face_value

    async def _redeem(self, item: QueuedTicket) -> str | None:
        """Try one ticket: its recorded outcome, or None while it stays queued."""
        ticket = item.ticket
        try:
            tx_hash = await self.client.redeem_winning_ticket(ticket, item.sig, item.rand)
        except GasPriceTooHigh as exc:
            self.holding = f"gas price {exc.gas_price} wei is above -maxGasPrice {exc.max_gas_price}"
            return None
        except ChainRevert as exc:
            reason = exc.reason
            if reason == "ticket is used":
                # Anyone may submit a ticket and the fee still goes to its recipient: it has been paid (often by
                # our own transaction, mined just before a restart).
                self._finish(item, REDEEMED, tx_hash=exc.tx_hash, reason="already redeemed on chain")
                return REDEEMED
            if reason == "ticket is expired":
                self._finish(item, EXPIRED, reason=reason)
                return EXPIRED
            if reason in _TRANSIENT_REVERTS or reason in _UNFUNDED_REVERTS:
                self._retry(item, reason, count_attempt=False)
                return None
            self._finish(item, FAILED, tx_hash=exc.tx_hash, reason=reason)
            return FAILED
        except ChainError as exc:
            self._retry(item, str(exc))
            return None
        self._finish(item, REDEEMED, tx_hash=tx_hash)
        refresh = getattr(self.view, "refresh_sender", None)
        if refresh is not None:  # the watcher: the deposit just fell by the face value
            await refresh(ticket.sender)
        return REDEEMED

    def _retry(self, item: QueuedTicket, reason: str, *, count_attempt: bool = True) -> None:
        delay = min(self.base_backoff * 2 ** min(item.attempts, 16), _MAX_BACKOFF)
        log.info("ticket %d from %s: %s; retrying in %.0f s", item.id, checksum(item.ticket.sender), reason, delay)
        self.queue.retry_later(item.id, reason, delay, count_attempt=count_attempt)

    def _finish(self, item: QueuedTicket, status: str, *, tx_hash: str = "", reason: str = "") -> None:
        self.queue.finish(item.id, status, tx_hash=tx_hash, reason=reason)
        log.info(
            "ticket %d from %s (face value %d wei): %s%s%s",
            item.id,
            checksum(item.ticket.sender),
            item.ticket.face_value,
            status,
            f" in {tx_hash}" if tx_hash else "",
            f" ({reason})" if reason else "",
        )
