"""The two headers a gateway sends with every AI job, checked in go-livepeer's order (the wire format is
:mod:`lpnode.protocol.job_hop`).

- ``Livepeer-Payment``: an empty header is an empty payment (off-chain gateways send ``""``); a header that
  does not decode is refused with **402**.
- ``Livepeer-Segment``: a missing, undecodable, forged or expired token, or capabilities this node cannot
  serve, are refused with **403**.

Signatures (``SegData.sig``, ticket signatures) are only meaningful on-chain; off-chain they are not
checked, as in go-livepeer. On chain the segment must be signed by the payment's sender (403 ``ErrSegSig``),
checked first, as go-livepeer's ``verifySegCreds`` does; the tickets themselves are checked later, once the
job is known to be servable (:mod:`lpnode.orchestrator.payments`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lpnode.errors import ForbiddenError
from lpnode.protocol.auth_token import AuthTokens
from lpnode.protocol.capabilities import incompatibility
from lpnode.protocol.job_hop import PAYMENT_HEADER, SEGMENT_HEADER, decode_payment, decode_segment
from lpnode.protocol.lp_rpc_pb2 import Capabilities, Payment, SegData

if TYPE_CHECKING:
    from lpnode.orchestrator.payments import OrchestratorPayments


@dataclass(frozen=True)
class Credentials:
    """What the headers said: the payment (empty off-chain) and the session the auth token belongs to."""

    payment: Payment
    segment: SegData

    @property
    def session_id(self) -> str:
        return self.segment.auth_token.session_id


def check_credentials(
    headers: Mapping[str, str],
    tokens: AuthTokens,
    offered: Callable[[], Capabilities],
    payments: OrchestratorPayments | None = None,
) -> Credentials:
    """Decode and check both headers; raises :class:`PaymentRequiredError` (402) or :class:`ForbiddenError` (403).
    ``offered`` gives this node's capabilities; it is only called when the gateway sent capabilities.
    ``payments`` (on chain only) checks the segment's signature."""
    payment = decode_payment(headers.get(PAYMENT_HEADER.lower(), ""))
    segment = decode_segment(headers.get(SEGMENT_HEADER.lower(), ""))
    if payments is not None:
        payments.check_segment(segment, payment)
    if segment.HasField("capabilities"):
        reason = incompatibility(segment.capabilities, offered())
        if reason is not None:
            raise ForbiddenError(f"incompatible capabilities: {reason}")
    check = tokens.verify(segment.auth_token if segment.HasField("auth_token") else None)
    if not check.ok:
        raise ForbiddenError(check.message)
    return Credentials(payment, segment)
