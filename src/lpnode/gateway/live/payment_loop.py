"""Paying for a running live stream (on chain): ``POST {orchestrator}/payment`` every ``-livePaymentInterval``.

Each payment covers the seconds elapsed since the last one at go-livepeer's live rate
(:data:`~lpnode.gateway.payments.LIVE_UNITS_PER_SECOND` units a second) and the session's price, with
``Livepeer-Payment`` and a signed ``Livepeer-Segment`` whose manifest is the stream's ``manifest_id`` (the
balance the orchestrator keeps for it). The answer (a protobuf ``PaymentResult``) may carry fresh ticket
params, which the next payment uses; expired ones are fetched again through the directory.

Credit is kept as go-livepeer keeps it: the start paid a minute up front (:data:`~lpnode.gateway.payments.
LIVE_INITIAL_SECONDS`), and each payment tops the stream's credit up to that minute plus the seconds being paid
for, so the orchestrator always holds about a minute ahead. The gateway's record of the credit (``/status``
``payments.credits``, manifest = the stream's ``manifest_id``) is the orchestrator's balance for the stream,
give or take the seconds of one interval that one side has counted and the other not yet.

As in go-livepeer, a failed payment is logged and the stream goes on: the orchestrator stops the stream when
its balance runs out, which the media loops see as closed channels. :attr:`LivePayer.last_problem` keeps the
reason for the stream's status.

Through a remote signer (:class:`~lpnode.gateway.remote_signer.SignerPayments`) the signer works out what is due
from the time since the stream's last payment (its state, carried on from the start's): each interval asks it for
a payment with the stream's manifest id; 480 fetches fresh orchestrator info and asks again, 482 (nothing due)
skips the round.
"""

from __future__ import annotations

import asyncio
import logging
import time
from fractions import Fraction
from typing import TYPE_CHECKING

import aiohttp
from google.protobuf.message import DecodeError

from lpnode.gateway.directory import Directory
from lpnode.gateway.live.orch_start import PIPELINE, LiveUrls
from lpnode.gateway.tries import payment_refusal
from lpnode.logs import log_event
from lpnode.protocol.job_hop import ERROR_BODY_LIMIT, PAYMENT_HEADER, SEGMENT_HEADER, error_message
from lpnode.protocol.lp_rpc_pb2 import OrchestratorInfo, PaymentResult

if TYPE_CHECKING:
    from lpnode.gateway.payments import GatewayPayments, PaidSession
    from lpnode.gateway.remote_signer import SignerPayments

log = logging.getLogger("lpnode.gateway.live.payments")
PAYMENT_TIMEOUT = 10.0


class LivePayer:
    """Pays one stream's orchestrator while the stream runs; :meth:`start` once, :meth:`close` at its end."""

    def __init__(
        self,
        payments: GatewayPayments,
        directory: Directory,
        session: aiohttp.ClientSession,
        urls: LiveUrls,
        model_id: str,
        interval: float,
    ) -> None:
        assert urls.info is not None, "a paid stream was started with session info"
        self.payments = payments
        self.directory = directory
        self.http = session
        self.urls = urls
        self.model_id = model_id
        self.interval = interval
        self.info: OrchestratorInfo = urls.info
        self.info_at_start: OrchestratorInfo = urls.info
        self.paid_seconds = 0.0
        self.failures = 0
        self.last_problem = ""
        """Why the last payment failed ("" once one succeeds)."""
        self._paid: PaidSession | None = None
        self._last = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._last = time.monotonic()
        if self._signer() is not None:
            from lpnode.gateway.payments import manifest_for

            signer = self._signer()
            assert signer is not None
            signer.take_start_state(
                self.urls.orchestrator, manifest_for(PIPELINE, self.model_id), self.urls.manifest_id
            )
        self._task = asyncio.ensure_future(self._run())

    def _signer(self) -> SignerPayments | None:
        from lpnode.gateway.remote_signer import SignerPayments

        return self.payments if isinstance(self.payments, SignerPayments) else None

    def view(self) -> dict[str, object]:
        """For the stream's status: seconds paid, failed payments and the last failure's reason."""
        return {
            "paid_seconds": round(self.paid_seconds, 3),
            "failures": self.failures,
            "last_problem": self.last_problem,
        }

    async def close(self) -> None:
        """Stop paying; the stream's credit record goes too (its manifest id is never used again)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        recipient = bytes(self.info.ticket_params.recipient) or bytes(self.info.address)
        self.payments.forget_credit((recipient, self.urls.manifest_id))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            seconds, self._last = now - self._last, now
            try:
                await self.pay(seconds)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # logged, never fatal: the orchestrator ends the stream if it goes unpaid
                self.failures += 1
                self.last_problem = str(exc) or type(exc).__name__
                log_event(
                    log, "live payment failed", logging.WARNING, orchestrator=self.urls.orchestrator,
                    manifest_id=self.urls.manifest_id, problem=str(exc) or type(exc).__name__,
                )  # fmt: skip

    async def pay(self, seconds: float) -> None:
        """Pay for ``seconds`` of the stream; raises with the reason when the orchestrator refuses."""
        signer = self._signer()
        if signer is not None:
            await self._pay_through(signer, seconds)
            return
        if self.payments.params_expired(self.info):
            self.info = await self.directory.session_info(self.urls.orchestrator, PIPELINE, self.model_id)
        from lpnode.gateway.payments import LIVE_INITIAL_SECONDS, LIVE_UNITS_PER_SECOND

        session = self._session()
        fee = Fraction(round(seconds * 1000), 1000) * LIVE_UNITS_PER_SECOND * session.price
        ahead = LIVE_INITIAL_SECONDS * LIVE_UNITS_PER_SECOND * session.price
        # Tickets bring the credit to the fee plus a minute ahead; only the fee is spent (ahead goes back below).
        staged = await self.payments.pay(session, fee + ahead)
        headers = {
            PAYMENT_HEADER: staged.header,
            SEGMENT_HEADER: self.payments.segment(
                self.info.auth_token, PIPELINE, self.model_id, manifest_id=self.urls.manifest_id
            ),
        }
        try:
            async with self.http.post(
                f"{self.urls.transcoder}/payment",
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=PAYMENT_TIMEOUT),
                ssl=False,
            ) as answer:
                body = await answer.content.read(ERROR_BODY_LIMIT)
                status = answer.status
        except BaseException:
            self.payments.restore(staged)
            raise
        if status != 200:
            self.payments.restore(staged)
            if payment_refusal(status, body) == "expired":
                self.directory.forget_session(self.urls.orchestrator)
                self.info = await self.directory.session_info(self.urls.orchestrator, PIPELINE, self.model_id)
            raise RuntimeError(f"{self.urls.transcoder}/payment answered {status}: {error_message(body)}")
        self.payments.settle(staged)
        if staged.ev > 0:
            self.payments.balances.restore(staged.key, ahead)
        self.paid_seconds += seconds
        self.last_problem = ""
        self._fresh_params(body)

    async def _pay_through(self, signer: SignerPayments, seconds: float) -> None:
        from lpnode.gateway.remote_signer import MAX_REFRESHES, SignerRefusal
        from lpnode.protocol.remote_signer import STATUS_REFRESH_SESSION

        for _ in range(MAX_REFRESHES + 1):
            try:
                answer = await signer.live_payment(self.info, self.urls.manifest_id, self.model_id)
                break
            except SignerRefusal as exc:
                if exc.status != STATUS_REFRESH_SESSION:
                    raise
                self.directory.forget_session(self.urls.orchestrator)
                self.info = await self.directory.session_info(self.urls.orchestrator, PIPELINE, self.model_id)
        else:
            raise RuntimeError("too many consecutive session refreshes")
        if answer is None:  # nothing due yet: the credit covers the time so far
            self.paid_seconds += seconds
            return
        headers = {PAYMENT_HEADER: answer.payment, SEGMENT_HEADER: answer.seg_creds}
        async with self.http.post(
            f"{self.urls.transcoder}/payment", headers=headers, timeout=aiohttp.ClientTimeout(total=PAYMENT_TIMEOUT),
            ssl=False,
        ) as reply:  # fmt: skip
            body = await reply.content.read(ERROR_BODY_LIMIT)
            status = reply.status
        if status != 200:
            raise RuntimeError(f"{self.urls.transcoder}/payment answered {status}: {error_message(body)}")
        self.paid_seconds += seconds
        self.last_problem = ""
        self._fresh_params(body)

    def _session(self) -> PaidSession:
        """The stream's paying session: its own manifest (the balance the orchestrator keeps for the stream), paying
        with the Sender's session for the current ticket params.

        Nonces belong to ticket params (their ``recipientRandHash``), not to a manifest: the start paid with these
        params already (and other streams' starts may have), so their nonces go on where they are; starting them
        again would be refused as replayed (``invalid ticket senderNonce: already seen``). Params the Sender does
        not hold yet start a new Sender session."""
        from lpnode.gateway.payments import PaidSession, price_of
        from lpnode.payments.sender import SenderError

        info = self.info
        held = self._paid
        rand_hash = bytes(info.ticket_params.recipient_rand_hash)
        if held is not None and bytes(held.info.ticket_params.recipient_rand_hash) == rand_hash:
            held.info = info
            return held
        session_id = ""
        if rand_hash:
            session_id = "0x" + rand_hash[-32:].rjust(32, b"\x00").hex()  # the Sender's id for these params
            try:
                self.payments.sender.expected_value(session_id)
            except SenderError:  # params the Sender has not paid with yet
                session_id = self.payments.sender.start_session(info)
        # go-livepeer checks each price against the session's first: the price the stream started at.
        initial = held.initial_price if held is not None else price_of(self.info_at_start.price_info)
        self._paid = PaidSession(self.urls.orchestrator, self.urls.manifest_id, info, session_id, initial)
        return self._paid

    def _fresh_params(self, body: bytes) -> None:
        """Take the ticket params a ``PaymentResult`` carries, when it carries them."""
        result = PaymentResult()
        try:
            result.ParseFromString(body)
        except DecodeError:  # an answer without a PaymentResult keeps the params we have
            return
        if result.info.HasField("ticket_params") and result.info.ticket_params.recipient_rand_hash:
            fresh = OrchestratorInfo()
            fresh.CopyFrom(self.info)
            fresh.ticket_params.CopyFrom(result.info.ticket_params)
            if result.info.HasField("price_info"):
                fresh.price_info.CopyFrom(result.info.price_info)
            if result.info.auth_token.token:
                fresh.auth_token.CopyFrom(result.info.auth_token)
            self.info = fresh
