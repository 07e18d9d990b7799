"""Runner apps paid on chain (go-livepeer's Live Runner payments, research live-runner.md §12–§13).

:class:`PaidAdmission` is the :class:`~lpnode.orchestrator.runner_apps.admission.Admission` of an orchestrator on
chain. What a caller may rely on:

- Prices: a runner's USD ``price_info`` is turned into whole wei per billing unit at each use with the price feed
  (``hour`` → wei a second, ``720p`` → wei a 720p pixel-second, ``fixed`` → wei a call; truncated; below one wei or
  no feed rate → 503 ``live runner price unavailable: ...``). Discovery shows it as
  ``{"price": <wei>, "currency": "wei", "unit": "seconds" | "720p-pixel-seconds" | "fixed"}``.
- A reservation or single-shot call without ``Livepeer-Payment`` and ``Livepeer-Segment`` gets **402**: with a
  ``Livepeer-Payer-Address`` the challenge ``{"payment_params", "orchestrator", "manifest_id", "payment_url"}``
  (``payment_params`` = base64 ``OrchestratorInfo`` with ticket params for that payer, ``price_info`` {wei, 1} and
  an auth token for session ``manifest_id``), without one the JSON error ``invalid live runner payment signer
  address``.
- A paid request: payment undecodable → 402 text; segment unsigned by the payer, or a bad/expired auth token →
  403; segment manifest ≠ token session → 403 ``mismatched manifest and auth token``; a ``fixed`` payment naming
  another price → 400 ``payment price does not match live runner price``; then the session is reserved **under the
  manifest id** (409 if taken, 503 when full), the tickets are credited to (payer, manifest) through the
  orchestrator's receiving path (400 with go's words and the session released if refused). ``fixed``: the price is
  debited once, now (400 ``insufficient balance, mid=..., fee=..., balance=...`` and released if short); metered
  units: a :class:`~lpnode.orchestrator.runner_apps.metering.Meter` debits every ``-livePaymentInterval`` and
  releases the session (telling the runner on O2R, cutting a single-shot call off) when a debit cannot be covered.
- ``POST /apps/{route}/session/{sid}/payment`` (:meth:`PaidAdmission.session_payment`) credits a session: 404
  unknown, 409 for a ``fixed`` session, 402/403 bad credentials, 403 ``mismatched session and payment manifest``,
  400 refused tickets; 200 = protobuf ``PaymentResult{info}`` with fresh ticket params and the caller's token.
- ``POST /refresh-payment`` (:meth:`PaidAdmission.refresh_payment`) ``{"sender", "manifest_id"}``: a fresh
  challenge for a session that was paid (price = the pinned one, ``payment_url`` = ``{svc}/payment``); 400
  ``invalid sender`` / ``missing manifest_id``, 409 ``fixed price not found for session`` (JSON envelope).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import re
import secrets
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response

from lpnode.errors import JobError
from lpnode.logs import log_event
from lpnode.orchestrator.runner_apps.admission import JsonRefusal, json_error
from lpnode.orchestrator.runner_apps.adverts import PriceInfo as UsdPrice
from lpnode.orchestrator.runner_apps.metering import Meter, Metered
from lpnode.orchestrator.runner_apps.records import AppRunner, AppSession
from lpnode.orchestrator.runner_apps.registry import AppError, AppRegistry
from lpnode.payments.signatures import checksum
from lpnode.protocol import runner_apps as wire
from lpnode.protocol.auth_token import AuthTokens, TokenProblem
from lpnode.protocol.job_hop import PAYMENT_HEADER, SEGMENT_HEADER, decode_payment, decode_segment
from lpnode.protocol.lp_rpc_pb2 import OrchestratorInfo, Payment, PaymentResult, PriceInfo, SegData

if TYPE_CHECKING:
    from lpnode.orchestrator.payments import OrchestratorPayments

log = logging.getLogger("lpnode.orchestrator.runner_apps")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_TOKEN_WORDS = {
    TokenProblem.MISSING: "missing auth token",
    TokenProblem.FORGED: "invalid auth token",
    TokenProblem.EXPIRED: "expired auth token",
    TokenProblem.WRONG_SESSION: "invalid auth token",
}
"""go-livepeer's words for a refused auth token (a client may read them)."""


@dataclass(frozen=True)
class AppPrice:
    """A runner's price now: ``wei`` per ``unit`` (``seconds``, ``720p-pixel-seconds`` or ``fixed``)."""

    wei: int
    unit: str

    @property
    def fixed(self) -> bool:
        return self.unit == wire.UNIT_FIXED

    def price_info(self) -> PriceInfo:
        return PriceInfo(pricePerUnit=self.wei, pixelsPerUnit=1)

    def to_json(self) -> dict[str, Any]:
        return {"price": self.wei, "currency": "wei", "unit": self.unit}


def convert(price: UsdPrice, wei_per_usd: Fraction) -> AppPrice:
    """``price`` (USD per registered unit) in whole wei per billing unit; ValueError below one wei."""
    wei = int(Fraction(price.price) / wire.USD_DIVISORS[price.unit] * wei_per_usd)
    if wei < 1:
        raise ValueError("converted live runner price must be at least one wei")
    return AppPrice(wei, wire.ADVERTISED_UNITS[price.unit])


@dataclass
class AppPaymentTotals:
    """What runner apps were paid since start: sessions and single-shot calls admitted with a payment, wei taken
    by meters and by fixed prices, and sessions released because a debit could not be covered. Every wei counted
    here is also in the orchestrator's ``debited_wei``."""

    sessions: int = 0
    metered: Fraction = field(default_factory=Fraction)
    fixed: int = 0
    released_unpaid: int = 0

    def to_json(self) -> dict[str, Any]:
        """``sessions_paid``, ``metered_wei`` (rounded down to a wei), ``fixed_wei``, ``released_unpaid``."""
        return {
            "sessions_paid": self.sessions,
            "metered_wei": str(math.floor(self.metered)),
            "fixed_wei": str(self.fixed),
            "released_unpaid": self.released_unpaid,
        }


@dataclass
class _Paid:
    """What admission holds for one paid session: who pays, its price, and its meter or single-shot task."""

    sender: bytes
    price: AppPrice
    meter: Meter | None = None
    task: asyncio.Task[Any] | None = None


class PaidAdmission:
    """On chain: the 402 challenge, paid reservations, metering and the payment routes (module docstring)."""

    def __init__(
        self, registry: AppRegistry, payments: OrchestratorPayments, tokens: AuthTokens, interval: float
    ) -> None:
        self.registry = registry
        self.payments = payments
        self.tokens = tokens
        self.interval = interval
        self._paid: dict[tuple[str, str], _Paid] = {}
        self.totals = AppPaymentTotals()

    # --- prices --------------------------------------------------------------------------------------------

    def price(self, runner: AppRunner) -> AppPrice:
        """``runner``'s price in wei now; 503 ``live runner price unavailable: ...`` when it cannot be had."""
        usd = runner.advert.price_info
        if usd is None:
            raise AppError(503, f"{wire.PRICE_UNAVAILABLE}: price_info.price is required")
        try:
            return convert(usd, self.payments.wei_per(usd.currency))
        except Exception as exc:  # no feed rate yet, or a price below a wei: the app is not sold meanwhile
            raise AppError(503, f"{wire.PRICE_UNAVAILABLE}: {exc}") from None

    def discovery_price(self, runner: AppRunner) -> dict[str, Any] | None:
        """The ``price_info`` discovery shows for ``runner`` (None when it cannot be converted now)."""
        try:
            return self.price(runner).to_json()
        except AppError:
            return None

    # --- admission ------------------------------------------------------------------------------------------

    async def admit(self, request: HTTPConnection, runner: AppRunner, *, single_shot: bool) -> AppSession:
        price = self.price(runner)
        payment_value = request.headers.get(PAYMENT_HEADER.lower(), "")
        segment_value = request.headers.get(SEGMENT_HEADER.lower(), "")
        if not payment_value and not segment_value:
            raise await self._challenge(request, runner, price)
        payment, segment = self._credentials(payment_value, segment_value)
        manifest = bytes(segment.manifestId).decode(errors="replace")
        if manifest != segment.auth_token.session_id:
            raise AppError(403, wire.MISMATCHED_MANIFEST)
        if price.fixed and not _same_price(payment, price):
            raise AppError(400, wire.PRICE_MISMATCH)
        session = self.registry.reserve(runner, manifest)
        sender = bytes(payment.sender)[-20:].rjust(20, b"\x00")
        try:
            await self.payments.process(payment, manifest)
            if price.fixed:
                self._take_fixed(sender, manifest, price)
        except JobError as exc:
            self.registry.release(runner, session.id)
            raise AppError(exc.status_code, exc.message) from None
        paid = _Paid(sender, price)
        self._paid[(runner.route, session.id)] = paid
        self.totals.sessions += 1
        if not price.fixed:
            pinned = self.payments.balances.fixed_price(sender, manifest) or Fraction(price.wei)
            metered = Metered(sender, manifest, wire.UNITS_PER_SECOND[price.unit], pinned)
            paid.meter = Meter(
                self.payments.balances, metered, self.interval, lambda: self._held(runner, session),
                lambda reason: self._short(runner, session, reason), on_debit=self._debited,
            )  # fmt: skip
            paid.meter.start()
        log_event(
            log, "runner app session paid", logging.DEBUG, runner_id=runner.runner_id, session=session.id,
            sender=checksum(sender), unit=price.unit, price_wei=price.wei,
        )  # fmt: skip
        return session

    def bind(self, runner: AppRunner, session: AppSession, task: asyncio.Task[Any]) -> None:
        paid = self._paid.get((runner.route, session.id))
        if paid is not None:
            paid.task = task

    def done(self, runner: AppRunner, session: AppSession) -> None:
        paid = self._paid.pop((runner.route, session.id), None)
        if paid is not None and paid.meter is not None:
            paid.meter.stop()

    def _held(self, runner: AppRunner, session: AppSession) -> bool:
        """Whether ``session`` is still reserved; forgets it when it is not (released without :meth:`done`)."""
        if runner.sessions.get(session.id) is session:
            return True
        self._paid.pop((runner.route, session.id), None)
        return False

    def _short(self, runner: AppRunner, session: AppSession, reason: str) -> None:
        """A debit could not be covered: release the session (the runner hears it on O2R) and cut its call off."""
        paid = self._paid.get((runner.route, session.id))
        if self.registry.release(runner, session.id):
            self.done(runner, session)
        if paid is not None and paid.task is not None and not paid.task.done():
            paid.task.cancel()
        refused = self.payments.totals.refused
        refused["insufficient balance"] = refused.get("insufficient balance", 0) + 1
        self.totals.released_unpaid += 1

    def _debited(self, fee: Fraction) -> None:
        self.payments.totals.debited += fee
        self.totals.metered += fee

    def _take_fixed(self, sender: bytes, manifest: str, price: AppPrice) -> None:
        balance = self.payments.balance(sender, manifest)
        if balance < price.wei:
            raise AppError(400, f"insufficient balance, mid={manifest}, fee={price.wei}, balance={int(balance)}")
        self.payments.debit(sender, manifest, Fraction(price.wei), 1)
        self.totals.fixed += price.wei

    def _credentials(self, payment_value: str, segment_value: str) -> tuple[Payment, SegData]:
        """Both headers decoded and the segment checked (signature, auth token): 402 / 403 otherwise."""
        try:
            payment = decode_payment(payment_value)
            segment = decode_segment(segment_value)
            self.payments.check_segment(segment, payment)
        except JobError as exc:
            raise AppError(exc.status_code, exc.message) from None
        check = self.tokens.verify(segment.auth_token if segment.HasField("auth_token") else None)
        if check.problem is not None:
            raise AppError(403, _TOKEN_WORDS[check.problem])
        return payment, segment

    async def _challenge(self, request: HTTPConnection, runner: AppRunner, price: AppPrice) -> JsonRefusal:
        payer = request.headers.get(wire.PAYER_HEADER.lower(), "").strip()
        if not _ADDRESS.match(payer):
            return json_error(402, wire.INVALID_PAYER)
        manifest = secrets.token_hex(4)
        while manifest in runner.sessions:
            manifest = secrets.token_hex(4)
        info = await self._info(bytes.fromhex(payer[2:]), price.price_info(), manifest)
        url = self.registry.public_url + wire.payment_path(runner.route, manifest)
        return JsonRefusal(402, _challenge_body(info, self.registry.public_url, manifest, url))

    async def _info(self, sender: bytes, price: PriceInfo, manifest: str) -> OrchestratorInfo:
        try:
            params = await self.payments.ticket_params(sender, price)
        except JobError as exc:
            raise AppError(500, exc.message) from None
        return OrchestratorInfo(
            transcoder=self.registry.public_url,
            ticket_params=params,
            price_info=price,
            address=self.payments.address,
            auth_token=self.tokens.issue(manifest),
        )

    # --- payment routes --------------------------------------------------------------------------------------

    async def session_payment(self, request: HTTPConnection, route: str, session_id: str) -> Response:
        """``POST /apps/{route}/session/{sid}/payment`` (see the module docstring)."""
        runner = self.registry.runner(route)
        session = runner.sessions.get(session_id)
        if session is None:
            raise AppError(404, wire.SESSION_NOT_FOUND)
        paid = self._paid.get((runner.route, session_id))
        if paid is not None and paid.price.fixed:
            raise AppError(409, wire.FIXED_NO_FOLLOW_UP)
        payment, segment = self._credentials(
            request.headers.get(PAYMENT_HEADER.lower(), ""), request.headers.get(SEGMENT_HEADER.lower(), "")
        )
        if bytes(segment.manifestId).decode(errors="replace") != session_id:
            raise AppError(403, wire.MISMATCHED_SESSION)
        sender = bytes(payment.sender)[-20:].rjust(20, b"\x00")
        price = payment.expected_price if payment.HasField("expected_price") else self.price(runner).price_info()
        info = await self._info(sender, price, session_id)
        info.auth_token.CopyFrom(segment.auth_token)
        try:
            await self.payments.process(payment, session_id)
        except JobError as exc:
            raise AppError(exc.status_code, exc.message) from None
        return Response(PaymentResult(info=info).SerializeToString())

    async def refresh_payment(self, body: bytes) -> Response:
        """``POST /refresh-payment`` (see the module docstring)."""
        try:
            document = json.loads(body or b"{}")
        except ValueError as exc:
            raise json_error(400, str(exc)) from None
        if not isinstance(document, dict):
            raise json_error(400, "invalid sender")
        sender_text = document.get("sender")
        manifest = document.get("manifest_id")
        if not isinstance(sender_text, str) or not _ADDRESS.match(sender_text.strip()):
            raise json_error(400, "invalid sender")
        if not isinstance(manifest, str) or not manifest:
            raise json_error(400, "missing manifest_id")
        sender = bytes.fromhex(sender_text.strip()[2:])
        pinned = self.payments.balances.fixed_price(sender, manifest)
        if pinned is None:
            raise json_error(409, wire.FIXED_PRICE_NOT_FOUND)
        price = PriceInfo(pricePerUnit=pinned.numerator, pixelsPerUnit=pinned.denominator)
        info = await self._info(sender, price, manifest)
        url = self.registry.public_url + wire.GENERIC_PAYMENT_PATH
        return JSONResponse(_challenge_body(info, self.registry.public_url, manifest, url))

    def status(self) -> dict[str, Any]:
        """``/status``'s ``payments.runner_apps``: :meth:`AppPaymentTotals.to_json` with the paid sessions now."""
        return {"paid_sessions": len(self._paid), **self.totals.to_json()}


def _challenge_body(info: OrchestratorInfo, orchestrator: str, manifest: str, payment_url: str) -> dict[str, str]:
    return {
        "payment_params": base64.b64encode(info.SerializeToString()).decode(),
        "orchestrator": orchestrator,
        "manifest_id": manifest,
        "payment_url": payment_url,
    }


def _same_price(payment: Payment, price: AppPrice) -> bool:
    expected = payment.expected_price
    return (
        payment.HasField("expected_price")
        and expected.pixelsPerUnit > 0
        and Fraction(expected.pricePerUnit, expected.pixelsPerUnit) == price.wei
    )
