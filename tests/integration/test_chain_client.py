"""The chain client, watcher, price feed and ``lpnode deposit`` against a real anvil with the project's contracts.

One dev chain serves the whole module. Arbitrum's Chainlink feed cannot run here, so a tiny aggregator with
Chainlink's interface is compiled and deployed for the price feed test.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Iterator
from fractions import Fraction
from typing import Any, TypeVar

import pytest

from lpnode.cli import main
from lpnode.payments.chain_client import ChainClient
from lpnode.payments.chain_errors import ChainError, ChainRevert, GasPriceTooHigh
from lpnode.payments.chain_watcher import ChainWatcher
from lpnode.payments.devchain import DevChain, start_devchain
from lpnode.payments.keystore import Wallet
from lpnode.payments.price_feed import PriceFeed
from lpnode.payments.signatures import sign
from lpnode.payments.ticket import MAX_WIN_PROB, Ticket, rand_hash

T = TypeVar("T")
ETH = 10**18

AGGREGATOR_SOURCE = """
# pragma version 0.4.3
@external
@view
def decimals() -> uint8:
    return 8

@external
@view
def description() -> String[16]:
    return "ETH / USD"

@external
@view
def latestRoundData() -> (uint80, int256, uint256, uint256, uint80):
    return 7, 300012345678, 1700000000, 1700000001, 7
"""


class Chain:
    """The module's dev chain and the event loop it lives on."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.dev: DevChain = self.loop.run_until_complete(start_devchain())

    def run(self, make: Callable[[], Awaitable[T]]) -> T:
        async def bounded() -> T:
            return await asyncio.wait_for(make(), 60)

        return self.loop.run_until_complete(bounded())

    def client(self, account: int, **kwargs: Any) -> ChainClient:
        wallet = Wallet.from_key(self.dev.accounts[account].key)
        return ChainClient(self.dev.url, self.dev.controller, wallet, **kwargs)

    def close(self) -> None:
        self.loop.run_until_complete(self.dev.close())
        self.loop.close()


@pytest.fixture(scope="module")
def chain() -> Iterator[Chain]:
    c = Chain()
    try:
        yield c
    finally:
        c.close()


async def winning_ticket(chain: Chain, sender: int, recipient: int, face_value: int) -> tuple[Ticket, bytes, int]:
    rounds = chain.dev.contract("RoundsManager").functions
    creation_round = await asyncio.to_thread(lambda: int(rounds.lastInitializedRound().call()))
    block_hash = await asyncio.to_thread(lambda: bytes(rounds.blockHashForRound(creation_round).call()))
    rand = int.from_bytes(secrets.token_bytes(32), "big")
    ticket = Ticket(
        recipient=chain.dev.accounts[recipient].address,
        sender=chain.dev.accounts[sender].address,
        face_value=face_value,
        win_prob=MAX_WIN_PROB,
        sender_nonce=1,
        recipient_rand_hash=rand_hash(rand),
        creation_round=creation_round,
        creation_round_block_hash=block_hash,
    )
    return ticket, sign(chain.dev.accounts[sender].key, ticket.hash()), rand


def test_reads_rounds_blocks_and_contracts_through_the_controller(chain: Chain) -> None:
    client = chain.client(1)

    async def scenario() -> dict[str, Any]:
        return {
            "chain_id": await client.chain_id(),
            "block": await client.block_number(),
            "l1_block": await client.l1_block_number(),
            "round": await client.current_round(),
            "last_initialized": await client.last_initialized_round(),
            "initialized": await client.current_round_initialized(),
            "hash": await client.block_hash_for_round(await client.last_initialized_round()),
            "round_length": await client.round_length(),
            "unlock_period": await client.unlock_period(),
            "validity": await client.ticket_validity_period(),
            "paused": await client.paused(),
            "broker": await client.contract_address("TicketBroker"),
            "gas_price": await client.gas_price(),
        }

    try:
        facts = chain.run(scenario)
    finally:
        client.close()
    assert facts["chain_id"] == chain.dev.chain_id
    assert facts["l1_block"] == facts["block"] > 0  # anvil has no l1BlockNumber: the block number stands in
    assert facts["initialized"] and facts["round"] == facts["last_initialized"] >= 1
    assert len(facts["hash"]) == 32 and any(facts["hash"])
    assert facts["round_length"] == chain.dev.round_length
    assert facts["unlock_period"] == facts["validity"] == 2
    assert facts["paused"] is False
    assert facts["broker"] == chain.dev.addresses["TicketBroker"]
    assert facts["gas_price"] > 0


def test_funding_unlocking_and_reverts_explained(chain: Chain) -> None:
    client = chain.client(2)
    me = chain.dev.accounts[2].address

    async def scenario() -> None:
        await client.fund_deposit_and_reserve(ETH, ETH // 2)
        await client.fund_deposit(ETH // 4)
        await client.fund_reserve(ETH // 4)
        info = await client.sender_info(me)
        assert (info.deposit, info.reserve, info.withdraw_round) == (ETH + ETH // 4, ETH // 2 + ETH // 4, 0)
        with pytest.raises(ChainRevert, match=r"^no unlock request in progress$"):
            await client.cancel_unlock()
        with pytest.raises(ChainRevert, match=r"^no unlock request in progress$"):
            await client.withdraw()
        tx_hash = await client.unlock()
        assert tx_hash.startswith("0x") and len(tx_hash) == 66
        info = await client.sender_info(me)
        assert info.withdraw_round == await client.current_round() + 2
        with pytest.raises(ChainRevert, match=r"^account is locked$"):
            await client.withdraw()
        await client.cancel_unlock()
        assert (await client.sender_info(me)).withdraw_round == 0

    try:
        chain.run(scenario)
    finally:
        client.close()


def test_a_winning_ticket_is_redeemed_once_and_credits_the_recipient(chain: Chain) -> None:
    sender, recipient = 3, 4
    chain.run(lambda: chain.dev.fund_sender(chain.dev.accounts[sender].key, ETH, ETH))
    chain.run(lambda: chain.dev.activate(chain.dev.accounts[recipient].address))
    client = chain.client(recipient)
    face_value = 10**15

    async def scenario() -> None:
        ticket, sig, rand = await winning_ticket(chain, sender, recipient, face_value)
        fees_before = await client.pending_fees(ticket.recipient)
        assert not await client.is_used(ticket.hash())
        await client.redeem_winning_ticket(ticket, sig, rand)
        assert await client.is_used(ticket.hash())
        assert (await client.sender_info(ticket.sender)).deposit == ETH - face_value
        assert await client.pending_fees(ticket.recipient) == fees_before + face_value
        with pytest.raises(ChainRevert, match=r"^ticket is used$"):
            await client.redeem_winning_ticket(ticket, sig, rand)
        other, _, other_rand = await winning_ticket(chain, sender, recipient, face_value)
        forged = sign(chain.dev.accounts[5].key, other.hash())
        with pytest.raises(ChainRevert, match=r"^invalid signature over ticket hash$"):
            await client.redeem_winning_ticket(other, forged, other_rand)
        balance = await client.eth_balance(ticket.recipient)
        await client.withdraw_fees(face_value)
        assert await client.eth_balance(ticket.recipient) > balance

    try:
        chain.run(scenario)
    finally:
        client.close()


def test_nothing_is_sent_while_gas_is_above_the_cap(chain: Chain) -> None:
    client = chain.client(6, max_gas_price=1)
    me = chain.dev.accounts[6].address

    async def scenario() -> None:
        nonce = await asyncio.to_thread(
            lambda: chain.dev.w3.eth.get_transaction_count(chain.dev.accounts[6].checksum_address)
        )
        with pytest.raises(GasPriceTooHigh, match="-maxGasPrice 1 wei"):
            await client.fund_deposit(ETH)
        assert (await client.sender_info(me)).deposit == 0
        after = await asyncio.to_thread(
            lambda: chain.dev.w3.eth.get_transaction_count(chain.dev.accounts[6].checksum_address)
        )
        assert after == nonce

    try:
        chain.run(scenario)
    finally:
        client.close()


def test_a_wrong_controller_is_a_clear_error(chain: Chain) -> None:
    client = ChainClient(chain.dev.url, chain.dev.accounts[9].checksum_address, None)
    try:
        with pytest.raises(ChainError, match="no contract at the Controller address"):
            chain.run(client.check_controller)
    finally:
        client.close()


def test_the_watcher_keeps_chain_facts_fresh(chain: Chain) -> None:
    orchestrator = chain.dev.accounts[7].address
    client = chain.client(7)
    watcher = ChainWatcher(client, poll_seconds=0.1)

    async def scenario() -> None:
        await watcher.start()
        assert watcher.is_active(orchestrator) is False
        assert watcher.current_round() == await client.current_round()
        assert watcher.last_initialized_round() == await client.last_initialized_round()
        assert watcher.round_block_hash() == await client.block_hash_for_round(watcher.last_initialized_round())
        assert watcher.last_seen_l1_block() > 0 and watcher.gas_price() > 0
        assert (await watcher.sender_info(chain.dev.accounts[8].address)).deposit == 0
        await chain.dev.activate(orchestrator)
        await chain.dev.fund_sender(chain.dev.accounts[8].key, ETH, ETH)
        started = await chain.dev.advance_round()
        for _ in range(100):
            # The round starts a block before it is initialised: a poll between the two sees it uninitialised.
            initialized = watcher.last_initialized_round() == watcher.current_round() == started
            if initialized and watcher.is_active(orchestrator):
                break
            await asyncio.sleep(0.05)
        assert watcher.current_round() == watcher.last_initialized_round() == started
        assert watcher.is_active(orchestrator)
        assert (await watcher.sender_info(chain.dev.accounts[8].address)).deposit == ETH
        snapshot = watcher.snapshot()
        assert snapshot["current_round"] == started and snapshot["last_error"] == ""
        await watcher.close()

    try:
        chain.run(scenario)
    finally:
        client.close()


def test_price_feed_gives_wei_per_usd(chain: Chain) -> None:
    import vyper

    compiled = vyper.compile_code(AGGREGATOR_SOURCE, output_formats=["abi", "bytecode"])
    deployer = chain.dev.accounts[0]

    def deploy() -> str:
        w3 = chain.dev.w3
        factory = w3.eth.contract(abi=compiled["abi"], bytecode=compiled["bytecode"])
        tx = factory.constructor().build_transaction(
            {
                "from": deployer.checksum_address,
                "nonce": w3.eth.get_transaction_count(deployer.checksum_address, "pending"),
                "chainId": chain.dev.chain_id,
            }
        )
        signed = w3.eth.account.sign_transaction(tx, deployer.key)
        receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction), 30, 0.01)
        return str(receipt["contractAddress"])

    address = chain.run(lambda: asyncio.to_thread(deploy))
    client = ChainClient(chain.dev.url, chain.dev.controller, None)
    feed = PriceFeed(client, address)

    async def scenario() -> None:
        await feed.start()
        await feed.close()

    try:
        chain.run(scenario)
    finally:
        client.close()
    assert feed.eth_price == Fraction(300012345678, 10**8)
    assert feed.wei_per_unit() == Fraction(ETH * 10**8, 300012345678)
    assert feed.currency == "USD"
    assert feed.to_wei(Fraction(3000123456780, 10**9)) == ETH  # 3000.12345678 USD is one ETH


def test_deposit_command_funds_shows_and_explains_reverts(
    chain: Chain, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from lpnode.payments.keystore import create_wallet

    wallet, path = create_wallet(tmp_path / "keystore", "a-password")
    chain.run(lambda: fund(chain, wallet.address, 3 * ETH))
    base = [
        "--eth-url",
        chain.dev.url,
        "--eth-controller",
        chain.dev.controller,
        "--eth-keystore-path",
        str(path),
        "--eth-password",
        "a-password",
    ]
    assert main(["deposit", *base, "--deposit", "0.5", "--reserve", "500000000000000000wei"]) == 0
    out = capsys.readouterr().out
    assert "transaction 0x" in out and "deposit   0.5 ETH" in out and "reserve   0.5 ETH" in out
    assert "a-password" not in out
    assert main(["deposit", *base, "cancel-unlock"]) == 1
    err = capsys.readouterr().err
    assert (
        err.strip() == "lpnode: error: cancel-unlock reverted: no unlock request in progress "
        "(no unlock is in progress: run `lpnode deposit unlock` first)"
    )
    assert main(["deposit", *base, "unlock"]) == 0
    assert "unlocking: withdrawable from round" in capsys.readouterr().out
    assert main(["deposit", *base, "show"]) == 0
    assert "unlocking" in capsys.readouterr().out


async def fund(chain: Chain, address: bytes, amount: int) -> None:
    def run() -> None:
        w3 = chain.dev.w3
        source = chain.dev.accounts[0]
        tx = {
            "from": source.checksum_address,
            "to": w3.to_checksum_address(address),
            "value": amount,
            "gas": 21_000,
            "gasPrice": w3.eth.gas_price * 2,
            "nonce": w3.eth.get_transaction_count(source.checksum_address, "pending"),
            "chainId": chain.dev.chain_id,
        }
        signed = w3.eth.account.sign_transaction(tx, source.key)
        w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction), 30, 0.01)

    await asyncio.to_thread(run)


def test_open_chain_unlocks_the_wallet_and_starts_watching(chain: Chain, tmp_path: Any) -> None:
    from lpnode.errors import ConfigError
    from lpnode.payments.keystore import create_wallet
    from lpnode.payments.settings import ChainSettings, open_chain

    wallet, _ = create_wallet(tmp_path / "keystore", "pw")
    settings = ChainSettings(network="devchain", eth_url=chain.dev.url, controller=chain.dev.controller, password="pw")

    async def scenario() -> None:
        node = await open_chain(settings, tmp_path, poll_seconds=0.1)  # the keystore defaults to DATA_DIR/keystore
        try:
            assert node.wallet.address == wallet.address
            assert node.client.address == wallet.address
            assert node.watcher.current_round() >= 1 and node.price_feed is None
        finally:
            await node.close()
        arbitrum = ChainSettings(network="arbitrum-one-mainnet", eth_url=chain.dev.url, password="pw")
        with pytest.raises(
            ConfigError, match="serves chain id 31337, but -network arbitrum-one-mainnet is chain id 42161"
        ):
            await open_chain(arbitrum, tmp_path)
        wrong = ChainSettings(
            network="devchain", eth_url=chain.dev.url, controller=wallet.checksum_address, password="pw"
        )
        with pytest.raises(ConfigError, match="no contract at the Controller address"):
            await open_chain(wrong, tmp_path)

    chain.run(scenario)
