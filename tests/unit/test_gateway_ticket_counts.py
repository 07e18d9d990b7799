"""The gateway pays: fees, ticket counts, credit, refreshed params and the BYOC rule, in process.

The orchestrator here is a small ASGI app around the real :class:`~lpnode.payments.recipient.Recipient` (it checks
every ticket and keeps the balance as an lpnode orchestrator does); the gateway side is the real directory,
forwarder, tries loop and :class:`~lpnode.gateway.payments.GatewayPayments`. The chain is the fixed test double
(``payments_chain_double``): rounds, blocks and deposits as plain values (anvil runs in the integration tests).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import time
import wave
from fractions import Fraction
from typing import Any

import aiohttp
import pytest
from payments_chain_double import ETH, FixedChain
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from lpnode.errors import BadRequestError, JobError, UnavailableError
from lpnode.gateway.audio_duration import upload_seconds
from lpnode.gateway.directory import Directory
from lpnode.gateway.forward import Forwarder, Job
from lpnode.gateway.job_wrapper import JobRecord
from lpnode.gateway.payments import GatewayPayments, SessionRefused, byoc_tickets, manifest_for
from lpnode.gateway.selection import LatencySelector, Stats
from lpnode.gateway.settings import PriceCaps
from lpnode.gateway.transport import AsgiTransport
from lpnode.payments import signatures
from lpnode.payments.keystore import Wallet
from lpnode.payments.recipient import PaymentError, Recipient, RecipientSettings
from lpnode.payments.sender import SenderSettings
from lpnode.protocol.auth_token import AuthTokens
from lpnode.protocol.capabilities import ModelOffer, build_capabilities, build_capabilities_prices
from lpnode.protocol.job_hop import decode_payment, decode_segment
from lpnode.protocol.lp_rpc_pb2 import OrchestratorInfo, OrchestratorRequest, PriceInfo
from lpnode.results import ResultStore

MODEL = "org/model"
URL = "http://orch.test:8935"
PRICE = Fraction(3_000_000)  # wei per token
TICKET_EV = Fraction(1_000_000_000_000)
GATEWAY_KEY = bytes.fromhex("11" * 32)
ORCH_KEY = bytes.fromhex("22" * 32)


class PaidOrchestrator:
    """An orchestrator serving ``POST /llm`` on chain: ticket params per request, payments checked by a real
    Recipient, the job's fee (``max_tokens`` × price) debited. ``refuse`` answers the next jobs with a
    payment refusal instead."""

    def __init__(self, chain: FixedChain) -> None:
        self.address = signatures.address_of(ORCH_KEY)
        chain.active.add(self.address)
        self.chain = chain
        self.recipient = Recipient(self.address, chain, RecipientSettings(ticket_ev=TICKET_EV))
        self.price = PRICE
        self.tokens = AuthTokens()
        self.info_requests: list[OrchestratorRequest] = []
        self.refuse: list[str] = []
        self.payments_seen = 0
        self.app = Starlette(routes=[Route("/llm", self.job, methods=["POST"])])

    async def get_info(self, url: str, request: Any = None, timeout: float = 5.0) -> OrchestratorInfo:
        request = request or OrchestratorRequest()
        self.info_requests.append(request)
        offers = [ModelOffer("llm", MODEL, warm=True, capacity=4, price_per_unit=self.price)]
        info = OrchestratorInfo(
            transcoder=URL,
            capabilities=build_capabilities(offers),
            capabilities_prices=build_capabilities_prices(offers),
            auth_token=self.tokens.issue(),
            address=self.address,
        )
        if request.HasField("capabilities"):  # a job's session: this model's price and ticket params for it
            info.price_info.CopyFrom(PriceInfo(pricePerUnit=int(self.price), pixelsPerUnit=1))
            sender = bytes(request.address)
            info.ticket_params.CopyFrom(await self.recipient.ticket_params(sender, self.price))
        return info

    async def job(self, request: Request) -> Response:
        body = json.loads(await request.body())
        segment = decode_segment(request.headers["Livepeer-Segment"])
        payment = decode_payment(request.headers["Livepeer-Payment"])
        self.payments_seen += 1
        if self.refuse:
            return PlainTextResponse(self.refuse.pop(0), status_code=400)
        sender = bytes(payment.sender)
        manifest = segment.manifestId.decode()
        assert signatures.recover(signatures.segment_message(segment), bytes(segment.sig)) == sender
        try:
            await self.recipient.process_payment(payment, manifest)
        except PaymentError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        self.recipient.debit_fees(sender, manifest, payment.expected_price, int(body["max_tokens"]))
        return JSONResponse({"choices": [{"message": {"role": "assistant", "content": "hi"}}]})

    def balance(self, sender: bytes) -> Fraction:
        return self.recipient.balances.balance(sender, manifest_for("llm", MODEL))


class _InOrder(LatencySelector):
    def order(self, offers: Any, stats: Stats) -> list[Any]:
        return list(offers)


def gateway_payments(chain: FixedChain) -> GatewayPayments:
    wallet = Wallet.from_key(GATEWAY_KEY)
    return GatewayPayments(wallet, chain, SenderSettings())


async def forwarder_for(orch: PaidOrchestrator, payments: GatewayPayments, session: aiohttp.ClientSession, tmp: Any):
    directory = Directory(
        orch,  # type: ignore[arg-type]
        [URL],
        request=payments.orchestrator_request,
        expired=payments.params_expired,
    )
    await directory.refresh()
    forwarder = Forwarder(
        directory, _InOrder(), Stats(), PriceCaps(), AsgiTransport({URL: orch.app}), session,
        ResultStore(tmp / "results"), "http://gateway.test", payments=payments,
    )  # fmt: skip
    return forwarder, directory


async def run_jobs(forwarder: Forwarder, max_tokens: list[int]) -> list[Any]:
    results: list[Any] = []
    for tokens in max_tokens:
        body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": tokens})
        job = Job("llm", MODEL, body.encode(), "application/json", "rid")
        try:
            results.append(await forwarder.run(job, None, time.monotonic() + 10, JobRecord(units=tokens)))
        except JobError as exc:
            results.append(exc)
    return results


def test_jobs_pay_their_fees_and_both_sides_agree_on_the_credit(tmp_path: Any) -> None:
    chain = FixedChain()
    chain.fund(signatures.address_of(GATEWAY_KEY), deposit=1 * ETH, reserve=1 * ETH)
    orch = PaidOrchestrator(chain)
    payments = gateway_payments(chain)

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            forwarder, _ = await forwarder_for(orch, payments, session, tmp_path)
            results = await run_jobs(forwarder, [1000, 10, 5000])
        assert [r.status_code for r in results] == [200, 200, 200]

    asyncio.run(scenario())
    fees = PRICE * (1000 + 10 + 5000)
    sent = payments.sent[URL]
    key = (orch.address, manifest_for("llm", MODEL))
    ev = sent.ev / sent.tickets
    assert sent.payments == 3 and sent.tickets >= math.ceil(fees / ev)
    gateway_credit = payments.balances.balance(key)
    assert gateway_credit == sent.ev - fees >= 0
    assert orch.balance(payments.address) == gateway_credit  # the orchestrator credited every ticket's EV
    # every GetOrchestrator was signed by the gateway's wallet
    assert all(signatures.verify_address_signature(bytes(r.address), bytes(r.sig)) for r in orch.info_requests)


def test_each_job_sends_the_tickets_its_fee_needs_beyond_the_credit(tmp_path: Any) -> None:
    """go's rule: enough whole tickets to bring the credit to max(fee, one ticket's EV)."""
    chain = FixedChain()
    chain.fund(signatures.address_of(GATEWAY_KEY))
    orch = PaidOrchestrator(chain)
    payments = gateway_payments(chain)
    tokens_per_ev = TICKET_EV / PRICE  # about one ticket's worth of tokens

    async def scenario() -> list[int]:
        counts = []
        async with aiohttp.ClientSession() as session:
            forwarder, _ = await forwarder_for(orch, payments, session, tmp_path)
            for tokens in (int(tokens_per_ev * 5 / 2), int(tokens_per_ev / 5), 1):
                before = payments.sent.get(URL)
                sent_before = before.tickets if before else 0
                await run_jobs(forwarder, [tokens])
                counts.append(payments.sent[URL].tickets - sent_before)
        return counts

    # 2.5 EVs: 3 tickets, 0.5 EV left; 0.2 EV: 1 ticket (the credit must reach one EV), 1.3 EV left; 1 token: none
    assert asyncio.run(scenario()) == [3, 1, 0]


def test_expired_ticket_params_are_fetched_again_and_the_job_is_served(tmp_path: Any) -> None:
    chain = FixedChain()
    chain.fund(signatures.address_of(GATEWAY_KEY))
    orch = PaidOrchestrator(chain)
    payments = gateway_payments(chain)

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            forwarder, _ = await forwarder_for(orch, payments, session, tmp_path)
            orch.refuse.append("TicketParams expired")  # as the orchestrator answers it (400)
            (answer,) = await run_jobs(forwarder, [100])
            assert answer.status_code == 200
            sessions_asked = sum(r.HasField("capabilities") for r in orch.info_requests)
            assert sessions_asked == 2  # new params after the refusal
            chain.l1_block += 100  # the params the gateway holds are now expired: fetched before paying
            (answer,) = await run_jobs(forwarder, [100])
            assert answer.status_code == 200
            assert sum(r.HasField("capabilities") for r in orch.info_requests) == 3

    asyncio.run(scenario())
    # the refused job's staged credit was restored, not lost, and both sides still agree
    key = (orch.address, manifest_for("llm", MODEL))
    assert payments.balances.balance(key) == orch.balance(payments.address)


def test_an_empty_deposit_fails_the_job_with_a_503_naming_it(tmp_path: Any) -> None:
    chain = FixedChain()  # the gateway was never funded
    orch = PaidOrchestrator(chain)
    payments = gateway_payments(chain)

    async def scenario() -> Any:
        async with aiohttp.ClientSession() as session:
            forwarder, _ = await forwarder_for(orch, payments, session, tmp_path)
            return (await run_jobs(forwarder, [100]))[0]

    error = asyncio.run(scenario())
    assert isinstance(error, UnavailableError)
    assert "deposit" in error.message and payments.checksum_address in error.message
    assert orch.payments_seen == 0


def test_a_price_more_than_doubled_is_refused_in_go_livepeers_words() -> None:
    chain = FixedChain()
    chain.fund(signatures.address_of(GATEWAY_KEY))
    orch = PaidOrchestrator(chain)
    payments = gateway_payments(chain)
    request = payments.orchestrator_request(OrchestratorRequest().capabilities)

    async def scenario() -> None:
        info = await orch.get_info(URL, request)
        session = payments.session(URL, "m", info)
        await payments.pay(session, Fraction(10))
        orch.price = PRICE * 2 + 1
        doubled = payments.session(URL, "m", await orch.get_info(URL, request))
        with pytest.raises(SessionRefused, match="Orchestrator price has more than doubled, Orchestrator price: "):
            await payments.pay(doubled, Fraction(10))

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("price", "balance", "timeout", "ev", "tickets"),
    [
        (Fraction(0), Fraction(0), 30, Fraction(100), 0),  # free: no tickets
        (Fraction(10), Fraction(1200), 30, Fraction(100), 0),  # 120 s of credit held: none
        (Fraction(10), Fraction(1199), 30, Fraction(100), 3),  # ceil(10 × 30 / 100)
        (Fraction(10), Fraction(0), 31, Fraction(100), 4),
        (Fraction(10**9), Fraction(0), 3600, Fraction(1), 600),  # at most 600
    ],
)
def test_byoc_jobs_carry_go_livepeers_ticket_count(
    price: Fraction, balance: Fraction, timeout: int, ev: Fraction, tickets: int
) -> None:
    assert byoc_tickets(price, balance, timeout, ev) == tickets


def test_paid_segments_are_signed_by_the_gateway() -> None:
    payments = gateway_payments(FixedChain())
    token = AuthTokens().issue()
    seg = decode_segment(payments.segment(token, "live-video-to-video", "noop", manifest_id="abcd1234"))
    assert seg.manifestId == b"abcd1234" and seg.hash == signatures.keccak(b"")
    assert signatures.recover(signatures.segment_message(seg), bytes(seg.sig)) == payments.address


def _wav(seconds: float, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x00\x00" * int(seconds * rate))
    return buffer.getvalue()


def _multipart(audio: bytes) -> tuple[bytes, str]:
    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="model_id"\r\n\r\nm\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + audio
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def test_an_audio_upload_is_measured_before_it_is_paid() -> None:
    body, content_type = _multipart(_wav(2.5))
    assert asyncio.run(upload_seconds(body, content_type)) == pytest.approx(2.5)
    body, content_type = _multipart(b"not audio at all")
    with pytest.raises(BadRequestError, match="Unable to calculate duration of file"):
        asyncio.run(upload_seconds(body, content_type))


def test_byoc_token_ticket_params_round_trip_as_json() -> None:
    """The job token carries ticket params as go's JSON (bytes in base64); the gateway reads them back whole."""
    from google.protobuf import json_format

    from lpnode.protocol.lp_rpc_pb2 import TicketParams

    params = TicketParams(recipient=b"\x01" * 20, face_value=b"\x05", recipient_rand_hash=b"\x02" * 32)
    text = json.loads(json.dumps(json_format.MessageToDict(params, preserving_proto_field_name=True)))
    assert text["recipient"] == base64.b64encode(b"\x01" * 20).decode()
    assert json_format.ParseDict(text, TicketParams(), ignore_unknown_fields=True) == params
