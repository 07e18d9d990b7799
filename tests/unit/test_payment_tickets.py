"""Ticket bytes and signatures agree with go-livepeer's own test vectors and with the chain's rules."""

from __future__ import annotations

from fractions import Fraction

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from lpnode.payments import signatures
from lpnode.payments.signatures import (
    HALF_N,
    SECP256K1_N,
    InvalidSignature,
    address_signature,
    checksum,
    keccak,
    parse_address,
    recover,
    segment_message,
    sign,
    verify,
    verify_address_signature,
)
from lpnode.payments.ticket import (
    MAX_WIN_PROB,
    Ticket,
    is_winning,
    rand_hash,
    tickets_in,
    win_probability,
)
from lpnode.protocol.lp_rpc_pb2 import Payment, SegData, TicketExpirationParams, TicketParams, TicketSenderParams

ZERO20 = bytes(20)
ZERO32 = bytes(32)
HASH41 = bytes.fromhex("41b1a0649752af1b28b3dc29a1556eee781e4a4c3a1f7f53f90fa834de098c4d")
KEY = bytes(range(1, 33))

# go-livepeer pm/ticket_test.go TestHash: (fields that differ from an all-zero ticket, expected hash)
GO_HASH_VECTORS = [
    ({"sender_nonce": 2**32 - 1}, "e1393fc7f6de093780674022f96cb8e3872235167d037c04d554e58c0e63d280"),
    ({"sender_nonce": 1}, "ce0918ba94518293e9712effbe5fca4f1f431089833a5b8c257cb1e024595f68"),
    ({"face_value": 1, "win_prob": 500}, "87ef13f2d37e4d5352a01d3c77b8179d80e0887f1953bfabfd0bfd7b0f689ddd"),
    ({"face_value": 500, "win_prob": 1}, "aa4b35071043587992ac8b9dd1b2cf1d8311130e6458cf0b2342484e21af5f5b"),
    (
        {"recipient": bytes.fromhex("73AEd7b5dEb30222fa896f399d46cC99c7BEe57F")},
        "81e353ae39046e2b77b9f996abbaeed527fda559b61ef90f299c4499dd508ccc",
    ),
    ({"recipient_rand_hash": HASH41}, "be5eaf9a49a39540b9bb02f1a21904f61324a29819e2c032824bfaa10c100b17"),
    (
        {"creation_round": 10, "creation_round_block_hash": HASH41},
        "e502907c16036ab3d11b78c5a2e93c20f3d6415c67f91de4ed01348182b3b2e2",
    ),
]

# go-livepeer crypto/verify_test.go
GO_SIG_ADDRESS = "0x3BadDb1eeE2105893136A3F96c8a963E9C6309d6"
GO_SIG_MESSAGE = bytes.fromhex("b7da355477356fc4c47fcabcf232dc77a6db9b07b7e48b76261cc55cc8fbabb3")
GO_SIG = bytes.fromhex(
    "206443228e8f784bc3a122de0d85eb3ebff82d6a79cca26c7eeb907099a6404f"
    "6dff57bc6828f28bd6cd073c89d94cf3364204679ed8365fa45b5ee6af19a9841c"
)
GO_SIG_HIGH_S = bytes.fromhex(
    "e742ff452d41413616a5bf43fe15dd88294e983d3d36206c2712f39083d638bd"
    "e0a0fc89be718fbc1033e1d30d78be1c68081562ed2e97af876f286f3453231d1b"
)


def ticket(**fields: object) -> Ticket:
    base: dict[str, object] = {
        "recipient": ZERO20,
        "sender": ZERO20,
        "face_value": 0,
        "win_prob": 0,
        "sender_nonce": 0,
        "recipient_rand_hash": ZERO32,
    }
    base.update(fields)
    return Ticket(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("fields", "expected"), GO_HASH_VECTORS)
def test_ticket_hash_matches_go_livepeer_vectors(fields: dict[str, object], expected: str) -> None:
    assert ticket(**fields).hash().hex() == expected


def test_aux_data_is_empty_only_when_round_and_hash_are_both_zero() -> None:
    assert ticket().aux_data() == b""
    assert ticket(creation_round=5).aux_data() == (5).to_bytes(32, "big") + ZERO32
    assert ticket(creation_round_block_hash=HASH41).aux_data() == ZERO32 + HASH41
    assert len(ticket(creation_round=10, creation_round_block_hash=HASH41).aux_data()) == 64


def test_contract_args_are_the_solidity_ticket_tuple() -> None:
    t = ticket(recipient=bytes([1]) * 20, sender=bytes([2]) * 20, face_value=7, win_prob=9, sender_nonce=3)
    recipient, sender, face, prob, nonce, rand_hash_arg, aux = t.contract_args()
    assert (recipient, sender) == (checksum(bytes([1]) * 20), checksum(bytes([2]) * 20))
    assert (face, prob, nonce, rand_hash_arg, aux) == (7, 9, 3, ZERO32, b"")


def test_go_signature_vector_verifies_and_high_s_twin_is_refused() -> None:
    address = parse_address(GO_SIG_ADDRESS)
    assert recover(GO_SIG_MESSAGE, GO_SIG) == address
    assert verify(address, GO_SIG_MESSAGE, GO_SIG)
    assert not verify(address, b"", GO_SIG)
    with pytest.raises(InvalidSignature, match="signature s value too high"):
        recover(GO_SIG_MESSAGE, GO_SIG_HIGH_S)
    with pytest.raises(InvalidSignature, match="invalid signature length"):
        recover(GO_SIG_MESSAGE, GO_SIG[:64])
    with pytest.raises(InvalidSignature, match="signature v value must be 27 or 28"):
        recover(GO_SIG_MESSAGE, GO_SIG[:64] + bytes([1]))


def test_malleated_signature_of_our_own_is_refused() -> None:
    message = keccak(b"ticket")
    good = sign(KEY, message)
    s = int.from_bytes(good[32:64], "big")
    assert s <= HALF_N  # we always sign low-S
    twin = good[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - good[64]])
    assert not verify(signatures.address_of(KEY), message, twin)


def test_signatures_are_what_eth_account_personal_sign_produces() -> None:
    account = Account.from_key(KEY)
    message = keccak(b"hello")
    expected = Account.sign_message(encode_defunct(primitive=message), KEY).signature
    assert sign(KEY, message) == bytes(expected)
    assert checksum(signatures.address_of(KEY)) == account.address


def test_address_signature_proves_the_address() -> None:
    address = signatures.address_of(KEY)
    sig = address_signature(KEY)
    assert verify_address_signature(address, sig)
    assert not verify_address_signature(bytes(20), sig)


def test_parse_address_accepts_plain_forms_and_refuses_bad_checksums() -> None:
    raw = bytes.fromhex("3baddb1eee2105893136a3f96c8a963e9c6309d6")
    assert parse_address(GO_SIG_ADDRESS) == raw
    assert parse_address(GO_SIG_ADDRESS.lower()[2:]) == raw
    with pytest.raises(ValueError, match="checksum"):
        parse_address("0x3badDb1eeE2105893136A3F96c8a963E9C6309d6")
    with pytest.raises(ValueError, match="40 hex digits"):
        parse_address("0x1234")


def test_win_probability_gives_the_target_expected_value() -> None:
    ev, face_value = Fraction(10**15), 10**16
    prob = win_probability(ev, face_value)
    assert ticket(face_value=face_value, win_prob=prob).expected_value() >= ev
    assert abs(Fraction(prob, MAX_WIN_PROB) - Fraction(1, 10)) < Fraction(1, 10**12)
    assert win_probability(ev, 0) == 0
    assert win_probability(ev, 10**15) == MAX_WIN_PROB


def test_win_check_is_keccak_of_sig_and_rand_below_win_prob() -> None:
    sig, rand = sign(KEY, keccak(b"x")), 12345
    draw = int.from_bytes(keccak(sig + rand.to_bytes(32, "big")), "big")
    assert is_winning(sig, rand, draw + 1)
    assert not is_winning(sig, rand, draw)
    assert rand_hash(rand) == keccak(rand.to_bytes(32, "big"))


def test_tickets_in_a_payment_share_params_and_differ_by_nonce() -> None:
    payment = Payment(
        sender=bytes([2]) * 20,
        ticket_params=TicketParams(
            recipient=bytes([1]) * 20,
            face_value=(1000).to_bytes(2, "big"),
            win_prob=(5).to_bytes(1, "big"),
            recipient_rand_hash=HASH41,
            seed=(77).to_bytes(1, "big"),
            expiration_block=(900).to_bytes(2, "big"),
        ),
        expiration_params=TicketExpirationParams(creation_round=10, creation_round_block_hash=HASH41),
        ticket_sender_params=[
            TicketSenderParams(sender_nonce=1, sig=b"a"),
            TicketSenderParams(sender_nonce=2, sig=b"b"),
        ],
    )
    found = tickets_in(payment)
    assert [(t.sender_nonce, sig, seed) for t, sig, seed in found] == [(1, b"a", 77), (2, b"b", 77)]
    first = found[0][0]
    assert (first.face_value, first.win_prob, first.creation_round, first.params_expiration_block) == (1000, 5, 10, 900)
    assert tickets_in(Payment(sender=bytes(20))) == []


def test_hostile_oversized_integers_hash_without_raising() -> None:
    assert len(ticket(face_value=2**300, creation_round=-1).hash()) == 32


def test_segment_message_is_keccak_of_gos_flatten() -> None:
    seg = SegData(manifestId=b"abc", seq=7, hash=keccak(b""))
    expected = keccak(b"abc" + (7).to_bytes(32, "big") + keccak(b""))
    assert segment_message(seg) == expected
    with_profiles = SegData(manifestId=b"m", seq=0, hash=ZERO32, profiles=bytes([0xAB, 0x01]))
    assert segment_message(with_profiles) == keccak(b"m" + ZERO32 + ZERO32 + b"ab01")
