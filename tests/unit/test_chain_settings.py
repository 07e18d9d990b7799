"""The chain flags (go-livepeer's spellings too), revert reasons, amounts, and the l1BlockNumber rule."""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from web3.exceptions import ContractLogicError, Web3RPCError

from lpnode.errors import ConfigError
from lpnode.payments.chain_client import ChainClient
from lpnode.payments.chain_errors import revert_reason
from lpnode.payments.command import format_eth, parse_eth_amount
from lpnode.payments.settings import ChainSettings, add_chain_flags, chain_settings

CONTROLLER = "0xD8E8328501E9645d16Cf49539efC04f734606ee4"
DEV_CONTROLLER = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def parse(role: str, *argv: str) -> ChainSettings:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    add_chain_flags(parser, role)
    return chain_settings(parser.parse_args(list(argv)))


def test_off_chain_is_the_default_and_ignores_chain_flags() -> None:
    settings = parse("both")
    assert not settings.on_chain
    assert settings.network == "offchain"
    assert settings.live_payment_interval == 5.0
    assert parse("orchestrator", "-ethUrl", "http://x", "-ticketEV", "bogus").on_chain is False


def test_arbitrum_defaults_come_from_the_network_with_go_spellings() -> None:
    settings = parse("gateway", "-network=arbitrum-one-mainnet", "-ethUrl=https://arb.example/v2/KEY")
    assert settings.on_chain
    assert settings.controller == CONTROLLER
    assert settings.price_feed == "0x639Fe6ab55C921f74e7fac1ee960C0B6293ba612"
    assert settings.redeem_gas == 1_200_000
    assert settings.chain_id == 42161
    assert settings.max_ticket_ev == Fraction(3_000_000_000_000)
    assert settings.max_total_ev == Fraction(20_000_000_000_000)
    assert settings.deposit_multiplier == 1


def test_any_other_network_needs_url_and_controller() -> None:
    with pytest.raises(ConfigError, match="-ethController"):
        parse("orchestrator", "-network", "devchain", "-ethUrl", "http://127.0.0.1:8545")
    with pytest.raises(ConfigError, match="-ethUrl"):
        parse("orchestrator", "-network", "devchain", "-ethController", DEV_CONTROLLER)
    settings = parse(
        "orchestrator",
        "--network",
        "devchain",
        "--eth-url",
        "http://127.0.0.1:8545",
        "--eth-controller",
        DEV_CONTROLLER.lower(),
        "-ticketEV",
        "1000",
        "-maxFaceValue=5000000",
        "-maxGasPrice",
        "2000000000",
        "-livePaymentInterval",
        "1m30s",
    )
    assert settings.controller == DEV_CONTROLLER
    assert settings.price_feed == ""
    assert settings.redeem_gas == 350_000
    assert settings.chain_id is None
    assert settings.ticket_ev == Fraction(1000)
    assert settings.max_face_value == 5_000_000
    assert settings.max_gas_price == 2_000_000_000
    assert settings.live_payment_interval == 90.0


@pytest.mark.parametrize(
    ("command", "flags", "message"),
    [
        ("chain", ["status"], "give --eth-url and --eth-controller (any chain with Livepeer's contracts)"),
        ("chain", ["status", "--network", "offchain"], "--network offchain has no stake; give the chain with"),
        ("deposit", ["--network", "offchain"], "--network offchain has no deposit; give the chain with"),
    ],
)
def test_chain_commands_need_a_chain(
    command: str, flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from lpnode.cli import main

    assert main([command, *flags]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("lpnode: error: " + message), line


def test_password_is_read_from_a_file_and_never_shown(tmp_path: Path) -> None:
    secret = tmp_path / "password.txt"
    secret.write_text("  hunter2-long-password \n")
    base = ["-network", "x", "-ethUrl", "http://127.0.0.1:1", "-ethController", DEV_CONTROLLER]
    settings = parse("gateway", *base, "-ethPassword", str(secret))
    assert settings.password == "hunter2-long-password"
    assert "hunter2" not in repr(settings)
    assert parse("gateway", *base, "-ethPassword=plain-text").password == "plain-text"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["-ethAcctAddr", "0x1234"], "-ethAcctAddr"),
        (["-maxGasPrice", "1.5"], "whole number of wei"),
        (["-maxGasPrice", "lots"], "-maxGasPrice"),
        (["-depositMultiplier", "0"], "-depositMultiplier"),
        (["-maxTicketEV", "0"], "-maxTicketEV"),
        (["-livePaymentInterval", "soon"], "-livePaymentInterval"),
        (["-priceFeedAddr", "feed"], "-priceFeedAddr"),
    ],
)
def test_unusable_flags_are_one_clear_line(flags: list[str], message: str) -> None:
    base = ["-network", "x", "-ethUrl", "http://127.0.0.1:1", "-ethController", DEV_CONTROLLER, "-ethPassword", "pw"]
    with pytest.raises(ConfigError, match=message) as caught:
        parse("gateway", *base, *flags)
    assert "\n" not in str(caught.value)
    assert "pw" not in str(caught.value).split()


def test_each_role_gets_only_its_own_flags() -> None:
    with pytest.raises(SystemExit):
        parse("orchestrator", "-maxTicketEV", "5")
    with pytest.raises(SystemExit):
        parse("gateway", "-ticketEV", "5")


def error_data(reason: str) -> str:
    encoded = reason.encode()
    padded = encoded + bytes(-len(encoded) % 32)
    return "0x08c379a0" + (32).to_bytes(32, "big").hex() + len(encoded).to_bytes(32, "big").hex() + padded.hex()


def test_revert_reasons_are_read_from_every_backend() -> None:
    anvil = ContractLogicError("execution reverted: ticket is used", data=error_data("ticket is used"))
    assert revert_reason(anvil) == "ticket is used"
    hardhat = ContractLogicError(
        "execution reverted: Error: VM Exception while processing transaction: reverted with reason string "
        "'sender is unlocked'"
    )
    assert revert_reason(hardhat) == "sender is unlocked"
    ganache = Web3RPCError(
        "VM Exception while processing transaction: revert ticket did not win",
        rpc_response={"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "x"}},
    )
    assert revert_reason(ganache) == "ticket did not win"
    assert revert_reason(ValueError("connection refused")) is None


class FakeEth:
    def __init__(self, block: dict[str, Any]) -> None:
        self.block = block

    def get_block(self, which: str) -> dict[str, Any]:
        return self.block


class FakeWeb3:
    def __init__(self, block: dict[str, Any]) -> None:
        self.eth = FakeEth(block)


@pytest.mark.parametrize(
    ("block", "expected"),
    [({"number": 300, "l1BlockNumber": "0x1312d00"}, 20_000_000), ({"number": 300}, 300)],
)
def test_l1_block_number_is_arbitrums_when_the_chain_has_it(block: dict[str, Any], expected: int) -> None:
    import asyncio

    client = ChainClient("http://127.0.0.1:1", DEV_CONTROLLER, None)
    client._w3 = FakeWeb3(block)  # type: ignore[assignment]  # Arbitrum itself cannot run here
    try:
        assert asyncio.run(client.l1_block_number()) == expected
    finally:
        client.close()


def test_unreachable_chain_names_the_host_not_the_url_secrets() -> None:
    import asyncio

    from lpnode.payments.chain_errors import ChainError

    client = ChainClient("http://127.0.0.1:9/v2/SECRET-API-KEY?token=T", DEV_CONTROLLER, None, timeout=2)
    try:
        with pytest.raises(ChainError) as caught:
            asyncio.run(client.block_number())
    finally:
        client.close()
    assert "127.0.0.1:9" in str(caught.value)
    assert "SECRET" not in str(caught.value)


def test_eth_amounts() -> None:
    assert parse_eth_amount("0.5", "--deposit") == 5 * 10**17
    assert parse_eth_amount("500000000000000000wei", "--deposit") == 5 * 10**17
    assert parse_eth_amount("2gwei", "--deposit") == 2 * 10**9
    assert parse_eth_amount("1ETH", "--deposit") == 10**18
    with pytest.raises(ConfigError, match="--reserve"):
        parse_eth_amount("half", "--reserve")
    with pytest.raises(ConfigError):
        parse_eth_amount("0.5wei", "--reserve")
    assert format_eth(5 * 10**17) == "0.5 ETH"
    assert format_eth(0) == "0 ETH"
    assert format_eth(1) == "0.000000000000000001 ETH"
