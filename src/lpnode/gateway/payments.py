"""The gateway pays orchestrators with tickets (on chain only; off-chain the gateway holds ``None`` instead).

:class:`GatewayPayments` holds the wallet's :class:`~lpnode.payments.sender.Sender`, its credit with each
orchestrator (:class:`~lpnode.payments.sender.SenderBalances`, per orchestrator address and manifest, the key
the orchestrator keeps its balance under) and one :class:`PaidSession` per (orchestrator, manifest): the
``OrchestratorInfo`` whose ticket params and price the tickets use, and the price the session started at.

A payment is staged, then settled or restored (go-livepeer's balance updates, research §9.6)::

    staged = await payments.pay(session, fee)      # the Livepeer-Payment value; credit reserved
    ... send the job with staged.header ...
    payments.settle(staged)   # it served: credit += tickets × EV - fee
    payments.restore(staged)  # it failed: the credit reserved is put back

What a caller may rely on:

- :meth:`GatewayPayments.pay` raises :class:`~lpnode.errors.UnavailableError` (503) when the gateway's own
  funds cannot pay anyone (an empty deposit or reserve, or an unlock under way): every orchestrator would
  refuse, so the job ends there with a line saying what to fund. It raises :class:`SessionRefused` when this
  orchestrator's session cannot be paid (its ticket params expired, its EV or face value is past the gateway's
  limits, its price more than doubled since the session began): the caller moves on, or fetches fresh params
  when :attr:`SessionRefused.refresh` is set.
- Amounts are wei: fees and EVs as ``Fraction``, counts as ``int``. No key ever reaches a log or an error.
"""

from __future__ import annotations

import base64
import logging
import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from lpnode.errors import UnavailableError
from lpnode.logs import log_event
from lpnode.payments import signatures
from lpnode.payments.recipient import PaymentError
from lpnode.payments.sender import Sender, SenderBalances, SenderError, SenderSettings, check_price, encode_payment
from lpnode.protocol.capabilities import capability_for_pipeline
from lpnode.protocol.job_hop import encode_segment
from lpnode.protocol.lp_rpc_pb2 import (
    AuthToken,
    Capabilities,
    OrchestratorInfo,
    OrchestratorRequest,
    Payment,
    PriceInfo,
    SegData,
    TicketParams,
)

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from lpnode.payments.chain_view import ChainView
    from lpnode.payments.keystore import Wallet
    from lpnode.payments.settings import ChainNode, ChainSettings

log = logging.getLogger("lpnode.gateway.payments")

LIVE_UNITS_PER_SECOND = 1280 * 720 * 30
"""go-livepeer bills live video as 720p at 30 fps, whatever the stream's real size: 27,648,000 units a second."""
LIVE_INITIAL_SECONDS = 60
"""A live start pays for this many seconds up front."""
BYOC_BALANCE_SECONDS = 120
"""A BYOC job sends no tickets while the orchestrator holds this many seconds of credit."""
BYOC_MAX_TICKETS = 600
MAX_SESSIONS = 10_000
_EMPTY_HASH = signatures.keccak(b"")
EXPIRED = "ticketparams expired"
"""go-livepeer's ``TicketParams expired``, lower-cased as its gateway matches it."""


class SessionRefused(Exception):
    """This orchestrator's session cannot be paid now; ``str()`` says why. ``refresh``: its ticket params are
    stale and fetching new ones may cure it."""

    def __init__(self, reason: str, *, refresh: bool = False) -> None:
        super().__init__(reason)
        self.refresh = refresh


@dataclass
class PaidSession:
    """The gateway's session with one orchestrator for one manifest: the info its tickets use."""

    url: str
    manifest_id: str
    info: OrchestratorInfo
    session_id: str  # the Sender's session ("" when the orchestrator gave no ticket params)
    initial_price: Fraction

    @property
    def recipient(self) -> bytes:
        return bytes(self.info.ticket_params.recipient) or bytes(self.info.address)

    @property
    def price(self) -> Fraction:
        return price_of(self.info.price_info)


@dataclass
class Staged:
    """One payment on its way: the ``Livepeer-Payment`` value and the credit reserved for it."""

    header: str
    key: tuple[bytes, str]
    staged: Fraction
    num_tickets: int
    ev: Fraction
    fee: Fraction
    url: str
    done: bool = False


@dataclass
class Sent:
    """What the gateway sent one orchestrator: payments, tickets and their expected value (wei)."""

    payments: int = 0
    tickets: int = 0
    ev: Fraction = field(default_factory=Fraction)
    failures: int = 0


def price_of(price: PriceInfo) -> Fraction:
    """Wei per unit of a ``PriceInfo`` (0 when it has no ``pixelsPerUnit``)."""
    return Fraction(price.pricePerUnit, price.pixelsPerUnit) if price.pixelsPerUnit > 0 else Fraction(0)


def manifest_for(pipeline: str, model_id: str) -> str:
    """The manifest a batch job's payments are credited to: ``<capability>_<model>``, as its segment says."""
    return f"{int(capability_for_pipeline(pipeline))}_{model_id}"


def byoc_tickets(price: Fraction, balance: Fraction, timeout_seconds: float, ev: Fraction) -> int:
    """Tickets a BYOC job carries (go-livepeer's BYOC gateway): none while ``balance`` covers
    :data:`BYOC_BALANCE_SECONDS` at ``price``; else enough EV for ``timeout_seconds``, at most
    :data:`BYOC_MAX_TICKETS`."""
    if price <= 0 or balance >= BYOC_BALANCE_SECONDS * price:
        return 0
    if ev <= 0:
        return 0
    return min(BYOC_MAX_TICKETS, math.ceil(price * Fraction(timeout_seconds) / ev))


class GatewayPayments:
    """The gateway's wallet paying orchestrators (see the module docstring)."""

    def __init__(self, wallet: Wallet, chain: ChainView, settings: SenderSettings, *, node: ChainNode | None = None):
        self.wallet = wallet
        self.chain = chain
        self.sender = Sender(wallet, chain, settings)
        self.balances = SenderBalances()
        self.node = node
        self.sessions: OrderedDict[tuple[str, str], PaidSession] = OrderedDict()
        self.sent: dict[str, Sent] = {}
        self._credit_keys: set[tuple[bytes, str]] = set()
        self._address_sig = signatures.address_signature(wallet.key)
        self.deposit = 0
        self.reserve = 0
        self.withdraw_round = 0

    @classmethod
    async def open(cls, settings: ChainSettings, node: ChainNode) -> GatewayPayments:
        """Payments over an opened chain: reads the deposit and reserve and warns when they are empty (the
        gateway still starts; each job then fails with a 503 naming the empty deposit)."""
        sender_settings = SenderSettings(
            max_ticket_ev=settings.max_ticket_ev,
            max_total_ev=settings.max_total_ev,
            deposit_multiplier=settings.deposit_multiplier,
        )
        payments = cls(node.wallet, node.watcher, sender_settings, node=node)
        problem = await payments.funds_problem()
        if problem:
            log_event(
                log, "gateway cannot pay yet", logging.WARNING, address=payments.checksum_address, problem=problem
            )
        else:
            log_event(
                log, "gateway pays from", address=payments.checksum_address, deposit_wei=payments.deposit,
                reserve_wei=payments.reserve,
            )  # fmt: skip
        return payments

    async def close(self) -> None:
        if self.node is not None:
            await self.node.close()

    @property
    def address(self) -> bytes:
        return self.wallet.address

    @property
    def checksum_address(self) -> str:
        return signatures.checksum(self.wallet.address)

    # --- what orchestrators are told -------------------------------------------------------------------------

    def orchestrator_request(self, capabilities: Capabilities | None = None) -> OrchestratorRequest:
        """``GetOrchestrator``'s request from this gateway: its address and signature (the orchestrator checks
        them on chain), with ``capabilities`` when a job's session asks for one model's price."""
        request = OrchestratorRequest(address=self.address, sig=self._address_sig, ignoreCapacityCheck=True)
        if capabilities is not None:
            request.capabilities.CopyFrom(capabilities)
        return request

    def address_header(self) -> dict[str, str]:
        """BYOC's ``JobSender``: ``{"addr", "sig"}`` with the address signed as ``GetOrchestrator`` signs it."""
        return {"addr": self.checksum_address, "sig": "0x" + self._address_sig.hex()}

    def sign(self, message: bytes) -> bytes:
        """This wallet's personal-sign signature of ``message`` (65 bytes)."""
        return signatures.sign(self.wallet.key, message)

    def segment(self, token: AuthToken, pipeline: str, model_id: str, manifest_id: str = "") -> str:
        """The ``Livepeer-Segment`` of a paid hop: the job hop's segment (``manifest_id`` in place of
        ``<capability>_<model>`` when given, as live payments name the stream's), with ``hash = keccak256("")``
        and signed by this wallet (orchestrators on chain check the signature)."""
        seg = SegData()
        seg.ParseFromString(base64.b64decode(encode_segment(token, pipeline, model_id)))
        if manifest_id:
            seg.manifestId = manifest_id.encode()
        seg.hash = _EMPTY_HASH
        seg.sig = signatures.sign(self.wallet.key, signatures.segment_message(seg))
        return base64.b64encode(seg.SerializeToString()).decode()

    def params_expired(self, info: OrchestratorInfo) -> bool:
        """Whether ``info``'s ticket params are too close to expiry to pay with (go: at most one block left)."""
        if not info.HasField("ticket_params") or not info.ticket_params.expiration_block:
            return False
        expiration = int.from_bytes(info.ticket_params.expiration_block, "big")
        return expiration - self.chain.last_seen_l1_block() <= 1

    # --- funds -----------------------------------------------------------------------------------------------

    async def funds_problem(self) -> str:
        """Why this gateway cannot pay anyone now ("" when it can), from the deposit and reserve on chain."""
        info = await self.chain.sender_info(self.address)
        self.deposit, self.reserve, self.withdraw_round = info.deposit, info.reserve, info.withdraw_round
        fund = "fund it with `lpnode deposit --deposit WEI --reserve WEI`"
        if info.deposit <= 0 and info.reserve <= 0:
            return f"the gateway's deposit and reserve ({self.checksum_address}) are empty; {fund}"
        if info.deposit <= 0:
            return f"the gateway's deposit ({self.checksum_address}) is empty; {fund}"
        if info.reserve <= 0:
            return f"the gateway's reserve ({self.checksum_address}) is empty; {fund}"
        if info.withdraw_round and info.withdraw_round <= self.chain.last_initialized_round() + 1:
            return (
                f"the gateway's deposit ({self.checksum_address}) is unlocking for withdrawal; "
                "run `lpnode deposit cancel-unlock` to pay again"
            )
        return ""

    async def require_funds(self) -> None:
        """:class:`UnavailableError` (503) naming what to fund when this gateway cannot pay anyone now."""
        problem = await self.funds_problem()
        if problem:
            raise UnavailableError(problem)

    # --- sessions --------------------------------------------------------------------------------------------

    def session(self, url: str, manifest_id: str, info: OrchestratorInfo) -> PaidSession:
        """The session with ``url`` for ``manifest_id`` paying with ``info``'s ticket params and price. New
        ticket params start a new ticket session (nonces from 0); the session's first price is kept."""
        key = (url, manifest_id)
        held = self.sessions.get(key)
        rand_hash = bytes(info.ticket_params.recipient_rand_hash)
        if held is not None and bytes(held.info.ticket_params.recipient_rand_hash) == rand_hash:
            held.info = info
            self.sessions.move_to_end(key)
            return held
        session_id = self.sender.start_session(info) if rand_hash else ""
        initial = held.initial_price if held is not None else price_of(info.price_info)
        fresh = PaidSession(url, manifest_id, info, session_id, initial)
        self.sessions[key] = fresh
        self.sessions.move_to_end(key)
        while len(self.sessions) > MAX_SESSIONS:
            self.sessions.popitem(last=False)
        return fresh

    def forget(self, url: str) -> None:
        """Drop every session with ``url`` (its params or credentials were refused); its credit stays."""
        for key in [k for k in self.sessions if k[0] == url]:
            del self.sessions[key]

    def validate_price(self, session: PaidSession) -> None:
        """go's ``validatePrice``: the orchestrator must name a price, and it may not exceed twice the session's
        first price."""
        try:
            check_price(session.initial_price or None, session.info.price_info)
        except SenderError as exc:
            raise SessionRefused(str(exc)) from None

    # --- paying ----------------------------------------------------------------------------------------------

    async def pay(self, session: PaidSession, fee: Fraction) -> Staged:
        """Stage a payment of ``fee`` wei to ``session``'s orchestrator: as many tickets as the fee needs beyond
        the credit already there (at least one ticket's EV). See the module docstring for what it raises."""
        ev = self.sender.expected_value(session.session_id) if session.session_id else Fraction(0)
        key = (session.recipient, session.manifest_id)
        if ev <= 0:  # the orchestrator asks nothing (price 0): the payment only names the sender and price
            return await self._send(session, key, 0, Fraction(0), Fraction(0), fee)
        self._credit_keys.add(key)
        num_tickets, staged = self.balances.stage(key, fee, ev)
        return await self._send(session, key, num_tickets, staged, ev, fee)

    def forget_credit(self, key: tuple[bytes, str]) -> None:
        """Drop the credit kept for ``key`` (a live stream's, once it ended): a stream's manifest id is never
        paid again, and its record would otherwise stay for the life of the gateway."""
        self._credit_keys.discard(key)
        self.balances.clear(key)

    async def pay_tickets(self, session: PaidSession, num_tickets: int) -> Staged:
        """A payment of exactly ``num_tickets`` tickets (BYOC sizes its own), outside the staged credit."""
        ev = self.sender.expected_value(session.session_id) if session.session_id and num_tickets else Fraction(0)
        return await self._send(session, (session.recipient, session.manifest_id), num_tickets, None, ev, Fraction(0))

    async def _send(
        self,
        session: PaidSession,
        key: tuple[bytes, str],
        num_tickets: int,
        staged: Fraction | None,
        ev: Fraction,
        fee: Fraction,
    ) -> Staged:
        try:
            if num_tickets:
                await self.require_funds()
            self.validate_price(session)
            if num_tickets and self.params_expired(session.info):
                raise SessionRefused("TicketParams expired", refresh=True)
            if num_tickets:
                try:
                    payment = await self.sender.create_payment(session.session_id, num_tickets, session.info.price_info)
                except (PaymentError, SenderError) as exc:  # in go-livepeer's words
                    raise _refused(exc) from None
            else:
                payment = Payment(sender=self.address, expected_price=session.info.price_info)
        except BaseException:
            if staged is not None:
                self.balances.restore(key, staged)
            self._count(session.url).failures += 1
            raise
        sent = self._count(session.url)
        sent.payments += 1
        sent.tickets += num_tickets
        sent.ev += ev * num_tickets
        # A payment outside the staged credit (``staged`` None) has nothing to settle or restore.
        return Staged(
            encode_payment(payment), key, staged or Fraction(0), num_tickets, ev, fee, session.url, done=staged is None
        )

    def settle(self, staged: Staged) -> None:
        """The job was served: the credit becomes what was there + tickets × EV - fee (may go negative)."""
        if staged.done:
            return
        staged.done = True
        if staged.ev > 0:
            self.balances.settle(staged.key, staged.staged, staged.num_tickets, staged.ev, staged.fee)

    def restore(self, staged: Staged) -> None:
        """The job failed: the credit reserved for it is put back (the tickets sent are not counted)."""
        if staged.done:
            return
        staged.done = True
        if staged.ev > 0:
            self.balances.restore(staged.key, staged.staged)

    def drop(self, staged: Staged) -> None:
        """The orchestrator said our credit is short (``Insufficient balance``): the credit reserved for the job
        is given up, so the next payment carries tickets for the whole fee."""
        staged.done = True

    def _count(self, url: str) -> Sent:
        return self.sent.setdefault(url, Sent())

    # --- status ----------------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """For status pages: the address, funds (wei, as decimal strings), what each orchestrator was sent and the
        credit held with it per manifest (whole wei, rounded down)."""
        return {
            "address": self.checksum_address,
            "deposit_wei": str(self.deposit),
            "reserve_wei": str(self.reserve),
            "unlocking": bool(self.withdraw_round),
            "orchestrators": [
                {
                    "url": url,
                    "payments": s.payments,
                    "tickets": s.tickets,
                    "ev_wei": str(math.floor(s.ev)),
                    "failures": s.failures,
                }
                for url, s in sorted(self.sent.items())
            ],
            "credits": [
                {
                    "recipient": signatures.checksum(recipient),
                    "manifest": manifest,
                    # Rounded down to a wei, as the orchestrator shows its balance for us.
                    "credit_wei": str(math.floor(self.balances.balance((recipient, manifest)))),
                }
                for recipient, manifest in sorted(self._credit_keys)
            ],
        }

    def byoc_session(self, url: str, capability: str, params: TicketParams, price: PriceInfo) -> PaidSession:
        """A BYOC job token's session: its ticket params and price, credited to the capability's manifest."""
        info = OrchestratorInfo(ticket_params=params, price_info=price, address=bytes(params.recipient))
        return self.session(url, capability, info)


class PaymentsCollector:
    """``/metrics`` of the gateway's payments, read at each scrape: tickets, their EV and payments per
    orchestrator, failed payments, and the deposit and reserve last read."""

    def __init__(self, payments: GatewayPayments) -> None:
        self.payments = payments

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        p = self.payments
        tickets = CounterMetricFamily(
            "lpnode_gateway_tickets_sent", "Tickets sent, per orchestrator.", labels=["orchestrator"]
        )
        ev = CounterMetricFamily(
            "lpnode_gateway_ticket_ev_sent_wei", "Expected value of the tickets sent (wei).", labels=["orchestrator"]
        )
        sent = CounterMetricFamily(
            "lpnode_gateway_payments", "Payments sent, per orchestrator.", labels=["orchestrator"]
        )
        failed = CounterMetricFamily(
            "lpnode_gateway_payment_failures", "Payments that could not be made.", labels=["orchestrator"]
        )
        for url, counts in p.sent.items():
            tickets.add_metric([url], counts.tickets)
            ev.add_metric([url], float(counts.ev))
            sent.add_metric([url], counts.payments)
            failed.add_metric([url], counts.failures)
        yield from (tickets, ev, sent, failed)
        yield GaugeMetricFamily(
            "lpnode_gateway_deposit_wei", "The gateway's deposit, last read (wei).", value=p.deposit
        )
        yield GaugeMetricFamily(
            "lpnode_gateway_reserve_wei", "The gateway's reserve, last read (wei).", value=p.reserve
        )


def _refused(exc: Exception) -> SessionRefused:
    text = str(exc) or type(exc).__name__
    return SessionRefused(text, refresh=EXPIRED in text.lower())
