"""Ethereum signatures as go-livepeer and Livepeer's TicketBroker make and check them.

A signature is go-livepeer's ``Eth.Sign``: secp256k1 over the EIP-191 personal-sign digest
``keccak256("\\x19Ethereum Signed Message:\\n" ‖ len(message) ‖ message)``, 65 bytes ``R ‖ S ‖ V`` with
``V ∈ {27, 28}`` and a low ``S``. :func:`recover` refuses anything else, as go's ``crypto.VerifySig`` and the
chain's ECDSA library do: accepting the malleated high-S twin of a signature would let a recipient pick
whichever of the two forms wins the ticket lottery.

secp256k1 runs in libsecp256k1 (coincurve): about 0.03 ms to sign and 0.05 ms to recover on a small VM (the
keys a node signs with are kept loaded: loading one costs as much as a signature).

Addresses are 20 raw bytes; :func:`checksum` and :func:`parse_address` convert at the edges (EIP-55).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from coincurve import PrivateKey, PublicKey
from eth_hash.auto import keccak as _keccak

if TYPE_CHECKING:
    from lpnode.protocol.lp_rpc_pb2 import SegData

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
#: The largest ``S`` a valid signature may carry (go's ``secp256k1halfN``, OpenZeppelin's bound).
HALF_N = SECP256K1_N // 2

_PREFIX = b"\x19Ethereum Signed Message:\n"
_HEX = frozenset("0123456789abcdefABCDEF")


class InvalidSignature(ValueError):
    """A signature that is malformed or recovers no signer; ``str()`` says which rule it broke."""


def keccak(data: bytes) -> bytes:
    """Keccak-256 (Ethereum's, not NIST SHA3-256) of ``data``: 32 bytes."""
    return _keccak(data)


def personal_digest(message: bytes) -> bytes:
    """The 32-byte EIP-191 digest that :func:`sign` signs for ``message``."""
    return keccak(_PREFIX + str(len(message)).encode() + message)


def sign(key: bytes, message: bytes) -> bytes:
    """Sign ``message`` with the 32-byte private ``key`` as go-livepeer's ``Eth.Sign``: 65 bytes, low S, V 27/28."""
    # libsecp256k1 always produces the low-S form, so no normalisation is needed here.
    raw = _private_key(key).sign_recoverable(personal_digest(message), hasher=None)
    return raw[:64] + bytes((raw[64] + 27,))


@lru_cache(maxsize=8)
def _private_key(key: bytes) -> PrivateKey:
    # Loading a secret into a PrivateKey costs about as much as a signature with it, and a node signs every ticket
    # and segment with one wallet key: keep the few keys in use loaded.
    return PrivateKey(key)


def recover(message: bytes, signature: bytes) -> bytes:
    """The 20-byte address that signed ``message``; :class:`InvalidSignature` when the signature is not 65 bytes,
    its V is not 27 or 28, its S is above n/2, or no key recovers from it."""
    if len(signature) != 65:
        raise InvalidSignature("invalid signature length")
    if int.from_bytes(signature[32:64], "big") > HALF_N:
        raise InvalidSignature("signature s value too high")
    v = signature[64]
    if v not in (27, 28):
        raise InvalidSignature("signature v value must be 27 or 28")
    try:
        public = PublicKey.from_signature_and_message(
            signature[:64] + bytes((v - 27,)), personal_digest(message), hasher=None
        )
    except Exception as exc:  # coincurve raises plain ValueError/Exception for r or s out of range
        raise InvalidSignature("signature recovers no public key") from exc
    return keccak(public.format(compressed=False)[1:])[12:]


def verify(address: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` over ``message`` is valid (see :func:`recover`) and made by ``address``."""
    try:
        return recover(message, signature) == address
    except InvalidSignature:
        return False


def address_of(key: bytes) -> bytes:
    """The 20-byte Ethereum address of the 32-byte private ``key``."""
    return keccak(PrivateKey(key).public_key.format(compressed=False)[1:])[12:]


def checksum(address: bytes) -> str:
    """The EIP-55 checksum spelling of a 20-byte address (``0x`` and mixed case)."""
    plain = address.hex()
    digest = keccak(plain.encode()).hex()
    text = "0x" + "".join(c.upper() if c.isalpha() and int(digest[i], 16) >= 8 else c for i, c in enumerate(plain))
    return text


def parse_address(text: str) -> bytes:
    """The 20 bytes of an address written as 40 hex digits, with or without ``0x``. Mixed case must be a valid
    EIP-55 checksum (it catches typos); all-lower or all-upper case is taken as is. ValueError otherwise."""
    value = text.strip()
    digits = value[2:] if value[:2] in ("0x", "0X") else value
    if len(digits) != 40 or not set(digits) <= _HEX:
        raise ValueError(f"{text!r} is not an Ethereum address: expected 40 hex digits, optionally after 0x")
    raw = bytes.fromhex(digits)
    if digits != digits.lower() and digits != digits.upper() and checksum(raw)[2:] != digits:
        raise ValueError(
            f"{text!r} has a wrong EIP-55 checksum (mixed case); check the address, or write it in lower case"
        )
    return raw


def address_signature(key: bytes) -> bytes:
    """The signature a node sends to prove its address (``OrchestratorRequest.sig``, BYOC's ``sig``): ``sign`` of
    keccak256 of the EIP-55 address string."""
    return sign(key, keccak(checksum(address_of(key)).encode()))


def verify_address_signature(address: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is :func:`address_signature` of ``address``."""
    return verify(address, keccak(checksum(address).encode()), signature)


def segment_message(seg: SegData) -> bytes:
    """What a ``SegData.sig`` signs: keccak256 of go's ``Flatten()`` =
    ``manifestId ‖ leftpad32(seq) ‖ hash[32] ‖ hex(profiles)``. AI segments carry no profiles, so their last part
    is empty."""
    digest = bytes(seg.hash)[-32:].rjust(32, b"\x00")  # go holds it as a 32-byte Hash
    seq = abs(seg.seq).to_bytes(32, "big")  # big.Int.Bytes() drops the sign
    return keccak(bytes(seg.manifestId) + seq + digest + bytes(seg.profiles).hex().encode())
