"""A Livepeer probabilistic micropayment ticket: its fields, hash, expected value and win test.

Byte layouts are go-livepeer's ``pm`` package and Livepeer's TicketBroker (research payments-chain.md §5):

- hash = ``keccak256(recipient[20] ‖ sender[20] ‖ pad32(faceValue) ‖ pad32(winProb) ‖ pad32(senderNonce) ‖
  recipientRandHash[32] ‖ auxData)``, with ``auxData = pad32(creationRound) ‖ creationRoundBlockHash[32]``, or
  empty when both are zero (the chain only redeems tickets that carry the 64 bytes);
- a ticket wins when ``keccak256(sig[65] ‖ pad32(recipientRand)) < winProb``;
- its expected value is ``faceValue × winProb / (2^256 − 1)`` wei.

Addresses are 20 raw bytes; integers are Python ints; expected values are exact :class:`~fractions.Fraction`.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from lpnode.payments.signatures import checksum, keccak

if TYPE_CHECKING:
    from lpnode.protocol.lp_rpc_pb2 import Payment

#: The win probability of a ticket that always wins (go's ``maxWinProb``).
MAX_WIN_PROB = 2**256 - 1

_ZERO32 = bytes(32)


def _pad32(value: int) -> bytes:
    # go's LeftPadBytes(big.Int.Bytes(), 32): the magnitude, never truncated (a hostile value over 32 bytes
    # hashes as it is rather than raising).
    value = abs(value)
    return value.to_bytes(max(32, (value.bit_length() + 7) // 8), "big")


def aux_data(creation_round: int, creation_round_block_hash: bytes) -> bytes:
    """``pad32(creationRound) ‖ blockHash``, or ``b""`` when the round is 0 and the hash all zeros."""
    if creation_round == 0 and not creation_round_block_hash.strip(b"\x00"):
        return b""
    return _pad32(creation_round) + _hash32(creation_round_block_hash)


def _hash32(value: bytes) -> bytes:
    # go's BytesToHash: the last 32 bytes, left-padded with zeros when shorter.
    return value[-32:].rjust(32, b"\x00")


def _address(value: bytes) -> bytes:
    # go's BytesToAddress: the last 20 bytes, left-padded with zeros when shorter.
    return value[-20:].rjust(20, b"\x00")


@dataclass(frozen=True)
class Ticket:
    """One ticket. ``sender_nonce`` is a uint32 on the wire (go) and a uint256 on chain.

    ``params_expiration_block`` is not part of the hash: it is the L1 block after which the recipient refuses
    tickets made from these params (it feeds the recipient's ``recipientRand``).
    """

    recipient: bytes
    sender: bytes
    face_value: int
    win_prob: int
    sender_nonce: int
    recipient_rand_hash: bytes
    creation_round: int = 0
    creation_round_block_hash: bytes = _ZERO32
    params_expiration_block: int = 0

    def aux_data(self) -> bytes:
        """64 bytes (creation round and its block hash), or ``b""`` when both are zero."""
        return aux_data(self.creation_round, self.creation_round_block_hash)

    def hash(self) -> bytes:
        """The 32-byte ticket hash the sender signs and the TicketBroker recomputes (``getTicketHash``)."""
        return keccak(
            self.recipient
            + self.sender
            + _pad32(self.face_value)
            + _pad32(self.win_prob)
            + _pad32(self.sender_nonce)
            + self.recipient_rand_hash
            + self.aux_data()
        )

    def expected_value(self) -> Fraction:
        """``faceValue × winProb / MAX_WIN_PROB`` in wei, exact."""
        return Fraction(self.face_value * self.win_prob, MAX_WIN_PROB)

    def contract_args(self) -> tuple[str, str, int, int, int, bytes, bytes]:
        """The Solidity ``Ticket`` struct in field order, for web3: ``(recipient, sender, faceValue, winProb,
        senderNonce, recipientRandHash, auxData)`` with checksum address strings."""
        return (
            checksum(self.recipient),
            checksum(self.sender),
            self.face_value,
            self.win_prob,
            self.sender_nonce,
            self.recipient_rand_hash,
            self.aux_data(),
        )


def win_probability(ev: Fraction | int, face_value: int) -> int:
    """The win probability that gives a ticket of ``face_value`` wei the expected value ``ev`` (go's
    ``recipient.winProb``): 0 for a zero face value, :data:`MAX_WIN_PROB` when the face value equals the EV, else
    ``ev × ceil(MAX_WIN_PROB / face_value)`` (rounded up so the EV is never below the target; a fractional ``ev``
    is rounded up to an integer the same way)."""
    if face_value == 0:
        return 0
    if face_value == ev:
        return MAX_WIN_PROB
    quotient, rest = divmod(MAX_WIN_PROB, face_value)
    if rest:
        quotient += 1
    product = Fraction(ev) * quotient
    return -(-product.numerator // product.denominator)


def rand_hash(rand: int) -> bytes:
    """``recipientRandHash`` = ``keccak256(pad32(recipientRand))``."""
    return keccak(_pad32(rand))


def is_winning(sig: bytes, rand: int, win_prob: int) -> bool:
    """Whether a ticket signed with ``sig`` wins given the recipient's ``rand``: ``keccak256(sig ‖ pad32(rand))``
    read as a uint256 is below ``win_prob`` (go's ``IsWinningTicket``, the chain's check)."""
    return int.from_bytes(keccak(sig + _pad32(rand)), "big") < win_prob


def tickets_in(payment: Payment) -> list[tuple[Ticket, bytes, int]]:
    """The tickets a protobuf ``Payment`` carries, one per ``ticket_sender_params``, each with its signature and
    the params' ``seed`` (an int). A payment without ``ticket_params`` carries none.

    Expiration params come from ``Payment.expiration_params`` as go reads them, falling back to the copy inside
    ``ticket_params`` when a sender left the outer one out.
    """
    if not payment.HasField("ticket_params"):
        return []
    params = payment.ticket_params
    outer = payment.HasField("expiration_params")
    expiration = payment.expiration_params if outer else params.expiration_params
    recipient = _address(bytes(params.recipient))
    sender = _address(bytes(payment.sender))
    face_value = int.from_bytes(params.face_value, "big")
    win_prob = int.from_bytes(params.win_prob, "big")
    recipient_rand_hash = _hash32(bytes(params.recipient_rand_hash))
    round_hash = _hash32(bytes(expiration.creation_round_block_hash))
    expiration_block = int.from_bytes(params.expiration_block, "big")
    seed = int.from_bytes(params.seed, "big")
    return [
        (
            Ticket(
                recipient=recipient,
                sender=sender,
                face_value=face_value,
                win_prob=win_prob,
                sender_nonce=sender_params.sender_nonce,
                recipient_rand_hash=recipient_rand_hash,
                creation_round=expiration.creation_round,
                creation_round_block_hash=round_hash,
                params_expiration_block=expiration_block,
            ),
            bytes(sender_params.sig),
            seed,
        )
        for sender_params in payment.ticket_sender_params
    ]
