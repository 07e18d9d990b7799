"""What `lpnode chain` reads from its arguments and says about an account's place on chain, without a chain.

The states below are built by hand (no chain runs here): the integration test reads real ones from the dev chain.
"""

from __future__ import annotations

import pytest

from lpnode.errors import ConfigError
from lpnode.payments.chain_command import service_uri
from lpnode.payments.staking import (
    Delegator,
    OperatorState,
    Pool,
    Transcoder,
    format_percent,
    format_token,
    parse_lpt,
    parse_percent,
    same_service,
)
from lpnode.payments.staking_abi import MAX_ROUND
from lpnode.payments.staking_reverts import explain_revert

ME, OTHER, BIG = b"\x01" * 20, b"\x02" * 20, b"\x03" * 20
LPT = 10**18


def state(
    *, bonded: int = 0, delegate: bytes = bytes(20), registered: bool = False, active: bool = False,
    pool: tuple[bytes, ...] = (), max_size: int = 100, last_stake: int = 0, deactivation: int = 0,
) -> OperatorState:  # fmt: skip
    return OperatorState(
        address=ME, current_round=10, round_initialized=True, round_length=20, round_start_block=200, block=205,
        eth=LPT, lpt=LPT, allowance=0,
        delegator=Delegator(bonded, 0, delegate, bonded, 9, 9, 0),
        transcoder=Transcoder(0, 0, 0, 11 if ME in pool else 0, deactivation),
        registered=registered, active=active, pending_stake=bonded, pending_fees=0, service_uri="",
        pool=Pool(pool, max_size, last_stake),
    )  # fmt: skip


def test_percentages_are_parts_per_million() -> None:
    assert parse_percent("10", "--reward-cut") == 100_000
    assert parse_percent("12.5%", "--fee-share") == 125_000
    assert format_percent(125_000) == "12.5%" and format_percent(1_000_000) == "100%"
    for bad in ("101", "-1", "abc", "0.00001"):
        with pytest.raises(ConfigError):
            parse_percent(bad, "--reward-cut")


def test_lpt_amounts_and_their_display() -> None:
    assert parse_lpt("100", "amount") == 100 * LPT and parse_lpt("5000wei", "amount") == 5000
    assert parse_lpt("0.5lpt", "amount") == LPT // 2
    with pytest.raises(ConfigError, match="more than 0"):
        parse_lpt("0", "amount")
    assert format_token(LPT * 25 // 10, "LPT") == "2.5 LPT"
    assert format_token(LPT // 3, "LPT") == "~0.333333 LPT"


def test_service_uris_compare_host_and_port_as_go_does() -> None:
    assert same_service("https://127.0.0.1:8935", "127.0.0.1:8935")
    assert same_service("https://Node.Example:443", "https://node.example")
    assert not same_service("https://127.0.0.1:8935", "https://127.0.0.1:8936")
    assert service_uri("203.0.113.7:8935") == "https://203.0.113.7:8935"
    with pytest.raises(ConfigError, match="https://HOST:PORT"):
        service_uri("203.0.113.7")


def test_why_an_account_is_not_active() -> None:
    assert "not registered: bond LPT" in (state().why_not_active() or "")
    delegating = state(bonded=LPT, delegate=OTHER).why_not_active() or ""
    assert "bonded to 0x0202" in delegating
    joining = state(bonded=LPT, delegate=ME, registered=True, pool=(ME,)).why_not_active() or ""
    assert joining == "in the pool: joins the active set at round 11 (in 15 blocks)"
    full = state(bonded=LPT, delegate=ME, registered=True, pool=(BIG, OTHER), max_size=2, last_stake=3 * LPT)
    assert full.stake_to_enter() == 2 * LPT + 1
    assert "it is full (2 of 2) and its smallest stake is 3 LPT" in (full.why_not_active() or "")
    room = state(bonded=LPT, delegate=ME, registered=True, pool=(BIG,))
    assert "run `lpnode chain transcoder" in (room.why_not_active() or "")
    active = state(bonded=LPT, delegate=ME, registered=True, active=True, pool=(ME,), deactivation=MAX_ROUND)
    assert active.why_not_active() is None


def test_reverts_are_explained_with_the_fix() -> None:
    assert "run `lpnode chain initialize-round`" in explain_revert("current round is not initialized")
    assert explain_revert("something new") == "something new"
