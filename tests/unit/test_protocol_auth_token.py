"""Auth tokens: issued by one orchestrator, accepted only by it, only for their session, only for 30 minutes."""

from __future__ import annotations

import pytest

from lpnode.protocol import TOKEN_VALIDITY_SECONDS, AuthTokens, TokenProblem
from lpnode.protocol.lp_rpc_pb2 import AuthToken


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_fresh_token_is_accepted_for_its_session() -> None:
    tokens = AuthTokens(clock=Clock())
    token = tokens.issue("session-1")
    check = tokens.verify(token, session_id="session-1")
    assert check.ok and check.problem is None
    assert token.session_id == "session-1"
    assert token.expiration == 1_700_000_000 + 30 * 60 == 1_700_000_000 + TOKEN_VALIDITY_SECONDS
    assert len(token.token) == 32


def test_issue_without_a_session_id_makes_a_new_random_one() -> None:
    tokens = AuthTokens()
    first, second = tokens.issue(), tokens.issue()
    assert first.session_id and first.session_id != second.session_id
    assert tokens.verify(first).ok and tokens.verify(second).ok


def test_token_survives_the_wire() -> None:
    tokens = AuthTokens()
    token = AuthToken.FromString(tokens.issue("s").SerializeToString())
    assert tokens.verify(token).ok


@pytest.mark.parametrize("token", [None, AuthToken(), AuthToken(session_id="s", expiration=2_000_000_000)])
def test_missing_token_is_refused_with_what_to_do(token: AuthToken | None) -> None:
    check = AuthTokens().verify(token)
    assert check.problem is TokenProblem.MISSING
    assert "GetOrchestrator" in check.message


def test_token_from_another_orchestrator_is_forged() -> None:
    token = AuthTokens().issue("s")
    check = AuthTokens().verify(token)
    assert check.problem is TokenProblem.FORGED
    assert "not issued by this orchestrator" in check.message


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: setattr(t, "session_id", "someone-else"),
        lambda t: setattr(t, "expiration", t.expiration + 3600),
        lambda t: setattr(t, "token", bytes([t.token[0] ^ 1]) + t.token[1:]),
        lambda t: setattr(t, "token", t.token[:16]),
    ],
    ids=["session", "expiration", "mac-bit", "mac-truncated"],
)
def test_altered_token_is_forged(tamper: object) -> None:
    tokens = AuthTokens()
    token = tokens.issue("s")
    tamper(token)  # type: ignore[operator]
    assert tokens.verify(token).problem is TokenProblem.FORGED


def test_token_expires_after_thirty_minutes() -> None:
    clock = Clock()
    tokens = AuthTokens(clock=clock)
    token = tokens.issue("s")
    clock.now += TOKEN_VALIDITY_SECONDS
    assert tokens.verify(token).ok, "still valid at the exact expiration second"
    clock.now += 61
    check = tokens.verify(token)
    assert check.problem is TokenProblem.EXPIRED
    assert "expired 61 s ago" in check.message and "GetOrchestrator" in check.message


def test_token_for_another_session_is_refused() -> None:
    tokens = AuthTokens()
    check = tokens.verify(tokens.issue("gateway-a"), session_id="gateway-b")
    assert check.problem is TokenProblem.WRONG_SESSION
    assert "'gateway-a'" in check.message and "'gateway-b'" in check.message


def test_same_secret_verifies_across_instances_and_matches_go_livepeer_mac() -> None:
    import hashlib
    import hmac

    secret = bytes(range(32))
    token = AuthTokens(secret, clock=Clock(1000.0)).issue("abc")
    assert AuthTokens(secret, clock=Clock(1000.0)).verify(token).ok
    # go-livepeer: HMAC-SHA256(secret, session_id ‖ big.NewInt(expiration).Bytes()); 1000 + 1800 = 0x0af0.
    assert token.token == hmac.new(secret, b"abc" + b"\x0a\xf0", hashlib.sha256).digest()


def test_short_secret_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        AuthTokens(b"short")
