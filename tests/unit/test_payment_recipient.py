"""The orchestrator's ticket params and receiving checks behave as go-livepeer's, with its words."""

from __future__ import annotations

import asyncio
from fractions import Fraction

import pytest
from payments_chain_double import ETH, GWEI, FixedChain

from lpnode.payments.balances import Balances
from lpnode.payments.keystore import Wallet
from lpnode.payments.recipient import PaymentError, Recipient, RecipientSettings
from lpnode.payments.sender import Sender, SenderSettings
from lpnode.payments.signatures import SECP256K1_N, sign
from lpnode.payments.ticket import MAX_WIN_PROB, Ticket, rand_hash, tickets_in
from lpnode.protocol.lp_rpc_pb2 import OrchestratorInfo, Payment, PriceInfo

ORCH = Wallet.from_key(bytes([0x11]) * 32)
GATEWAY = Wallet.from_key(bytes([0x22]) * 32)
EV = Fraction(10**12)
PRICE = PriceInfo(pricePerUnit=3, pixelsPerUnit=2)


def make(
    chain: FixedChain | None = None, **settings: object
) -> tuple[Recipient, FixedChain, list[tuple[Ticket, bytes, int]]]:
    chain = chain or FixedChain()
    chain.active.add(ORCH.address)
    chain.fund(GATEWAY.address)
    winners: list[tuple[Ticket, bytes, int]] = []
    recipient = Recipient(
        ORCH.address,
        chain,
        RecipientSettings(ticket_ev=EV, **settings),  # type: ignore[arg-type]
        secret=bytes(32),
        on_winner=lambda t, s, r: winners.append((t, s, r)),
    )
    return recipient, chain, winners


def pay(recipient: Recipient, chain: FixedChain, count: int = 2, price: PriceInfo = PRICE) -> Payment:
    """A payment made the way a gateway makes one, from fresh params."""

    async def scenario() -> Payment:
        params = await recipient.ticket_params(GATEWAY.address, Fraction(price.pricePerUnit, price.pixelsPerUnit))
        sender = Sender(GATEWAY, chain, SenderSettings(max_ticket_ev=Fraction(10**15), max_total_ev=Fraction(10**16)))
        session = sender.start_session(OrchestratorInfo(ticket_params=params))
        return await sender.create_payment(session, count, price)

    return asyncio.run(scenario())


def process(recipient: Recipient, payment: Payment, manifest: str = "m") -> Fraction:
    return asyncio.run(recipient.process_payment(payment, manifest))


def resign(payment: Payment, index: int, ticket: Ticket, key: bytes = GATEWAY.key) -> None:
    payment.ticket_sender_params[index].sig = sign(key, ticket.hash())


def test_params_follow_go_rules_for_face_value_win_prob_and_expiry() -> None:
    recipient, chain, _ = make()
    params = asyncio.run(recipient.ticket_params(GATEWAY.address, Fraction(3, 2)))
    face_value = int.from_bytes(params.face_value, "big")
    assert face_value == 1_200_000 * chain.gas * 100  # redeem gas × gas price × txCostMultiplier
    win_prob = int.from_bytes(params.win_prob, "big")
    assert Fraction(face_value * win_prob, MAX_WIN_PROB) >= EV
    assert int.from_bytes(params.expiration_block, "big") == chain.l1_block + 40
    assert params.expiration_params.creation_round == chain.round
    assert params.expiration_params.creation_round_block_hash == chain.block_hash
    assert len(params.seed) <= 32 and params.recipient == ORCH.address


def test_face_value_is_capped_by_max_float_and_max_face_value() -> None:
    recipient, chain, _ = make(max_face_value=2 * 10**14)
    assert asyncio.run(recipient.face_value(GATEWAY.address)) == 2 * 10**14  # above one redemption (1.2e14)
    # reserve 1 ETH over 10 orchestrators, less what was already claimed this round
    recipient, chain, _ = make()
    chain.gas = 100 * GWEI
    chain.claimed[(GATEWAY.address, ORCH.address)] = ETH // 20
    assert asyncio.run(recipient.face_value(GATEWAY.address)) == ETH // 10 - ETH // 20


def test_an_empty_reserve_is_insufficient_sender_reserve() -> None:
    recipient, chain, _ = make()
    chain.fund(GATEWAY.address, deposit=ETH, reserve=0)
    with pytest.raises(PaymentError, match=r"^insufficient sender reserve$"):
        asyncio.run(recipient.ticket_params(GATEWAY.address, Fraction(1)))
    params = asyncio.run(recipient.ticket_params(GATEWAY.address, Fraction(0)))
    assert params.face_value == b"" and params.win_prob == b""


def test_valid_tickets_are_credited_and_price_pinned() -> None:
    recipient, chain, _ = make()
    payment = pay(recipient, chain, count=3)
    credited = process(recipient, payment)
    ticket = tickets_in(payment)[0][0]
    assert credited == 3 * ticket.expected_value() >= 3 * EV
    assert recipient.balances.balance(GATEWAY.address, "m") == credited
    assert recipient.balances.fixed_price(GATEWAY.address, "m") == Fraction(3, 2)
    assert recipient.sufficient_balance(GATEWAY.address, "m")
    assert recipient.debit_fees(GATEWAY.address, "m", PRICE, 10) == credited - 15
    assert recipient.counters.received == 3


def test_a_forged_signature_is_refused_and_not_credited_but_earlier_tickets_are() -> None:
    recipient, chain, _ = make()
    payment = pay(recipient, chain, count=2)
    resign(payment, 1, tickets_in(payment)[1][0], key=bytes([0x33]) * 32)
    with pytest.raises(PaymentError, match=r"^invalid ticket signature$"):
        process(recipient, payment)
    assert recipient.balances.balance(GATEWAY.address, "m") == tickets_in(payment)[0][0].expected_value()


def test_a_high_s_twin_of_a_valid_signature_is_refused() -> None:
    recipient, chain, _ = make()
    payment = pay(recipient, chain, count=1)
    sig = bytes(payment.ticket_sender_params[0].sig)
    s = int.from_bytes(sig[32:64], "big")
    payment.ticket_sender_params[0].sig = sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - sig[64]])
    with pytest.raises(PaymentError, match=r"^invalid ticket signature$"):
        process(recipient, payment)
    assert recipient.balances.balance(GATEWAY.address, "m") == 0


def test_a_replayed_nonce_is_refused_in_gos_words() -> None:
    recipient, chain, _ = make()
    payment = pay(recipient, chain, count=1)
    process(recipient, payment)
    with pytest.raises(
        PaymentError, match=r"^invalid ticket senderNonce: already seen sender=0x[0-9a-fA-F]{40} nonce=1$"
    ):
        process(recipient, payment)
    assert recipient.balances.balance(GATEWAY.address, "m") == tickets_in(payment)[0][0].expected_value()


def test_expired_params_are_refused() -> None:
    recipient, chain, _ = make()
    payment = pay(recipient, chain, count=1)
    chain.l1_block += 40
    with pytest.raises(PaymentError, match=r"^TicketParams expired$"):
        process(recipient, payment)
    assert recipient.balances.balance(GATEWAY.address, "m") == 0


def test_a_ticket_for_another_recipient_is_refused() -> None:
    recipient, chain, _ = make()
    other = Recipient(bytes([9]) * 20, chain, RecipientSettings(ticket_ev=EV), secret=bytes(32))
    chain.active.add(bytes([9]) * 20)
    payment = pay(other, chain, count=1)
    with pytest.raises(PaymentError, match=r"^invalid ticket recipient$") as caught:
        process(recipient, payment)
    assert caught.value.fatal


def test_params_made_for_another_price_fail_the_rand_check() -> None:
    recipient, chain, _ = make()
    payment = pay(recipient, chain, count=1)
    payment.expected_price.pricePerUnit = 4  # the params were made for 3/2
    with pytest.raises(PaymentError, match=r"^invalid recipientRand for ticket recipientRandHash$"):
        process(recipient, payment)


def test_a_sender_who_is_unlocking_is_refused() -> None:
    recipient, chain, _ = make()
    payment = pay(recipient, chain, count=1)
    chain.fund(GATEWAY.address, withdraw_round=chain.round + 1)
    with pytest.raises(PaymentError, match=r"^deposit and reserve for sender 0x\w+ is set to unlock soon$"):
        process(recipient, payment)


def test_an_inactive_orchestrator_and_a_missing_price_are_refused() -> None:
    recipient, chain, _ = make()
    payment = pay(recipient, chain, count=1)
    chain.active.clear()
    with pytest.raises(PaymentError, match=r"^orchestrator 0x\w+ is inactive in round 100, cannot process payments$"):
        process(recipient, payment)
    chain.active.add(ORCH.address)
    payment.ClearField("expected_price")
    with pytest.raises(PaymentError, match=r'^invalid expected price sent with payment err="expected price is nil"$'):
        process(recipient, payment)
    payment.expected_price.pricePerUnit = 1
    with pytest.raises(PaymentError, match='err="pixels per unit is 0"'):
        process(recipient, payment)


def test_a_price_more_than_double_the_pinned_one_is_refused() -> None:
    recipient, chain, _ = make()
    process(recipient, pay(recipient, chain, count=1, price=PriceInfo(pricePerUnit=1, pixelsPerUnit=1)))
    process(recipient, pay(recipient, chain, count=1, price=PriceInfo(pricePerUnit=2, pixelsPerUnit=1)))
    before = recipient.balances.balance(GATEWAY.address, "m")
    with pytest.raises(PaymentError, match="invalid expected price sent with payment"):
        process(recipient, pay(recipient, chain, count=1, price=PriceInfo(pricePerUnit=3, pixelsPerUnit=1)))
    assert recipient.balances.balance(GATEWAY.address, "m") == before
    assert recipient.balances.fixed_price(GATEWAY.address, "m") == 1


def test_winners_go_to_on_winner_with_their_rand() -> None:
    recipient, chain, winners = make()
    chain.gas = 0  # face value = 100 × EV: about one ticket in a hundred wins
    payment = pay(recipient, chain, count=400)
    process(recipient, payment)
    assert winners and recipient.counters.won == len(winners)
    for ticket, _sig, rand in winners:
        assert rand_hash(rand) == ticket.recipient_rand_hash
    assert recipient.pending(GATEWAY.address) == sum(t.face_value for t, _, _ in winners)


def test_nonces_per_rand_are_bounded() -> None:
    recipient, chain, _ = make(max_sender_nonces=3)
    payment = pay(recipient, chain, count=4)
    with pytest.raises(PaymentError, match=r"^invalid ticket senderNonce: too many values"):
        process(recipient, payment)


def test_a_payment_without_ticket_params_pins_price_zero_and_credits_nothing() -> None:
    balances = Balances()
    recipient, _, _ = make()
    recipient.balances = balances
    assert process(recipient, Payment(sender=GATEWAY.address, expected_price=PRICE)) == 0
    assert balances.fixed_price(GATEWAY.address, "m") == 0
