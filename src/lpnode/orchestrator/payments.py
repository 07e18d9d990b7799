"""The orchestrator as a payee: one object every paid route uses, on chain only.

Off-chain (the default) there is no :class:`OrchestratorPayments` at all: routes hold ``None`` and serve as
they always have, and nothing here is imported (web3 and the chain code stay unloaded). On chain,
:func:`open_payments` opens the chain (:func:`lpnode.payments.settings.open_chain`), loads the wallet (its
address receives the tickets and is ``OrchestratorInfo.address``), and builds a
:class:`~lpnode.payments.recipient.Recipient` whose secret lives only in this process's memory, a
:class:`~lpnode.payments.redemption.RedemptionQueue` at ``<data_dir>/tickets.sqlite3`` and a
:class:`~lpnode.payments.redemption.Redeemer` task; :meth:`OrchestratorPayments.close` ends them all.

What a route may rely on (every refusal is a :mod:`lpnode.errors` class with go-livepeer's words):

- :meth:`~OrchestratorPayments.process`: a ``Payment`` credited to (sender, manifest); an invalid one is
  :class:`BadRequestError` (400) with go's message (``TicketParams expired``, ``invalid ticket signature``,
  ...). Tickets before the first bad one are credited, as in go-livepeer; none after it.
- :meth:`~OrchestratorPayments.check_segment`: the ``SegData`` signed by the payment's sender (403 ``ErrSegSig``).
- :meth:`~OrchestratorPayments.require_balance`: 400 ``Insufficient balance`` when a priced job's balance is
  below one ticket's expected value.
- :meth:`~OrchestratorPayments.debit`: fees taken by units × price after the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from lpnode.errors import BadRequestError, ConfigError, ForbiddenError
from lpnode.logs import log_event
from lpnode.orchestrator.chain_duties import ChainDuties, DutyFlags
from lpnode.payments.balances import Balances
from lpnode.payments.chain_errors import ChainError
from lpnode.payments.recipient import PaymentError, Recipient, RecipientSettings
from lpnode.payments.redemption import QUEUE_FILE, Redeemer, RedemptionQueue
from lpnode.payments.settings import ChainNode, ChainSettings, open_chain
from lpnode.payments.signatures import checksum, segment_message, verify, verify_address_signature
from lpnode.protocol.lp_rpc_pb2 import OrchestratorRequest, Payment, PriceInfo, SegData, TicketParams

log = logging.getLogger("lpnode.orchestrator.payments")
ZERO_ADDRESS = bytes(20)
SEGMENT_SIG_ERROR = "ErrSegSig"
REQUEST_SIG_ERROR = "orchestrator req sig check failed"
INSUFFICIENT_BALANCE = "Insufficient balance"
BALANCE_IDLE_SECONDS = 3600.0
"""Balances untouched this long are forgotten (go-livepeer's ``Balances`` cleanup)."""


def sender_of(payment: Payment) -> bytes:
    """The 20-byte sender a payment names; the zero address when it names none (go's ``getPaymentSender``)."""
    sender = bytes(payment.sender)
    return sender[-20:].rjust(20, b"\x00") if sender else ZERO_ADDRESS


def price_of(info: PriceInfo) -> Fraction:
    """Wei per unit of a ``PriceInfo`` (0 when it has no units)."""
    return Fraction(info.pricePerUnit, info.pixelsPerUnit) if info.pixelsPerUnit > 0 else Fraction(0)


@dataclass(frozen=True)
class PaidJob:
    """A job whose payment was taken: who pays, which balance, at what price per unit."""

    sender: bytes
    manifest_id: str
    price: Fraction


@dataclass
class _Totals:
    credited: Fraction = Fraction(0)
    debited: Fraction = Fraction(0)
    refused: dict[str, int] = field(default_factory=dict)


class OrchestratorPayments:
    """Tickets received, balances kept and winners redeemed for one orchestrator on chain."""

    def __init__(
        self, chain: ChainNode, settings: ChainSettings, recipient: Recipient, balances: Balances,
        queue: RedemptionQueue, redeemer: Redeemer,
    ) -> None:  # fmt: skip
        self.chain = chain
        self.settings = settings
        self.recipient = recipient
        self.balances = balances
        self.queue = queue
        self.redeemer = redeemer
        self.address: bytes = chain.wallet.address
        self.totals = _Totals()
        self.duties: ChainDuties | None = None
        """Reward, round initialisation and the active-set warning (:mod:`lpnode.orchestrator.chain_duties`)."""
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def checksum_address(self) -> str:
        return checksum(self.address)

    @property
    def ticket_ev(self) -> Fraction:
        return Fraction(self.settings.ticket_ev)

    # --- life -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Run the redeemer and the balance sweep in the background until :meth:`close`."""
        self._tasks = [asyncio.ensure_future(self.redeemer.run()), asyncio.ensure_future(self._sweep())]
        if self.duties is not None:
            self._tasks.append(asyncio.ensure_future(self.duties.run()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(sqlite3.Error):
            self.queue.close()
        await self.chain.close()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(60)
            self.balances.sweep(BALANCE_IDLE_SECONDS)

    # --- GetOrchestrator --------------------------------------------------------------------------------

    def verify_request(self, request: OrchestratorRequest) -> bytes:
        """The gateway's address, once ``sig`` proves it (go's ``verifyOrchestratorReq``); ForbiddenError
        ``orchestrator req sig check failed`` otherwise."""
        address = bytes(request.address)[-20:].rjust(20, b"\x00") if request.address else ZERO_ADDRESS
        if not verify_address_signature(address, bytes(request.sig)):
            raise ForbiddenError(REQUEST_SIG_ERROR)
        return address

    def verify_address(self, address: bytes, sig_hex: str) -> bool:
        """Whether ``sig_hex`` (hex, ``0x`` optional) proves ``address`` (BYOC's ``Livepeer-Eth-Address``)."""
        try:
            sig = bytes.fromhex(sig_hex.strip().removeprefix("0x"))
        except ValueError:
            return False
        return verify_address_signature(address, sig)

    async def ticket_params(self, sender: bytes, price: PriceInfo) -> TicketParams:
        """Fresh ticket params for ``sender`` at ``price`` (``OrchestratorInfo.ticket_params``); BadRequestError
        ``insufficient sender reserve`` when the sender's reserve cannot back a ticket."""
        try:
            return await self.recipient.ticket_params(sender, price_of(price))
        except PaymentError as exc:
            self._refused(str(exc))
            raise BadRequestError(str(exc)) from None

    def overhead(self, sender: bytes) -> Fraction:
        """go-livepeer's ``-autoAdjustPrice`` factor ``1 + 1/txCostMultiplier`` (1 when it cannot be known)."""
        multiplier = self.recipient.tx_cost_multiplier(sender)
        return 1 + 1 / multiplier if multiplier > 0 else Fraction(1)

    # --- jobs -------------------------------------------------------------------------------------------

    def check_segment(self, segment: SegData, payment: Payment) -> None:
        """The segment credentials are signed by the payment's sender (403 ``ErrSegSig`` otherwise)."""
        if not verify(sender_of(payment), segment_message(segment), bytes(segment.sig)):
            self._refused(SEGMENT_SIG_ERROR)
            raise ForbiddenError(SEGMENT_SIG_ERROR)

    async def process(self, payment: Payment, manifest_id: str) -> Fraction:
        """Credit ``payment``'s valid tickets to (sender, ``manifest_id``); the EV credited. BadRequestError
        (400, go-livepeer's message) for the first invalid ticket, after crediting those before it."""
        before = self.balances.balance(sender_of(payment), manifest_id)
        if payment.HasField("ticket_params") and payment.ticket_sender_params:
            self.queue.note_received(len(payment.ticket_sender_params))
        try:
            credited = await self.recipient.process_payment(payment, manifest_id)
        except PaymentError as exc:
            self.totals.credited += self.balances.balance(sender_of(payment), manifest_id) - before
            self._refused(str(exc))
            log_event(
                log, "payment refused", logging.WARNING, sender=checksum(sender_of(payment)), manifest_id=manifest_id,
                problem=str(exc),
            )  # fmt: skip
            raise BadRequestError(str(exc)) from None
        self.totals.credited += credited
        return credited

    def job_price(self, payment: Payment, advertised: Fraction | None) -> Fraction:
        """The price a job is charged at: the price the payment names (go's ``DebitFees`` with the payment's
        expected price, tickets or none), never below this node's own price for the job (so a payment cannot name a
        price of 0)."""
        named = payment.HasField("expected_price") and payment.expected_price.pixelsPerUnit > 0
        expected = price_of(payment.expected_price) if named else Fraction(0)
        return max(expected, advertised or Fraction(0))

    async def take(
        self, payment: Payment, manifest_id: str, advertised: Fraction | None, message: str = INSUFFICIENT_BALANCE
    ) -> PaidJob:
        """Process ``payment`` for ``manifest_id`` and check the balance covers a priced job (go's steps 5 and 6);
        BadRequestError (400) otherwise. Debit the job with :meth:`settle` once it has been served."""
        await self.process(payment, manifest_id)
        job = PaidJob(sender_of(payment), manifest_id, self.job_price(payment, advertised))
        self.require_balance(job.sender, manifest_id, job.price, message)
        return job

    def settle(self, job: PaidJob, units: int | Fraction) -> Fraction:
        """Debit a served job by ``units`` at its price; the balance left."""
        return self.debit(job.sender, job.manifest_id, job.price, units)

    def require_balance(
        self, sender: bytes, manifest_id: str, price: Fraction, message: str = INSUFFICIENT_BALANCE
    ) -> None:
        """400 ``Insufficient balance`` when ``price`` > 0 and the balance is below one ticket's EV."""
        if price > 0 and not self.recipient.sufficient_balance(sender, manifest_id):
            self._refused(message)
            raise BadRequestError(message)

    def debit(self, sender: bytes, manifest_id: str, price: Fraction, units: int | Fraction) -> Fraction:
        """Take ``price × units`` off (sender, manifest); the new balance (negative: the sender owes)."""
        amount = price * units
        if amount <= 0:
            return self.balances.balance(sender, manifest_id)
        self.totals.debited += amount
        return self.balances.debit(sender, manifest_id, amount)

    def balance(self, sender: bytes, manifest_id: str) -> Fraction:
        return self.balances.balance(sender, manifest_id)

    def _refused(self, message: str) -> None:
        reason = message.split(":", 1)[0][:60]
        self.totals.refused[reason] = self.totals.refused.get(reason, 0) + 1

    # --- views ------------------------------------------------------------------------------------------

    def ticket_stats(self) -> dict[str, Any]:
        """Tickets received, won, queued, redeemed, failed, expired and wei earned (the redemption queue's,
        so they survive restarts; ``lpnode tickets`` reads the same)."""
        return dict(self.redeemer.stats())

    def status(self) -> dict[str, Any]:
        """The ``payments`` part of ``/status``: wallet, chain, earnings and the balances of senders seen."""
        stats = self.ticket_stats()
        return {
            "network": self.settings.network,
            "chain_url": _without_secrets(self.settings.eth_url),
            "address": self.checksum_address,
            "active": self._active(),
            "ticket_ev": str(self.ticket_ev),
            "tickets": stats,
            "earned_wei": str(stats.get("earned_wei", 0)),
            "credited_wei": str(int(self.totals.credited)),
            "debited_wei": str(int(self.totals.debited)),
            "refused": dict(self.totals.refused),
            "balances": self.balances.snapshot(),
            "chain": self.chain.watcher.snapshot(),
            "price_feed": self.chain.price_feed.snapshot() if self.chain.price_feed is not None else None,
            **({"operator": self.duties.snapshot()} if self.duties is not None else {}),
        }

    def _active(self) -> bool:
        return bool(self.chain.watcher.is_active(self.address))

    def wei_per(self, currency: str) -> Fraction:
        """Wei per unit of ``currency`` from the price feed (``-priceFeedAddr``); ChainError without a rate."""
        feed = self.chain.price_feed
        if feed is None or feed.currency.lower() != currency.lower():
            raise ChainError(f"no price feed for {currency}; give -priceFeedAddr (an ETH/{currency} aggregator)")
        return feed.wei_per_unit()

    def collector(self) -> Collector:
        """Prometheus families for ``/metrics``: tickets and wei, read at scrape time."""
        return _PaymentsCollector(self)


class _PaymentsCollector(Collector):
    def __init__(self, payments: OrchestratorPayments) -> None:
        self._payments = payments

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        p = self._payments
        stats = p.ticket_stats()
        tickets = CounterMetricFamily(
            "lpnode_orchestrator_tickets", "Tickets received, winning, redeemed and failed.", labels=["outcome"]
        )
        for outcome, key in (("received", "received"), ("winning", "won"), ("redeemed", "redeemed"),
                             ("failed", "failed"), ("expired", "expired")):  # fmt: skip
            tickets.add_metric([outcome], float(stats.get(key, 0) or 0))
        queued = GaugeMetricFamily("lpnode_orchestrator_tickets_queued", "Winning tickets waiting for redemption.")
        queued.add_metric([], float(stats.get("queued", 0) or 0))
        wei = CounterMetricFamily("lpnode_orchestrator_payment_wei", "Wei credited by tickets and debited by fees.",
                                  labels=["direction"])  # fmt: skip
        wei.add_metric(["credited"], float(p.totals.credited))
        wei.add_metric(["debited"], float(p.totals.debited))
        earned = CounterMetricFamily("lpnode_orchestrator_earned_wei", "Face value of the tickets redeemed on chain.")
        earned.add_metric([], float(stats.get("earned_wei", 0) or 0))
        refused = CounterMetricFamily("lpnode_orchestrator_payments_refused", "Payments refused, by reason.",
                                      labels=["reason"])  # fmt: skip
        for reason, count in sorted(p.totals.refused.items()):
            refused.add_metric([reason], count)
        yield from (tickets, queued, wei, earned, refused)


async def open_payments(
    settings: ChainSettings, data_dir: Path, service_url: str = "", duties: DutyFlags | None = None
) -> OrchestratorPayments:
    """Open the chain and everything a paid orchestrator needs; ConfigError (one line) when the chain, the
    keystore or the password is wrong. A node not active on chain gets a warning, not a refusal.

    With ``service_url`` (the node's ``-serviceAddr``) it also does its duties on chain (``duties``, by default
    go-livepeer's: reward each round): ConfigError when the service URI on chain is another one."""
    chain = await open_chain(settings, data_dir)
    try:
        address = chain.wallet.address
        balances = Balances()
        queue = RedemptionQueue(data_dir / QUEUE_FILE)
        redeemer = Redeemer(queue, chain.client, chain.watcher, max_gas_price=settings.max_gas_price)

        def pending(sender: bytes) -> int:
            """Face values of ``sender``'s winners still queued: they count against its max float."""
            return sum(q.ticket.face_value for q in queue.queued() if q.ticket.sender == sender)

        recipient = Recipient(
            address,
            chain.watcher,
            RecipientSettings(
                ticket_ev=Fraction(settings.ticket_ev),
                max_face_value=settings.max_face_value,
                redeem_gas=settings.redeem_gas,
            ),
            secret=secrets.token_bytes(32),  # never stored: params from before a restart are refused
            on_winner=redeemer.add,  # on disk before the payment is answered
            balances=balances,
            pending=pending,
        )
        chain.watcher.is_active(address)  # watched from now on, so payments can be accepted
        await chain.watcher.refresh()
        active = chain.watcher.is_active(address)
    except ChainError as exc:
        await chain.close()
        raise ConfigError(f"-network {settings.network}: {exc}") from None
    except BaseException:
        await chain.close()
        raise
    payments = OrchestratorPayments(chain, settings, recipient, balances, queue, redeemer)
    if service_url:
        payments.duties = ChainDuties(chain, service_url, duties or DutyFlags())
        try:
            await payments.duties.check_service_uri()
        except BaseException:
            await payments.close()
            raise
    if not active:
        log_event(
            log, "this orchestrator is not active on chain: gateways' payments will be refused", logging.WARNING,
            address=payments.checksum_address, round=chain.watcher.last_initialized_round(),
            fix="bond and activate the address (go-livepeer answers: orchestrator is inactive)",
        )  # fmt: skip
    log_event(log, "payments on chain", network=settings.network, address=payments.checksum_address)
    return payments


def _without_secrets(url: str) -> str:
    """A chain URL fit for a status page: no user info, path or query (providers put API keys there)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}" if parts.hostname else ""
