"""Session auth tokens an orchestrator hands out in ``OrchestratorInfo.auth_token`` and checks on every job.

A token is ``HMAC-SHA256(secret, session_id ‖ expiration)`` where ``expiration`` (Unix seconds) is
written big-endian with no leading zero bytes, as go-livepeer does. The secret is 32 random bytes per
orchestrator process unless one is given, so tokens from another process (or instance) are refused.
Gateways send the token back inside ``SegData`` (the ``Livepeer-Segment`` header) and fetch a new one
with ``GetOrchestrator`` before it expires.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from lpnode.protocol.lp_rpc_pb2 import AuthToken

TOKEN_VALIDITY_SECONDS = 30 * 60
"""How long a token is accepted after it is issued (go-livepeer's value)."""

SECRET_BYTES = 32


class TokenProblem(enum.StrEnum):
    """Why a token was refused."""

    MISSING = "missing"
    FORGED = "forged"
    EXPIRED = "expired"
    WRONG_SESSION = "wrong session"


@dataclass(frozen=True)
class TokenCheck:
    """The outcome of :meth:`AuthTokens.verify`. ``problem`` is ``None`` when the token is good."""

    problem: TokenProblem | None
    message: str

    @property
    def ok(self) -> bool:
        return self.problem is None


class AuthTokens:
    """Issues and verifies auth tokens with one secret. ``clock`` returns Unix seconds (tests pass a fake)."""

    def __init__(
        self,
        secret: bytes | None = None,
        *,
        validity_seconds: int = TOKEN_VALIDITY_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if secret is not None and len(secret) < 16:
            raise ValueError(f"the auth token secret must be at least 16 bytes, got {len(secret)}")
        self._secret = secret if secret is not None else secrets.token_bytes(SECRET_BYTES)
        self._validity = validity_seconds
        self._clock = clock

    def issue(self, session_id: str | None = None) -> AuthToken:
        """A new token for ``session_id`` (a fresh random id when ``None``), valid for the configured period."""
        session = session_id if session_id is not None else secrets.token_hex(8)
        expiration = int(self._clock()) + self._validity
        return AuthToken(token=self._mac(session, expiration), session_id=session, expiration=expiration)

    def verify(self, token: AuthToken | None, *, session_id: str | None = None) -> TokenCheck:
        """Check ``token``'s signature and expiry, and, when ``session_id`` is given, that it belongs to it."""
        if token is None or not token.token:
            return TokenCheck(
                TokenProblem.MISSING, "no auth token was sent; call GetOrchestrator and send its auth_token in SegData"
            )
        if not hmac.compare_digest(token.token, self._mac(token.session_id, token.expiration)):
            return TokenCheck(
                TokenProblem.FORGED,
                "the auth token was not issued by this orchestrator (or was altered); "
                "call GetOrchestrator for a new one",
            )
        now = self._clock()
        if now > token.expiration:
            return TokenCheck(
                TokenProblem.EXPIRED,
                f"the auth token expired {int(now) - token.expiration} s ago; call GetOrchestrator for a new one",
            )
        if session_id is not None and token.session_id != session_id:
            return TokenCheck(
                TokenProblem.WRONG_SESSION,
                f"the auth token is for session {token.session_id!r}, not {session_id!r}",
            )
        return TokenCheck(None, "ok")

    def _mac(self, session_id: str, expiration: int) -> bytes:
        return hmac.new(self._secret, session_id.encode() + _minimal_big_endian(expiration), hashlib.sha256).digest()


def _minimal_big_endian(value: int) -> bytes:
    """Go's ``big.Int.Bytes()``: the absolute value, big-endian, no leading zeros (empty for 0)."""
    magnitude = abs(value)
    return magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "big")
