"""The orchestrator's side of ticket payments (go-livepeer's ``pm.recipient`` and ``core.orchestrator``'s
``ProcessPayment``, ``SufficientBalance`` and ``DebitFees``).

Ticket params (:meth:`Recipient.ticket_params`, research go-livepeer.md §9.2): the face value covers
``redeemGas × gasPrice × txCostMultiplier`` (or ``100 × EV`` when that is less than the EV), capped by the sender's
max float and ``-maxFaceValue``; the win probability gives each ticket the configured EV; the params expire 40 L1
blocks on; ``recipientRand`` is an HMAC-SHA256 of the params under a 32-byte secret that lives in this process
only. Nothing is stored per ticket: a ticket's rand is recomputed from the ticket and the payment's
``expected_price``, so a sender must echo the advertised ``PriceInfo`` exactly.

Receiving (:meth:`Recipient.process_payment`) runs go-livepeer's checks in its order and words; the first failure
is raised as :class:`PaymentError` after the valid tickets before it were credited. Fatal failures (sender
unlocking, wrong recipient, null sender, wrong rand) stop at once; the others (``invalid ticket signature``,
a replayed nonce, ``TicketParams expired``) let later tickets be checked, won and recorded, but not credited.

Price of a session: the first payment for (sender, manifest) pins its ``expected_price``. go-livepeer binds the
price into ``recipientRand`` (a payment naming another price than its params were made for fails with
``invalid recipientRand for ticket recipientRandHash``) and its gateways drop a session whose orchestrator price
more than doubled (``priceIncreaseThreshold = 2``). The recipient applies the same limit: a later payment whose
expected price exceeds twice the pinned price is refused, naming both prices; a lower price is accepted (the
session keeps being charged at the pinned price by callers that debit with :meth:`Balances.fixed_price`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

from lpnode.logs import log_event
from lpnode.payments.balances import Balances
from lpnode.payments.chain_view import ChainView, SenderInfo
from lpnode.payments.signatures import checksum, verify
from lpnode.payments.ticket import Ticket, aux_data, is_winning, rand_hash, tickets_in, win_probability
from lpnode.protocol.lp_rpc_pb2 import Payment, PriceInfo, TicketExpirationParams, TicketParams

log = logging.getLogger(__name__)

#: L1 blocks ticket params stay valid (go's ``paramsExpirationBlock``).
PARAMS_EXPIRATION_BLOCKS = 40
#: Distinct nonces accepted per ``recipientRand`` (go's ``maxSenderNonces``).
MAX_SENDER_NONCES = 600
#: Face value = EV × this when the transaction cost would give less than the EV (go's ``evMultiplier``).
EV_MULTIPLIER = 100
#: The gas price (wei) a face value must cover when the current one is higher (go's ``avgGasPrice``, 3 gwei).
AVG_GAS_PRICE = 3_000_000_000
#: A sender's pending winnings are ignored in its max float while deposit / pending is at least this.
MIN_DEPOSIT_PENDING_RATIO = 3
#: A session's price may rise to this multiple of its first price (go's ``priceIncreaseThreshold``).
PRICE_INCREASE_THRESHOLD = 2

INSUFFICIENT_RESERVE = "insufficient sender reserve"
PARAMS_EXPIRED = "TicketParams expired"
INVALID_SIGNATURE = "invalid ticket signature"


class PaymentError(Exception):
    """A payment or ticket refused; ``str()`` is go-livepeer's message (orchestrators answer 400 with it).
    ``fatal`` says whether the tickets after it were still examined."""

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


@dataclass
class RecipientSettings:
    """``ticket_ev`` (``-ticketEV``, wei), ``max_face_value`` (``-maxFaceValue``, 0: none), ``redeem_gas`` (gas one
    redemption costs: 1,200,000 on Arbitrum), ``tx_cost_multiplier`` (face value ÷ redemption cost: 100)."""

    ticket_ev: Fraction
    max_face_value: int = 0
    redeem_gas: int = 1_200_000
    tx_cost_multiplier: int = 100
    params_expiration_blocks: int = PARAMS_EXPIRATION_BLOCKS
    max_sender_nonces: int = MAX_SENDER_NONCES


@dataclass
class RecipientCounters:
    """Totals since start, for metrics: tickets received and won, EV credited (wei), refusals by message."""

    received: int = 0
    won: int = 0
    credited: Fraction = field(default_factory=Fraction)
    refused: int = 0


@dataclass
class _Nonces:
    expiration_block: int
    seen: set[int] = field(default_factory=set)


def _minimal(value: int) -> bytes:
    """go's ``big.Int.Bytes()``: the magnitude, big-endian, no leading zeros (0 gives b"")."""
    value = abs(value)
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _no_winner(ticket: Ticket, sig: bytes, rand: int) -> None:
    return None


class Recipient:
    """Makes ticket params and receives tickets for ``address``. ``pending`` (optional) gives the face values of a
    sender's winning tickets not yet redeemed, in wei; without it the recipient counts the winners it saw and
    callers report redemptions with :meth:`settle_pending`."""

    def __init__(
        self,
        address: bytes,
        chain: ChainView,
        settings: RecipientSettings,
        *,
        secret: bytes | None = None,
        on_winner: Callable[[Ticket, bytes, int], None] = _no_winner,
        balances: Balances | None = None,
        pending: Callable[[bytes], int] | None = None,
    ) -> None:
        if secret is not None and len(secret) != 32:
            raise ValueError("the recipient secret must be 32 bytes")
        self.address = address
        self.chain = chain
        self.settings = settings
        self.balances = balances if balances is not None else Balances()
        self.counters = RecipientCounters()
        self._secret = secret if secret is not None else os.urandom(32)
        self._on_winner = on_winner
        self._pending_source = pending
        self._pending: dict[bytes, int] = {}
        self._nonces: dict[int, _Nonces] = {}
        self._nonces_swept_at = -1
        self._face_values: dict[bytes, int] = {}  # the last face value offered to each sender

    # --- ticket params --------------------------------------------------------------------------------

    @property
    def ticket_ev(self) -> Fraction:
        """The EV each ticket must carry (``-ticketEV``)."""
        return Fraction(self.settings.ticket_ev)

    def tx_cost(self, gas_price: int | None = None) -> int:
        """What redeeming one ticket costs now (or at ``gas_price``), in wei."""
        return self.settings.redeem_gas * (self.chain.gas_price() if gas_price is None else gas_price)

    async def max_float(self, sender: bytes) -> int:
        """What ``sender``'s reserve guarantees this recipient (go's ``SenderMonitor.MaxFloat``): its share of the
        reserve (``reserve / poolSize − claimed``), less its winning tickets not yet redeemed unless its deposit
        covers them ``MIN_DEPOSIT_PENDING_RATIO`` times."""
        info = await self.chain.sender_info(sender)
        claimed = await self.chain.claimed_reserve(sender, self.address)
        pool_size = self.chain.transcoder_pool_size()
        allocation = 0 if pool_size <= 0 else (info.reserve + info.claimed_in_current_round) // pool_size - claimed
        pending = self.pending(sender)
        if pending > 0 and Fraction(info.deposit, pending) >= MIN_DEPOSIT_PENDING_RATIO:
            return allocation
        return allocation - pending

    async def face_value(self, sender: bytes) -> int:
        """The face value to offer ``sender`` (go's ``recipient.faceValue``); PaymentError ``insufficient sender
        reserve`` when no acceptable one exists."""
        ev = self.ticket_ev
        tx_cost = self.tx_cost()
        value = min(self._face_value_before_float(tx_cost), await self.max_float(sender))
        if value < ev or (value < tx_cost and value < self.tx_cost(AVG_GAS_PRICE)):
            raise PaymentError(INSUFFICIENT_RESERVE)
        self._face_values[sender] = value
        return value

    def _face_value_before_float(self, tx_cost: int) -> int:
        """The face value the gas price, ``-ticketEV`` and ``-maxFaceValue`` give, before the sender's max float."""
        value = tx_cost * self.settings.tx_cost_multiplier
        if value < self.ticket_ev:
            value = math.ceil(self.ticket_ev * EV_MULTIPLIER)
        if 0 < self.settings.max_face_value < value:
            value = self.settings.max_face_value
        return value

    def tx_cost_multiplier(self, sender: bytes) -> Fraction:
        """Face value ÷ redemption cost for ``sender`` (go's ``TxCostMultiplier``, used by ``-autoAdjustPrice``),
        from the face value last offered to it; 0 when gas is free. Before any was offered, the face value the
        params will carry: a price quoted with the first params must already cover them (a ``-maxFaceValue``
        below 100 redemptions' cost raises it), not jump at the second quote."""
        tx_cost = self.tx_cost()
        if tx_cost <= 0:
            return Fraction(0)
        offered = self._face_values.get(sender)
        if offered is None:
            offered = self._face_value_before_float(tx_cost)
        return Fraction(offered, tx_cost)

    def expiration_params(self) -> tuple[int, bytes]:
        """The creation round and its block hash for new tickets. The view pairs them (go falls back on the round
        before when the last one's hash is still zero, and so does the chain watcher)."""
        return self.chain.last_initialized_round(), self.chain.round_block_hash()

    async def ticket_params(self, sender: bytes, price: Fraction) -> TicketParams:
        """Fresh params for ``sender`` paying ``price`` wei per unit (``OrchestratorInfo.ticket_params``). A price of
        0 gives face value and win probability 0. PaymentError ``insufficient sender reserve`` when the sender's
        reserve cannot back a ticket."""
        price = Fraction(price)
        seed = int.from_bytes(os.urandom(32), "big")
        face_value = await self.face_value(sender) if price > 0 else 0
        win_prob = win_probability(self.ticket_ev, face_value)
        expiration_block = self.chain.last_seen_l1_block() + self.settings.params_expiration_blocks
        creation_round, block_hash = self.expiration_params()
        rand = self._rand(seed, sender, face_value, win_prob, expiration_block, price, creation_round, block_hash)
        return TicketParams(
            recipient=self.address,
            face_value=_minimal(face_value),
            win_prob=_minimal(win_prob),
            recipient_rand_hash=rand_hash(rand),
            seed=_minimal(seed),
            expiration_block=_minimal(expiration_block),
            expiration_params=TicketExpirationParams(
                creation_round=creation_round, creation_round_block_hash=block_hash
            ),
        )

    def _rand(
        self,
        seed: int,
        sender: bytes,
        face_value: int,
        win_prob: int,
        expiration_block: int,
        price: Fraction,
        creation_round: int,
        block_hash: bytes,
    ) -> int:
        message = b"".join(
            (
                _minimal(seed),
                sender,
                _minimal(face_value),
                _minimal(win_prob),
                _minimal(expiration_block),
                _minimal(price.numerator),
                _minimal(price.denominator),
                aux_data(creation_round, block_hash),
            )
        )
        return int.from_bytes(hmac.new(self._secret, message, hashlib.sha256).digest(), "big")

    # --- receiving ------------------------------------------------------------------------------------

    async def process_payment(self, payment: Payment, manifest_id: str) -> Fraction:
        """Check ``payment``'s tickets, credit the EV of the valid ones to (sender, ``manifest_id``), pin the
        session's price and hand each winner to ``on_winner``; the EV credited. PaymentError with go-livepeer's
        message for the first failure (after crediting the tickets before it)."""
        if not payment.HasField("ticket_params"):
            # No ticket params: the orchestrator asked for no payment, so the session's price is 0.
            if payment.sender:
                self.balances.set_fixed_price(_address(payment.sender), manifest_id, Fraction(0))
            return Fraction(0)
        if not payment.sender:
            raise self._refuse("Could not find Sender for payment", fatal=True)
        sender = _address(payment.sender)
        named_recipient = _address(payment.ticket_params.recipient)
        if not self.chain.is_active(named_recipient):
            raise self._refuse(
                f"orchestrator {checksum(named_recipient)} is inactive in round "
                f"{self.chain.last_initialized_round()}, cannot process payments",
                fatal=True,
            )
        price = self._expected_price(payment)
        # A session that so far paid nothing (pinned at 0 by a payment without tickets) takes its first real price.
        pinned = self.balances.set_fixed_price(
            sender, manifest_id, price, replace=self.balances.fixed_price(sender, manifest_id) == 0
        )
        if price > pinned * PRICE_INCREASE_THRESHOLD:
            raise self._refuse(
                f'invalid expected price sent with payment err="price {_ratio(price)} is more than '
                f'{PRICE_INCREASE_THRESHOLD} times the session price {_ratio(pinned)}"',
                fatal=True,
            )
        tickets = tickets_in(payment)
        if not tickets:
            return Fraction(0)
        try:
            info = await self.chain.sender_info(sender)
        except Exception as exc:  # the view's failure to reach the chain, in go's words
            raise self._refuse(f"could not get sender info for {checksum(sender)}: {exc}", fatal=True) from None
        last_block = self.chain.last_seen_l1_block()
        self._sweep_nonces(last_block)

        credited = Fraction(0)
        first_error: PaymentError | None = None
        for ticket, sig, seed in tickets:
            rand = self._rand(
                seed,
                ticket.sender,
                ticket.face_value,
                ticket.win_prob,
                ticket.params_expiration_block,
                price,
                ticket.creation_round,
                ticket.creation_round_block_hash,
            )
            self.counters.received += 1
            try:
                won = self._receive(ticket, sig, rand, info, last_block)
            except _Refused as refused:
                error = self._refuse(refused.message, fatal=refused.fatal)
                if error.fatal:
                    raise error from None
                won = refused.won
                first_error = first_error or error
            if first_error is None:
                ev = ticket.expected_value()
                self.balances.credit(sender, manifest_id, ev)
                credited += ev
            if won:
                self._winner(ticket, sig, rand)
        self.counters.credited += credited
        if first_error is not None:
            raise first_error
        return credited

    def _expected_price(self, payment: Payment) -> Fraction:
        if not payment.HasField("expected_price"):
            raise self._refuse('invalid expected price sent with payment err="expected price is nil"', fatal=True)
        expected: PriceInfo = payment.expected_price
        if expected.pixelsPerUnit == 0:
            raise self._refuse('invalid expected price sent with payment err="pixels per unit is 0"', fatal=True)
        price = Fraction(expected.pricePerUnit, expected.pixelsPerUnit)
        if price < 0:
            raise self._refuse('invalid expected price sent with payment err="price is negative"', fatal=True)
        return price

    def _receive(self, ticket: Ticket, sig: bytes, rand: int, info: SenderInfo, last_block: int) -> bool:
        """go's ``ReceiveTicket``: whether the ticket won; :class:`_Refused` for the first check it fails."""
        if info.withdraw_round != 0 and info.withdraw_round <= self.chain.last_initialized_round() + 1:
            raise _Refused(
                f"deposit and reserve for sender {checksum(ticket.sender)} is set to unlock soon", fatal=True
            )
        if ticket.recipient != self.address:
            raise _Refused("invalid ticket recipient", fatal=True)
        if ticket.sender == bytes(20):
            raise _Refused("invalid ticket sender", fatal=True)
        if rand_hash(rand) != ticket.recipient_rand_hash:
            raise _Refused("invalid recipientRand for ticket recipientRandHash", fatal=True)
        if not verify(ticket.sender, ticket.hash(), sig):
            raise _Refused(INVALID_SIGNATURE)
        won = is_winning(sig, rand, ticket.win_prob)
        nonces = self._nonces.get(rand)
        if nonces is None:
            nonces = self._nonces[rand] = _Nonces(ticket.params_expiration_block)
        elif ticket.sender_nonce in nonces.seen:
            # go would queue a replayed winner again; the chain refuses it as used, so it is not queued twice.
            raise _Refused(
                f"invalid ticket senderNonce: already seen sender={checksum(ticket.sender)} nonce={ticket.sender_nonce}"
            )
        if len(nonces.seen) >= self.settings.max_sender_nonces:
            raise _Refused(
                f"invalid ticket senderNonce: too many values sender={checksum(ticket.sender)} "
                f"nonce={ticket.sender_nonce}",
                won=won,
            )
        nonces.seen.add(ticket.sender_nonce)
        if ticket.params_expiration_block <= last_block:
            raise _Refused(PARAMS_EXPIRED, won=won)
        return won

    def _winner(self, ticket: Ticket, sig: bytes, rand: int) -> None:
        self.counters.won += 1
        if self._pending_source is None:
            self._pending[ticket.sender] = self._pending.get(ticket.sender, 0) + ticket.face_value
        try:
            self._on_winner(ticket, sig, rand)
        except Exception as exc:  # a winner lost to storage must not fail the job that paid it; say so loudly
            log_event(
                log,
                "could not store a winning ticket",
                logging.ERROR,
                sender=checksum(ticket.sender),
                nonce=ticket.sender_nonce,
                face_value=ticket.face_value,
                problem=str(exc),
            )

    def _refuse(self, message: str, *, fatal: bool = False) -> PaymentError:
        self.counters.refused += 1
        return PaymentError(message, fatal=fatal)

    def _sweep_nonces(self, last_block: int) -> None:
        # Params past their expiration block can no longer credit anything, so their nonces may be forgotten.
        if last_block == self._nonces_swept_at:
            return
        self._nonces_swept_at = last_block
        for rand in [r for r, n in self._nonces.items() if n.expiration_block <= last_block]:
            del self._nonces[rand]

    # --- pending winnings -----------------------------------------------------------------------------

    def pending(self, sender: bytes) -> int:
        """Face values (wei) of ``sender``'s winning tickets not yet redeemed."""
        if self._pending_source is not None:
            return self._pending_source(sender)
        return self._pending.get(sender, 0)

    def settle_pending(self, sender: bytes, face_value: int) -> None:
        """A winning ticket of ``sender`` was redeemed or dropped: it no longer counts against its max float."""
        left = self._pending.get(sender, 0) - face_value
        if left > 0:
            self._pending[sender] = left
        else:
            self._pending.pop(sender, None)

    # --- balances -------------------------------------------------------------------------------------

    def sufficient_balance(self, sender: bytes, manifest_id: str) -> bool:
        """Whether (sender, manifest) holds at least one ticket's EV (go's ``SufficientBalance``)."""
        return self.balances.balance(sender, manifest_id) >= self.ticket_ev

    def debit_fees(self, sender: bytes, manifest_id: str, price: PriceInfo | Fraction, units: int) -> Fraction:
        """Debit ``units`` at ``price`` (wei per unit, or a ``PriceInfo``) from (sender, manifest); the new balance.
        A ``PriceInfo`` with ``pixelsPerUnit`` 0 debits nothing."""
        if isinstance(price, PriceInfo):
            if price.pixelsPerUnit == 0:
                return self.balances.balance(sender, manifest_id)
            price = Fraction(price.pricePerUnit, price.pixelsPerUnit)
        return self.balances.debit(sender, manifest_id, Fraction(price) * units)


class _Refused(Exception):
    def __init__(self, message: str, *, fatal: bool = False, won: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.fatal = fatal
        self.won = won


def _address(value: bytes) -> bytes:
    return bytes(value)[-20:].rjust(20, b"\x00")


def _ratio(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"
