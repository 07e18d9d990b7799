"""The gateway's side of ticket payments (go-livepeer's ``pm.sender`` and the gateway's ``core.Balance``).

A :class:`Sender` holds one session per set of ticket params an orchestrator gave (keyed, as in go-livepeer, by
the params' ``recipientRandHash`` in hex). Each ticket of a session takes the next nonce (the first is 1). Before a
batch is signed, the params are checked as go's ``validateTicketParams`` does, with its messages:
``TicketParams expired`` (raised as :class:`~lpnode.payments.recipient.PaymentError`, the cue to fetch fresh
params), a face value not above the EV, ``-maxTicketEV``, the sender's deposit, reserve and unlock state,
``-maxTotalEV`` for the batch, and the face value against ``deposit / -depositMultiplier`` (:class:`SenderError`).

:class:`SenderBalances` is the gateway's credit with each orchestrator session (research go-livepeer.md §9.6):
``stage`` reserves the credit and says how many tickets a job needs, ``settle`` books the result after the
orchestrator answered, ``restore`` puts the credit back when nothing was sent.
"""

from __future__ import annotations

import base64
import math
import threading
from collections.abc import Hashable
from dataclasses import dataclass, replace
from fractions import Fraction

from lpnode.payments.chain_view import ChainView
from lpnode.payments.keystore import Wallet
from lpnode.payments.recipient import PARAMS_EXPIRED, PRICE_INCREASE_THRESHOLD, PaymentError
from lpnode.payments.signatures import sign
from lpnode.payments.ticket import MAX_WIN_PROB, Ticket
from lpnode.protocol.go_rat import float_string
from lpnode.protocol.lp_rpc_pb2 import (
    OrchestratorInfo,
    Payment,
    PriceInfo,
    TicketExpirationParams,
    TicketParams,
    TicketSenderParams,
)

#: Params are treated as expired this many L1 blocks before their expiration block (go's ``paramsExpiryBuffer``).
PARAMS_EXPIRY_BUFFER = 1
#: Sessions kept before expired ones are dropped.
MAX_SESSIONS = 1024


class SenderError(Exception):
    """The gateway refuses to pay with these params; ``str()`` is go-livepeer's message."""


@dataclass(frozen=True)
class SenderSettings:
    """``-maxTicketEV`` and ``-maxTotalEV`` (wei), ``-depositMultiplier``; go-livepeer's defaults."""

    max_ticket_ev: Fraction = Fraction(3_000_000_000_000)
    max_total_ev: Fraction = Fraction(20_000_000_000_000)
    deposit_multiplier: int = 1


@dataclass
class _Session:
    recipient: bytes
    face_value: int
    win_prob: int
    recipient_rand_hash: bytes
    seed: int
    expiration_block: int
    creation_round: int
    creation_round_block_hash: bytes
    nonce: int = 0

    @property
    def ev(self) -> Fraction:
        return Fraction(self.face_value * self.win_prob, MAX_WIN_PROB)


def _int(value: bytes) -> int:
    return int.from_bytes(value, "big")


def _minimal(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


class Sender:
    """Signs tickets for ``wallet`` against the params orchestrators give it. Safe to use from several threads."""

    def __init__(self, wallet: Wallet, chain: ChainView, settings: SenderSettings | None = None) -> None:
        self.wallet = wallet
        self.chain = chain
        self.settings = settings or SenderSettings()
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()

    @property
    def address(self) -> bytes:
        return self.wallet.address

    def start_session(self, info: OrchestratorInfo, *, nonce: int | None = None) -> str:
        """Start paying with ``info.ticket_params``; the session id (``0x`` + recipientRandHash hex). Nonces belong to
        the params: new params start at nonce 0, the very params already held keep theirs (starting them again would
        be refused as replayed). ``nonce`` sets the last nonce used (go's ``StartSessionWithNonce``: a remote signer
        resumes a session from its client's state). SenderError when ``info`` carries no ticket params."""
        if not info.HasField("ticket_params"):
            raise SenderError("the orchestrator sent no ticket params")
        params = info.ticket_params
        expiration = params.expiration_params
        session = _Session(
            recipient=bytes(params.recipient)[-20:].rjust(20, b"\x00"),
            face_value=_int(params.face_value),
            win_prob=_int(params.win_prob),
            recipient_rand_hash=bytes(params.recipient_rand_hash)[-32:].rjust(32, b"\x00"),
            seed=_int(params.seed),
            expiration_block=_int(params.expiration_block),
            creation_round=expiration.creation_round if params.HasField("expiration_params") else 0,
            creation_round_block_hash=bytes(expiration.creation_round_block_hash)[-32:].rjust(32, b"\x00"),
        )
        session_id = "0x" + session.recipient_rand_hash.hex()
        with self._lock:
            held = self._sessions.get(session_id)
            if nonce is not None:
                session.nonce = nonce % 2**32
            elif held is not None and replace(held, nonce=0) == session:
                return session_id  # the same params: their nonces go on
            if len(self._sessions) >= MAX_SESSIONS:
                self._drop_expired()
            self._sessions[session_id] = session
        return session_id

    def cleanup_session(self, session: str) -> None:
        """Forget a session (its orchestrator was dropped or gave new params)."""
        with self._lock:
            self._sessions.pop(session, None)

    def nonce(self, session: str) -> int:
        """The last nonce ``session`` used (0 before its first ticket); SenderError for an unknown session."""
        return self._session(session).nonce % 2**32

    def expected_value(self, session: str) -> Fraction:
        """The EV of one ticket of ``session`` in wei; SenderError for an unknown session."""
        return self._session(session).ev

    async def create_payment(self, session: str, num_tickets: int, price: PriceInfo | None) -> Payment:
        """A ``Payment`` of ``num_tickets`` signed tickets of ``session``, echoing ``price`` exactly as
        ``expected_price``. With 0 tickets it carries only the sender and the price. PaymentError ``TicketParams
        expired`` or SenderError (go's words) when the params are not acceptable; no nonce is used then."""
        params = self._session(session)
        payment = Payment(sender=self.wallet.address)
        if price is not None:
            payment.expected_price.CopyFrom(price)
        if num_tickets <= 0:
            return payment
        await self._validate(params, num_tickets)
        creation_round, block_hash = params.creation_round, params.creation_round_block_hash
        if creation_round == 0 or block_hash == bytes(32):
            # Params from an orchestrator that sent no expiration params: use this node's last round, as go does.
            creation_round, block_hash = self.chain.last_initialized_round(), self.chain.round_block_hash()
        with self._lock:
            first = params.nonce + 1
            params.nonce += num_tickets
        payment.ticket_params.CopyFrom(
            TicketParams(
                recipient=params.recipient,
                face_value=_minimal(params.face_value),
                win_prob=_minimal(params.win_prob),
                recipient_rand_hash=params.recipient_rand_hash,
                seed=_minimal(params.seed),
                expiration_block=_minimal(params.expiration_block),
            )
        )
        payment.expiration_params.CopyFrom(
            TicketExpirationParams(creation_round=creation_round, creation_round_block_hash=block_hash)
        )
        key = self.wallet.key
        for offset in range(num_tickets):
            nonce = (first + offset) % 2**32  # a uint32 on the wire, wrapping as go's counter does
            ticket = Ticket(
                recipient=params.recipient,
                sender=self.wallet.address,
                face_value=params.face_value,
                win_prob=params.win_prob,
                sender_nonce=nonce,
                recipient_rand_hash=params.recipient_rand_hash,
                creation_round=creation_round,
                creation_round_block_hash=block_hash,
            )
            payment.ticket_sender_params.append(TicketSenderParams(sender_nonce=nonce, sig=sign(key, ticket.hash())))
        return payment

    async def validate(self, session: str, num_tickets: int = 1) -> None:
        """Check ``session``'s params for a batch of ``num_tickets`` without signing (go's
        ``ValidateTicketParams``)."""
        await self._validate(self._session(session), num_tickets)

    async def _validate(self, params: _Session, num_tickets: int) -> None:
        if params.expiration_block == 0:
            return
        if params.expiration_block - self.chain.last_seen_l1_block() <= PARAMS_EXPIRY_BUFFER:
            raise PaymentError(PARAMS_EXPIRED)
        ev = params.ev
        if ev <= 0:
            return
        if ev >= params.face_value:
            raise SenderError(f"ticket faceValue too low faceValue={params.face_value}")
        settings = self.settings
        if ev > settings.max_ticket_ev:
            raise SenderError(f"ticket EV {float_string(ev)} > max ticket EV {float_string(settings.max_ticket_ev)}")
        info = await self.chain.sender_info(self.wallet.address)
        if info.withdraw_round != 0 and info.withdraw_round <= self.chain.last_initialized_round() + 1:
            raise SenderError("unable to validate sender: deposit and reserve is set to unlock soon")
        if info.reserve == 0:
            raise SenderError("no sender reserve")
        if info.deposit == 0:
            raise SenderError("no sender deposit")
        total = ev * num_tickets
        if total > settings.max_total_ev:
            raise SenderError(
                f"total ticket EV {float_string(total)} for {num_tickets} tickets > "
                f"max total ticket EV {float_string(settings.max_total_ev)}"
            )
        max_face_value = info.deposit // max(1, settings.deposit_multiplier)
        if params.face_value > max_face_value:
            raise SenderError(f"ticket faceValue {params.face_value} > max faceValue {max_face_value}")

    def _session(self, session: str) -> _Session:
        with self._lock:
            found = self._sessions.get(session)
        if found is None:
            raise SenderError(f"error loading session: {session}")
        return found

    def _drop_expired(self) -> None:
        last_block = self.chain.last_seen_l1_block()
        for session_id in [s for s, p in self._sessions.items() if 0 < p.expiration_block <= last_block]:
            del self._sessions[session_id]
        # Still full of live sessions: the oldest go first (a dropped one only costs fresh params).
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]


def check_price(initial: PriceInfo | Fraction | None, current: PriceInfo | Fraction | None) -> None:
    """go's gateway ``validatePrice``: SenderError ``missing orchestrator price`` without a current price, and
    ``Orchestrator price has more than doubled, ...`` when it exceeds twice the session's first price."""
    now = _price(current)
    if now is None:
        raise SenderError("missing orchestrator price")
    first = _price(initial)
    if first is not None and now > first * PRICE_INCREASE_THRESHOLD:
        raise SenderError(
            f"Orchestrator price has more than doubled, Orchestrator price: {_rat_string(now)}, "
            f"Orchestrator initial price: {_rat_string(first)}"
        )


def _price(value: PriceInfo | Fraction | None) -> Fraction | None:
    if value is None:
        return None
    if isinstance(value, PriceInfo):
        return Fraction(value.pricePerUnit, value.pixelsPerUnit) if value.pixelsPerUnit else None
    return Fraction(value)


def _rat_string(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def encode_payment(payment: Payment) -> str:
    """The ``Livepeer-Payment`` header value: base64 (standard, padded) of the serialised ``Payment``."""
    return base64.b64encode(payment.SerializeToString()).decode("ascii")


class SenderBalances:
    """The gateway's credit (wei) per key, e.g. (orchestrator address, session id). Safe across threads."""

    def __init__(self) -> None:
        self._credit: dict[Hashable, Fraction] = {}
        self._lock = threading.Lock()

    def balance(self, key: Hashable) -> Fraction:
        """The credit held for ``key`` (0 when none; a staged credit is not counted until settled or restored)."""
        with self._lock:
            return self._credit.get(key, Fraction(0))

    def stage(self, key: Hashable, fee: Fraction, ev: Fraction) -> tuple[int, Fraction]:
        """Reserve ``key``'s credit for a job costing ``fee``; ``(tickets to send, credit reserved)``. The tickets
        cover ``max(fee, ev) − credit`` in whole tickets of ``ev`` (none when the credit covers it or ``ev`` is 0).
        Follow with :meth:`settle` or :meth:`restore`."""
        with self._lock:
            existing = self._credit.pop(key, Fraction(0))
        min_credit = max(Fraction(fee), Fraction(ev))
        if existing >= min_credit or ev <= 0:
            return 0, existing
        return math.ceil((min_credit - existing) / ev), existing

    def settle(self, key: Hashable, staged: Fraction, num_tickets: int, ev: Fraction, fee: Fraction) -> Fraction:
        """The job was paid and served: credit ``staged + num_tickets × ev − fee`` back; the new credit."""
        return self._add(key, staged + num_tickets * Fraction(ev) - Fraction(fee))

    def restore(self, key: Hashable, staged: Fraction) -> Fraction:
        """Nothing was sent: put the reserved credit back; the new credit."""
        return self._add(key, staged)

    def clear(self, key: Hashable) -> None:
        """Forget ``key`` (its session ended)."""
        with self._lock:
            self._credit.pop(key, None)

    def _add(self, key: Hashable, amount: Fraction) -> Fraction:
        with self._lock:
            value = self._credit.get(key, Fraction(0)) + amount
            self._credit[key] = value
            return value
