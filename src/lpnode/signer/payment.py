"""Minting one payment: ``POST /generate-live-payment``'s algorithm, step by step as go-livepeer's
``GenerateLivePayment`` (research remote-signer.md §5.3).

:meth:`Minter.mint` reads the request, checks the client's state, decides whether the orchestrator info must be
refreshed (480), bills the units the request's type stands for, applies the price ceilings (481), works out the
tickets the fee needs beyond the credit the state holds (482 when none; at most 100), signs them with
:class:`~lpnode.payments.sender.Sender`, signs the segment credentials, asks the auth webhook, and seals the new
state. Every refusal is a :class:`Refusal` carrying the status and go's message.

Bookkeeping is exact: the fee is ``units × the session's initial price`` (even when the orchestrator now asks
less), the new credit is ``old + tickets × EV − fee``, and nonces continue from the state (from 0 when the
orchestrator gave new ticket params). Nothing is kept between calls.
"""

from __future__ import annotations

import base64
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction

from lpnode.logs import log_event
from lpnode.payments.chain_view import ChainView
from lpnode.payments.keystore import Wallet
from lpnode.payments.recipient import PaymentError
from lpnode.payments.sender import Sender, SenderError, SenderSettings, check_price, encode_payment
from lpnode.payments.signatures import keccak, segment_message, sign
from lpnode.protocol.lp_rpc_pb2 import Capabilities, OrchestratorInfo, SegData
from lpnode.protocol.remote_signer import (
    AUTH_ID_HEADER,
    LIVE_OPENING_SECONDS,
    LV2V_OPENING_SECONDS,
    LV2V_PIXELS_PER_SECOND,
    MAX_TICKETS_PER_CALL,
    ORCHESTRATOR_URL_HEADER,
    STATUS_NO_TICKETS,
    STATUS_PRICE_CEILING,
    STATUS_REFRESH_SESSION,
    TYPE_FIXED,
    TYPE_LIVE,
    TYPE_LV2V,
    TYPE_RAW,
    PaymentResponse,
)
from lpnode.signer import ceilings
from lpnode.signer.ceilings import CeilingError, ConfiguredPrices
from lpnode.signer.request import ParsedRequest, RequestError, parse_request
from lpnode.signer.state import PaymentState, StateError, open_state, rat_string, seal
from lpnode.signer.webhook import AuthWebhook, WebhookRefused, header_map

log = logging.getLogger("lpnode.signer")

AUTH_TOKEN_REFRESH_SECONDS = 180
"""Orchestrator info is refreshed in the last 10 % of its 30-minute auth token (go's buffer)."""
_EMPTY_HASH = keccak(b"")


class Refusal(Exception):
    """The signer does not mint this payment: ``status`` and ``str()`` (go's message) are the answer;
    ``headers`` go with it (the orchestrator's URL on a 480)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


@dataclass
class Minted:
    """Counts for ``/metrics``: payments minted, tickets signed and their EV (wei), refusals by status."""

    payments: int = 0
    tickets: int = 0
    ev: Fraction = field(default_factory=Fraction)
    refusals: dict[int, int] = field(default_factory=dict)


def billable_units(type_: str, in_pixels: int, elapsed: float) -> int:
    """Units a call bills: ``lv2v`` 720p30 pixels for the seconds elapsed (60 s on a first call), ``live`` whole
    seconds rounded up (10 s first), ``fixed`` one, raw ``in_pixels``. Refusal 400 for another type or none."""
    if type_ == TYPE_LV2V:
        seconds = elapsed if elapsed > 0 else LV2V_OPENING_SECONDS
        units = int(LV2V_PIXELS_PER_SECOND * seconds)
    elif type_ == TYPE_LIVE:
        units = math.ceil(elapsed if elapsed > 0 else LIVE_OPENING_SECONDS)
    elif type_ == TYPE_FIXED:
        units = 1
    elif type_ == TYPE_RAW:
        units = in_pixels
    else:
        raise Refusal(400, "invalid job type")
    if units <= 0:
        raise Refusal(400, "missing billable unit or job type")
    return units


def _address(raw: bytes) -> bytes:
    return raw[-20:].rjust(20, b"\x00")  # go's BytesToAddress


class Minter:
    """Mints payments from ``wallet``'s deposit. ``clock`` returns Unix nanoseconds (tests may pass their own)."""

    def __init__(
        self,
        wallet: Wallet,
        chain: ChainView,
        sender_settings: SenderSettings,
        prices: ConfiguredPrices,
        webhook: AuthWebhook | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.wallet = wallet
        self.chain = chain
        self.sender_settings = sender_settings
        self.prices = prices
        self.webhook = webhook
        self.clock = clock
        self.minted = Minted()

    async def mint(self, body: bytes, headers: Iterable[tuple[str, str]]) -> PaymentResponse:
        """One payment for the request ``body`` sent with ``headers``; :class:`Refusal` otherwise."""
        try:
            return await self._mint(body, list(headers))
        except Refusal as exc:
            self.minted.refusals[exc.status] = self.minted.refusals.get(exc.status, 0) + 1
            raise

    async def _mint(self, body: bytes, headers: list[tuple[str, str]]) -> PaymentResponse:
        try:
            req = parse_request(body)
        except RequestError as exc:
            raise Refusal(400, str(exc)) from None
        info = req.info
        price = info.price_info
        if not info.HasField("price_info") or price.pricePerUnit == 0 or price.pixelsPerUnit == 0:
            raise Refusal(400, "missing or zero priceInfo")
        if not info.HasField("ticket_params"):
            raise Refusal(400, "missing ticketParams in OrchestratorInfo")
        orchestrator = _address(bytes(info.address))
        state, has_state = self._state(req, orchestrator)
        manifest_id = req.manifest_id
        if not manifest_id:
            if has_state:
                raise Refusal(400, "missing manifestID")
            manifest_id = secrets.token_hex(4)  # a random 8-hex id, as go makes one
        sender = Sender(self.wallet, self.chain, self.sender_settings)
        rand_hash = "0x" + bytes(info.ticket_params.recipient_rand_hash)[-32:].rjust(32, b"\x00").hex()
        nonce = state.sender_nonce if state.pm_session_id == rand_hash else 0
        session = sender.start_session(info, nonce=nonce)
        await self._check_refresh(info, sender, session)

        now = self.clock()
        elapsed = (now - state.last_update_ns) / 1e9 if state.last_update_ns else 0.0
        units = billable_units(req.type, req.in_pixels, elapsed)
        current = Fraction(price.pricePerUnit, price.pixelsPerUnit)
        try:
            request_max = ceilings.parse_max_price(req.max_price, req.type)
        except ValueError as exc:
            raise Refusal(400, str(exc)) from None
        initial = state.initial_price
        if has_state and initial is None:
            raise Refusal(400, "invalid initial price in state")
        assert initial is not None  # a new state starts at the current price, which is not zero
        try:
            ceilings.check(
                current,
                (ceilings.CONFIGURED, self.prices.for_capabilities(req.capabilities)),
                (ceilings.REQUEST, request_max),
                (ceilings.INITIAL, initial if has_state else None),
            )
        except CeilingError as exc:
            raise Refusal(exc.status, str(exc)) from None

        fee = units * initial
        ev = sender.expected_value(session)
        if ev <= 0:
            raise Refusal(400, "the orchestrator's ticket params have an expected value of 0")
        existing = state.balance
        min_credit = max(fee, ev)
        if existing >= min_credit:
            raise Refusal(STATUS_NO_TICKETS, "no tickets")
        num_tickets = math.ceil((min_credit - existing) / ev)
        if num_tickets > MAX_TICKETS_PER_CALL:
            raise Refusal(400, f"numTickets {num_tickets} exceeds maximum of {MAX_TICKETS_PER_CALL}")
        try:
            check_price(initial, price)
            payment = await sender.create_payment(session, num_tickets, price)
        except SenderError as exc:
            status = STATUS_PRICE_CEILING if "more than doubled" in str(exc) else 500
            raise Refusal(status, str(exc)) from None
        except PaymentError as exc:
            raise Refusal(500, str(exc)) from None
        seg_creds = self._seg_creds(manifest_id, info, req.capabilities)

        state.balance = existing + num_tickets * ev - fee
        state.last_update_ns = now
        state.pm_session_id = session
        state.sender_nonce = sender.nonce(session)
        await self._authorize(req, state, headers, current, now)
        signed = seal(state, self.wallet.key)
        self.minted.payments += 1
        self.minted.tickets += num_tickets
        self.minted.ev += num_tickets * ev
        log_event(
            log, "payment signed", state_id=state.state_id, seq=state.sequence_number, manifest_id=manifest_id,
            type=req.type or "pixels", units=units, tickets=num_tickets, nonce=state.sender_nonce,
            fee_wei=rat_string(fee), balance_wei=rat_string(state.balance), auth_id=state.auth_id,
        )  # fmt: skip
        return PaymentResponse(encode_payment(payment), seg_creds, signed)

    def _state(self, req: ParsedRequest, orchestrator: bytes) -> tuple[PaymentState, bool]:
        if req.state is None:
            price = req.info.price_info
            return PaymentState.new(orchestrator, price.pricePerUnit, price.pixelsPerUnit, req.type, req.app), False
        try:
            state = open_state(req.state, self.wallet.address)
        except StateError as exc:
            raise Refusal(400, str(exc)) from None
        if state.orchestrator != orchestrator:
            raise Refusal(400, "orchestratorAddress mismatch")
        if state.app != req.app:
            raise Refusal(400, "app mismatch")
        if state.type and state.type != req.type:
            raise Refusal(400, "job type mismatch")
        state.type = req.type
        state.sequence_number += 1
        return state, True

    async def _check_refresh(self, info: OrchestratorInfo, sender: Sender, session: str) -> None:
        """go's ``shouldRefreshSession``: 480 near the auth token's end or once the ticket params expired."""
        prefix = "remote signer could not check whether to refresh session: "
        if not info.HasField("auth_token"):
            raise Refusal(400, prefix + "missing auth token")
        refresh = {ORCHESTRATOR_URL_HEADER: info.transcoder}
        if self.clock() / 1e9 > info.auth_token.expiration - AUTH_TOKEN_REFRESH_SECONDS:
            raise Refusal(STATUS_REFRESH_SESSION, "refresh session for remote signer", refresh)
        try:
            await sender.validate(session, 1)
        except PaymentError:  # TicketParams expired
            raise Refusal(STATUS_REFRESH_SESSION, "refresh session for remote signer", refresh) from None
        except SenderError as exc:
            raise Refusal(400, prefix + str(exc)) from None

    def _seg_creds(self, manifest_id: str, info: OrchestratorInfo, caps: Capabilities | None) -> str:
        """The ``Livepeer-Segment`` of an empty segment for ``manifest_id``, with the orchestrator's auth token and
        the request's capabilities, signed by this wallet (go's ``genSegCreds``)."""
        seg = SegData(manifestId=manifest_id.encode(), hash=_EMPTY_HASH)
        seg.auth_token.CopyFrom(info.auth_token)
        if caps is not None:
            seg.capabilities.CopyFrom(caps)
        seg.sig = sign(self.wallet.key, segment_message(seg))
        return base64.b64encode(seg.SerializeToString()).decode()

    async def _authorize(
        self, req: ParsedRequest, state: PaymentState, headers: list[tuple[str, str]], price: Fraction, now: int
    ) -> None:
        """The auth webhook (unless the state's authorisation is still valid), then the auth-ID rules."""
        auth_id = ""
        cached = state.auth_expiry != 0 and now // 10**9 <= state.auth_expiry
        if self.webhook is not None and not cached:
            try:
                answer = await self.webhook.authorize(header_map(headers), state.to_go())
            except WebhookRefused as exc:
                raise Refusal(exc.status, str(exc)) from None
            state.auth_expiry = answer.expiry
            if answer.max_price is not None:
                try:
                    limit = ceilings.parse_max_price(answer.max_price, req.type)
                except ValueError as exc:
                    raise Refusal(502, f"signer auth invalid maxPrice: {exc}") from None
                try:
                    ceilings.check(price, (ceilings.WEBHOOK, limit))
                except CeilingError as exc:
                    raise Refusal(exc.status, str(exc)) from None
            auth_id = answer.auth_id
        if not auth_id:
            auth_id = next((v for k, v in headers if k.lower() == AUTH_ID_HEADER.lower()), "")
        if auth_id and state.auth_id != auth_id:
            if state.auth_id:
                log_event(log, "auth id changed", logging.WARNING, state_id=state.state_id, old=state.auth_id,
                          new=auth_id)  # fmt: skip
                raise Refusal(500, "remote signer auth ID changed")
            state.auth_id = auth_id
