"""The gateway signs ticket batches as go-livepeer's sender does and keeps its credit as go's Balance does."""

from __future__ import annotations

import asyncio
import base64
import time
from fractions import Fraction

import pytest
from payments_chain_double import ETH, FixedChain

from lpnode.payments.keystore import Wallet
from lpnode.payments.recipient import PaymentError, Recipient, RecipientSettings
from lpnode.payments.sender import (
    Sender,
    SenderBalances,
    SenderError,
    SenderSettings,
    check_price,
    encode_payment,
    float_string,
)
from lpnode.payments.signatures import verify
from lpnode.payments.ticket import tickets_in
from lpnode.protocol.lp_rpc_pb2 import OrchestratorInfo, Payment, PriceInfo

ORCH = Wallet.from_key(bytes([0x11]) * 32)
GATEWAY = Wallet.from_key(bytes([0x22]) * 32)
EV = Fraction(10**12)
PRICE = PriceInfo(pricePerUnit=7, pixelsPerUnit=3)
LIMITS = SenderSettings(max_ticket_ev=Fraction(10**15), max_total_ev=Fraction(10**16))


def setup(settings: SenderSettings = LIMITS) -> tuple[Sender, Recipient, FixedChain, str]:
    chain = FixedChain()
    chain.active.add(ORCH.address)
    chain.fund(GATEWAY.address)
    recipient = Recipient(ORCH.address, chain, RecipientSettings(ticket_ev=EV), secret=bytes(32))
    params = asyncio.run(recipient.ticket_params(GATEWAY.address, Fraction(7, 3)))
    sender = Sender(GATEWAY, chain, settings)
    return sender, recipient, chain, sender.start_session(OrchestratorInfo(ticket_params=params))


def test_a_batch_has_increasing_nonces_signed_by_the_wallet_and_echoes_the_price() -> None:
    sender, _, _, session = setup()
    assert session.startswith("0x") and len(session) == 66
    first = asyncio.run(sender.create_payment(session, 3, PRICE))
    second = asyncio.run(sender.create_payment(session, 2, PRICE))
    assert [p.sender_nonce for p in first.ticket_sender_params] == [1, 2, 3]
    assert [p.sender_nonce for p in second.ticket_sender_params] == [4, 5]
    assert first.expected_price == PRICE and first.sender == GATEWAY.address
    for ticket, sig, _seed in tickets_in(first):
        assert verify(GATEWAY.address, ticket.hash(), sig)
        assert len(ticket.aux_data()) == 64


def test_starting_a_session_again_with_the_same_params_keeps_its_nonces() -> None:
    chain = FixedChain()
    chain.active.add(ORCH.address)
    chain.fund(GATEWAY.address)
    recipient = Recipient(ORCH.address, chain, RecipientSettings(ticket_ev=EV), secret=bytes(32))
    info = OrchestratorInfo(ticket_params=asyncio.run(recipient.ticket_params(GATEWAY.address, Fraction(7, 3))))
    sender = Sender(GATEWAY, chain, LIMITS)
    session = sender.start_session(info)
    asyncio.run(sender.create_payment(session, 2, PRICE))
    assert sender.start_session(info) == session  # the same params again, e.g. a live stream's after its start
    later = asyncio.run(sender.create_payment(session, 1, PRICE))
    assert [p.sender_nonce for p in later.ticket_sender_params] == [3]


def test_a_payment_from_the_sender_is_accepted_by_the_recipient() -> None:
    sender, recipient, _, session = setup()
    payment = Payment.FromString(
        base64.b64decode(encode_payment(asyncio.run(sender.create_payment(session, 2, PRICE))))
    )
    credited = asyncio.run(recipient.process_payment(payment, "job"))
    assert credited == 2 * sender.expected_value(session)


def test_zero_tickets_carry_only_sender_and_price() -> None:
    sender, _, _, session = setup()
    payment = asyncio.run(sender.create_payment(session, 0, PRICE))
    assert not payment.HasField("ticket_params") and payment.expected_price == PRICE


def test_expired_params_raise_ticket_params_expired_and_use_no_nonce() -> None:
    sender, _, chain, session = setup()
    chain.l1_block += 39  # one block of buffer left: go treats that as expired
    with pytest.raises(PaymentError, match=r"^TicketParams expired$"):
        asyncio.run(sender.create_payment(session, 1, PRICE))
    chain.l1_block -= 1
    assert asyncio.run(sender.create_payment(session, 1, PRICE)).ticket_sender_params[0].sender_nonce == 1


def test_ev_and_face_value_limits_use_gos_words() -> None:
    sender, _, _, session = setup(SenderSettings(max_ticket_ev=Fraction(10**11)))
    with pytest.raises(SenderError, match=r"^ticket EV \d+\.\d{5} > max ticket EV 100000000000\.00000$"):
        asyncio.run(sender.create_payment(session, 1, PRICE))
    sender, _, _, session = setup(SenderSettings(max_ticket_ev=Fraction(10**15), max_total_ev=Fraction(10**12)))
    with pytest.raises(SenderError, match=r"^total ticket EV [\d.]+ for 5 tickets > max total ticket EV"):
        asyncio.run(sender.create_payment(session, 5, PRICE))
    sender, _, _, session = setup(SenderSettings(max_ticket_ev=Fraction(10**15), deposit_multiplier=10**6))
    with pytest.raises(SenderError, match=r"^ticket faceValue \d+ > max faceValue 1000000000000$"):
        asyncio.run(sender.create_payment(session, 1, PRICE))


def test_deposit_reserve_and_unlock_are_checked() -> None:
    sender, _, chain, session = setup()
    chain.fund(GATEWAY.address, deposit=0, reserve=ETH)
    with pytest.raises(SenderError, match=r"^no sender deposit$"):
        asyncio.run(sender.create_payment(session, 1, PRICE))
    chain.fund(GATEWAY.address, deposit=ETH, reserve=0)
    with pytest.raises(SenderError, match=r"^no sender reserve$"):
        asyncio.run(sender.create_payment(session, 1, PRICE))
    chain.fund(GATEWAY.address, withdraw_round=chain.round + 1)
    with pytest.raises(SenderError, match="unable to validate sender: deposit and reserve is set to unlock soon"):
        asyncio.run(sender.create_payment(session, 1, PRICE))


def test_unknown_session_is_an_error() -> None:
    sender, _, _, _ = setup()
    with pytest.raises(SenderError, match="error loading session"):
        sender.expected_value("0xabc")


def test_signing_a_ticket_costs_well_under_a_millisecond() -> None:
    sender, _, _, session = setup()
    start = time.perf_counter()
    asyncio.run(sender.create_payment(session, 50, PRICE))
    assert (time.perf_counter() - start) / 50 < 0.002  # generous bound for a shared machine; ~0.1 ms measured


def test_balances_stage_ceil_tickets_and_settle_the_change() -> None:
    balances = SenderBalances()
    key = (ORCH.address, "session")
    assert balances.stage(key, Fraction(250), Fraction(100)) == (3, Fraction(0))
    assert balances.settle(key, Fraction(0), 3, Fraction(100), Fraction(250)) == 50
    # 50 of credit left: a fee of 120 needs one more ticket
    num, staged = balances.stage(key, Fraction(120), Fraction(100))
    assert (num, staged) == (1, Fraction(50)) and balances.balance(key) == 0
    balances.restore(key, staged)
    assert balances.balance(key) == 50
    # credit covering the fee (and at least one EV) sends no ticket
    assert balances.stage(key, Fraction(40), Fraction(10)) == (0, Fraction(50))


def test_price_doubling_rule_and_float_strings() -> None:
    check_price(PriceInfo(pricePerUnit=1, pixelsPerUnit=1), PriceInfo(pricePerUnit=2, pixelsPerUnit=1))
    with pytest.raises(SenderError, match=r"^Orchestrator price has more than doubled, Orchestrator price: 3, "):
        check_price(Fraction(1), Fraction(3))
    with pytest.raises(SenderError, match=r"^missing orchestrator price$"):
        check_price(Fraction(1), None)
    assert float_string(Fraction(1, 3)) == "0.33333"
    assert float_string(Fraction(2, 3)) == "0.66667"
    assert float_string(Fraction(5)) == "5.00000"
