"""The two headers a gateway sends with every AI job, checked in go-livepeer's order.

- ``Livepeer-Payment``: base64 of a protobuf ``Payment``. An empty header is an empty payment (off-chain
  gateways send ``""``); a header that does not decode is refused with **402**.
- ``Livepeer-Segment``: base64 of a protobuf ``SegData`` carrying the session's ``auth_token`` (from
  ``GetOrchestrator``) and the gateway's wanted ``capabilities``. A missing, undecodable, forged or expired
  token, or capabilities this node cannot serve, are refused with **403**.

Signatures (``SegData.sig``, ticket signatures) are only meaningful on-chain; off-chain they are not
checked, as in go-livepeer.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from lpnode.errors import JobError
from lpnode.protocol.auth_token import AuthTokens
from lpnode.protocol.capabilities import incompatibility
from lpnode.protocol.lp_rpc_pb2 import Capabilities, Payment, SegData

PAYMENT_HEADER = "livepeer-payment"
SEGMENT_HEADER = "livepeer-segment"


class PaymentRequiredError(JobError):
    status_code = 402


class ForbiddenError(JobError):
    status_code = 403


@dataclass(frozen=True)
class Credentials:
    """What the headers said: the payment (empty off-chain) and the session the auth token belongs to."""

    payment: Payment
    segment: SegData

    @property
    def session_id(self) -> str:
        return self.segment.auth_token.session_id


def check_credentials(
    headers: Mapping[str, str], tokens: AuthTokens, offered: Callable[[], Capabilities]
) -> Credentials:
    """Decode and check both headers; raises :class:`PaymentRequiredError` (402) or :class:`ForbiddenError` (403).
    ``offered`` gives this node's capabilities; it is only called when the gateway sent capabilities."""
    payment = Payment()
    try:
        payment.ParseFromString(_b64(headers.get(PAYMENT_HEADER, "")))
    except (binascii.Error, ValueError, DecodeError):
        raise PaymentRequiredError(
            "could not decode the Livepeer-Payment header; send base64 of a protobuf Payment, or an empty header "
            "off-chain"
        ) from None
    raw = headers.get(SEGMENT_HEADER, "")
    if not raw:
        raise ForbiddenError(
            "missing Livepeer-Segment header; call GetOrchestrator and send its auth_token in a base64 SegData"
        )
    segment = SegData()
    try:
        segment.ParseFromString(_b64(raw))
    except (binascii.Error, ValueError, DecodeError):
        raise ForbiddenError(
            "could not decode the Livepeer-Segment header; send base64 of a protobuf SegData"
        ) from None
    if segment.HasField("capabilities"):
        reason = incompatibility(segment.capabilities, offered())
        if reason is not None:
            raise ForbiddenError(f"incompatible capabilities: {reason}")
    check = tokens.verify(segment.auth_token if segment.HasField("auth_token") else None)
    if not check.ok:
        raise ForbiddenError(check.message)
    return Credentials(payment, segment)


def _b64(text: str) -> bytes:
    """Standard base64 (go's ``StdEncoding``), tolerating missing padding and URL-safe characters."""
    text = text.strip()
    if not text:
        return b""
    text = text.replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
