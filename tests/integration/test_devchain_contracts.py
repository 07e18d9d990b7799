"""The project's contracts on a real anvil: deployment, funding, redemption, and Livepeer's revert strings.

One dev chain serves the module; each test uses its own accounts so that the tests do not depend on each other.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Coroutine, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
from web3.logs import DISCARD

from lpnode.payments.devchain import CONTRACTS, DevAccount, DevChain, DevChainError, artifact, start_devchain
from lpnode.payments.signatures import HALF_N, SECP256K1_N, checksum, keccak, sign
from lpnode.payments.ticket import MAX_WIN_PROB, Ticket, is_winning, rand_hash

ROOT = Path(__file__).resolve().parents[2]
ETH = 10**18
T = TypeVar("T")

# Research §6: Livepeer's deployed selectors (Arbitrum One), for every function lpnode calls.
LIVEPEER_SELECTORS = {
    "TicketBroker": {
        "redeemWinningTicket((address,address,uint256,uint256,uint256,bytes32,bytes),bytes,uint256)": "ec8b3cb6",
        "fundDepositAndReserve(uint256,uint256)": "511f4073",
        "fundDeposit()": "6caa736b",
        "fundReserve()": "6f9c3c8f",
        "fundDepositAndReserveFor(address,uint256,uint256)": "989f789c",
        "getSenderInfo(address)": "e1a589da",
        "getReserveInfo(address)": "5b6333eb",
        "claimedReserve(address,address)": "4ac826da",
        "claimableReserve(address,address)": "81779f38",
        "usedTickets(bytes32)": "59a515ba",
        "getTicketHash((address,address,uint256,uint256,uint256,bytes32,bytes))": "b03fa864",
        "unlock()": "a69df4b5",
        "cancelUnlock()": "c2c4c2c8",
        "withdraw()": "3ccfd60b",
        "isUnlockInProgress(address)": "121cdcc2",
        "unlockPeriod()": "20d3a0b4",
        "ticketValidityPeriod()": "856a2cf8",
        "batchRedeemWinningTickets((address,address,uint256,uint256,uint256,bytes32,bytes)[],bytes[],uint256[])": (
            "d01b808e"
        ),
    },
    "RoundsManager": {
        "currentRound()": "8a19c8bc",
        "currentRoundInitialized()": "219bc76c",
        "currentRoundLocked()": "6841f253",
        "currentRoundStartBlock()": "8fa148f2",
        "lastInitializedRound()": "8807f36e",
        "roundLength()": "8b649b94",
        "blockHashForRound(uint256)": "3aa4add4",
        "blockHash(uint256)": "85df51fd",
        "initializeRound()": "d4807fb2",
        "blockNum()": "8ae63d6d",
    },
    "BondingManager": {
        "isActiveTranscoder(address)": "08802374",
        "transcoderStatus(address)": "8b2f1652",
        "transcoderTotalStake(address)": "9ef9df94",
        "getTranscoder(address)": "5dce9948",
        "getDelegator(address)": "a64ad595",
        "pendingFees(address,uint256)": "f595f1cc",
        "withdrawFees(address,uint256)": "ad3b1b47",
        "getFirstTranscoderInPool()": "88a6c749",
        "getNextTranscoderInPool(address)": "235c9603",
        "getTranscoderPoolSize()": "2a4e0d55",
    },
    "ServiceRegistry": {"getServiceURI(address)": "214c2a4b", "setServiceURI(string)": "5f11301b"},
    "Controller": {"getContract(bytes32)": "e16c7d98", "paused()": "5c975abb"},
}

LIVEPEER_EVENTS = {
    "TicketBroker": [
        "WinningTicketRedeemed(address,address,uint256,uint256,uint256,uint256,bytes)",
        "WinningTicketTransfer(address,address,uint256)",
        "DepositFunded(address,uint256)",
        "ReserveFunded(address,uint256)",
        "ReserveClaimed(address,address,uint256)",
        "Unlock(address,uint256,uint256)",
        "UnlockCancelled(address)",
        "Withdrawal(address,uint256,uint256)",
    ],
    "ServiceRegistry": ["ServiceURIUpdate(address,string)"],
    # Livepeer's IBondingManager, Minter and LivepeerToken events.
    "BondingManager": [
        "TranscoderUpdate(address,uint256,uint256)",
        "TranscoderActivated(address,uint256)",
        "TranscoderDeactivated(address,uint256)",
        "Reward(address,uint256)",
        "Bond(address,address,address,uint256,uint256)",
        "Unbond(address,address,uint256,uint256,uint256)",
        "Rebond(address,address,uint256,uint256)",
        "WithdrawStake(address,uint256,uint256,uint256)",
        "WithdrawFees(address,address,uint256)",
        "EarningsClaimed(address,address,uint256,uint256,uint256,uint256)",
    ],
    "Minter": ["SetCurrentRewardTokens(uint256,uint256)"],
    "LivepeerToken": [
        "Transfer(address,address,uint256)",
        "Approval(address,address,uint256)",
        "Mint(address,uint256)",
        "Burn(address,uint256)",
    ],
}


def _canonical(item: dict[str, Any]) -> str:
    def kind(param: dict[str, Any]) -> str:
        typ: str = param["type"]
        if typ.startswith("tuple"):
            return "(" + ",".join(kind(c) for c in param["components"]) + ")" + typ[len("tuple") :]
        return typ

    return f"{item['name']}(" + ",".join(kind(p) for p in item["inputs"]) + ")"


class Env:
    """The module's dev chain and the event loop it lives on (the loop runs in the test thread)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.chain: DevChain = self.run(start_devchain(accounts=24))
        self._next = 1  # account 0 is the deployer

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, 60))

    def account(self) -> DevAccount:
        account = self.chain.accounts[self._next]
        self._next += 1
        return account

    def close(self) -> None:
        self.run(self.chain.close())
        self.loop.close()


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    e = Env()
    try:
        yield e
    finally:
        e.close()


async def make_ticket(
    chain: DevChain,
    sender: DevAccount,
    recipient: bytes,
    *,
    face_value: int = ETH // 100,
    win_prob: int = MAX_WIN_PROB,
    nonce: int = 1,
    rand: int = 12345,
    creation_round: int | None = None,
    block_hash: bytes | None = None,
) -> Ticket:
    if creation_round is None:
        creation_round = int(await chain.call("RoundsManager", "lastInitializedRound"))
    if block_hash is None:
        block_hash = bytes(await chain.call("RoundsManager", "blockHashForRound", creation_round))
    return Ticket(
        recipient=recipient,
        sender=sender.address,
        face_value=face_value,
        win_prob=win_prob,
        sender_nonce=nonce,
        recipient_rand_hash=rand_hash(rand),
        creation_round=creation_round,
        creation_round_block_hash=block_hash,
    )


async def redeem_reason(chain: DevChain, ticket: Ticket, sig: bytes, rand: int) -> str:
    """The revert string of redeeming this ticket now (an eth_call; nothing is sent)."""
    with pytest.raises(DevChainError) as caught:
        await chain.call("TicketBroker", "redeemWinningTicket", ticket.contract_args(), sig, rand)
    return caught.value.reason


def test_selectors_and_events_are_livepeers() -> None:
    for name, expected in LIVEPEER_SELECTORS.items():
        abi = artifact(name)["abi"]
        ours = {_canonical(f): keccak(_canonical(f).encode())[:4].hex() for f in abi if f["type"] == "function"}
        for signature, selector in expected.items():
            assert ours.get(signature) == selector, f"{name}.{signature}"
    for name, events in LIVEPEER_EVENTS.items():
        ours_events = {_canonical(e) for e in artifact(name)["abi"] if e["type"] == "event"}
        assert set(events) <= ours_events, name


def test_committed_artifacts_match_the_sources() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "compile-contracts"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_deployment_is_wired_through_the_controller(env: Env) -> None:
    chain = env.chain
    assert chain.chain_id == 31337
    for name in CONTRACTS[1:]:
        assert env.run(chain.call("Controller", "getContract", keccak(name.encode()))) == chain.addresses[name]
    jobs_manager = env.run(chain.call("Controller", "getContract", keccak(b"JobsManager")))
    assert jobs_manager == chain.addresses["TicketBroker"]
    assert env.run(chain.call("Controller", "paused")) is False
    assert env.run(chain.call("TicketBroker", "ticketValidityPeriod")) == 2
    assert env.run(chain.call("TicketBroker", "unlockPeriod")) == 2
    assert env.run(chain.call("RoundsManager", "currentRoundInitialized")) is True
    current = env.run(chain.current_round())
    assert current >= 1
    assert env.run(chain.call("RoundsManager", "blockHashForRound", current)) != bytes(32)
    assert "round already initialized" in env.run(_send_reason(chain, "RoundsManager", "initializeRound"))


async def _send_reason(chain: DevChain, name: str, fn: str, *args: Any, **kw: Any) -> str:
    with pytest.raises(DevChainError) as caught:
        await chain.transact(name, fn, *args, **kw)
    return caught.value.reason


def test_winning_ticket_credits_fees_that_withdraw_pays_out(env: Env) -> None:
    chain, sender, recipient = env.chain, env.account(), env.account()
    env.run(chain.fund_sender(sender.key, ETH, ETH // 2))
    assert env.run(chain.call("TicketBroker", "getSenderInfo", sender.checksum_address)) == [(ETH, 0), (ETH // 2, 0)]
    env.run(chain.activate(recipient.address))
    rand = 424242
    ticket = env.run(make_ticket(chain, sender, recipient.address, face_value=ETH // 10, rand=rand))
    sig = sign(sender.key, ticket.hash())
    assert is_winning(sig, rand, ticket.win_prob)
    assert env.run(chain.call("TicketBroker", "getTicketHash", ticket.contract_args())) == ticket.hash()

    other = env.account()  # anyone may submit a winning ticket; the fee goes to its recipient
    receipt = env.run(
        chain.transact("TicketBroker", "redeemWinningTicket", ticket.contract_args(), sig, rand, key=other.key)
    )
    broker = chain.contract("TicketBroker")
    redeemed = broker.events.WinningTicketRedeemed().process_receipt(receipt, errors=DISCARD)
    assert redeemed[0]["args"]["recipientRand"] == rand
    assert redeemed[0]["args"]["senderNonce"] == ticket.sender_nonce
    transfer = broker.events.WinningTicketTransfer().process_receipt(receipt, errors=DISCARD)
    assert transfer[0]["args"]["amount"] == ETH // 10
    assert env.run(chain.call("TicketBroker", "usedTickets", ticket.hash())) is True
    deposit = env.run(chain.call("TicketBroker", "getSenderInfo", sender.checksum_address))[0][0]
    assert deposit == ETH - ETH // 10

    current = env.run(chain.current_round())
    assert env.run(chain.call("BondingManager", "pendingFees", recipient.checksum_address, current)) == ETH // 10
    before = chain.w3.eth.get_balance(recipient.checksum_address)
    payee = env.account()
    payee_before = chain.w3.eth.get_balance(payee.checksum_address)
    env.run(chain.transact("BondingManager", "withdrawFees", payee.checksum_address, ETH // 10, key=recipient.key))
    assert chain.w3.eth.get_balance(payee.checksum_address) == payee_before + ETH // 10
    assert chain.w3.eth.get_balance(recipient.checksum_address) < before  # paid only the gas
    assert env.run(chain.call("BondingManager", "pendingFees", recipient.checksum_address, current)) == 0
    assert "insufficient fees to withdraw" in env.run(
        _send_reason(chain, "BondingManager", "withdrawFees", payee.checksum_address, 1, key=recipient.key)
    )

    assert env.run(redeem_reason(chain, ticket, sig, rand)) == "ticket is used"


def test_face_value_beyond_the_deposit_comes_from_the_reserve_share(env: Env) -> None:
    chain, sender, recipient = env.chain, env.account(), env.account()
    env.run(chain.fund_sender(sender.key, ETH // 10, ETH))
    env.run(chain.activate(recipient.address))
    pool = env.run(chain.call("BondingManager", "getTranscoderPoolSize"))
    share = ETH // pool
    ticket = env.run(make_ticket(chain, sender, recipient.address, face_value=ETH // 10 + share + 5, nonce=7))
    sig = sign(sender.key, ticket.hash())
    receipt = env.run(chain.transact("TicketBroker", "redeemWinningTicket", ticket.contract_args(), sig, 12345))
    claimed = chain.contract("TicketBroker").events.ReserveClaimed().process_receipt(receipt, errors=DISCARD)
    assert claimed[0]["args"]["amount"] == share
    assert (
        env.run(chain.call("TicketBroker", "claimedReserve", sender.checksum_address, recipient.checksum_address))
        == share
    )
    info = env.run(chain.call("TicketBroker", "getSenderInfo", sender.checksum_address))
    assert info == [(0, 0), (ETH - share, share)]
    current = env.run(chain.current_round())
    assert (
        env.run(chain.call("BondingManager", "pendingFees", recipient.checksum_address, current)) == ETH // 10 + share
    )


def test_redeem_refusals_carry_livepeers_revert_strings(env: Env) -> None:
    chain, sender, recipient, stranger = env.chain, env.account(), env.account(), env.account()
    env.run(chain.fund_sender(sender.key, ETH, ETH))
    env.run(chain.activate(recipient.address))
    ticket = env.run(make_ticket(chain, sender, recipient.address, nonce=3))
    good = sign(sender.key, ticket.hash())
    reason = lambda t, s, r=12345: env.run(redeem_reason(chain, t, s, r))  # noqa: E731

    assert reason(ticket, sign(stranger.key, ticket.hash())) == "invalid signature over ticket hash"
    high_s = good[:32] + (SECP256K1_N - int.from_bytes(good[32:64], "big")).to_bytes(32, "big") + bytes([55 - good[64]])
    assert int.from_bytes(high_s[32:64], "big") > HALF_N
    assert reason(ticket, high_s) == "ECDSA: invalid signature 's' value"
    assert reason(ticket, good[:64] + bytes([good[64] - 27])) == "ECDSA: invalid signature 'v' value"
    assert reason(ticket, good[:64]) == "INVALID_SIGNATURE_LENGTH"
    assert reason(ticket, good, 999) == "recipientRand does not match recipientRandHash"

    losing = replace(ticket, win_prob=0)
    assert reason(losing, sign(sender.key, losing.hash())) == "ticket did not win"
    no_aux = replace(ticket, creation_round=0, creation_round_block_hash=bytes(32))
    assert reason(no_aux, sign(sender.key, no_aux.hash())) == "invalid length for ticket auxData: must be 64 bytes"
    wrong_hash = replace(ticket, creation_round_block_hash=b"\x01" * 32)
    assert reason(wrong_hash, sign(sender.key, wrong_hash.hash())) == (
        "ticket creationRoundBlockHash invalid for creationRound"
    )
    future = replace(ticket, creation_round=ticket.creation_round + 50)
    assert reason(future, sign(sender.key, future.hash())) == "ticket creationRound does not have a block hash"
    no_recipient = replace(ticket, recipient=bytes(20))
    assert reason(no_recipient, sign(sender.key, no_recipient.hash())) == "ticket recipient is null address"

    broke = env.account()  # never funded
    unfunded = env.run(make_ticket(chain, broke, recipient.address))
    assert reason(unfunded, sign(broke.key, unfunded.hash())) == "sender deposit and reserve are zero"

    unregistered = replace(ticket, recipient=stranger.address)
    assert reason(unregistered, sign(sender.key, unregistered.hash())) == "transcoder must be active"

    # Two rounds later the ticket has expired (ticketValidityPeriod 2).
    env.run(chain.advance_round())
    env.run(chain.advance_round())
    assert reason(ticket, good) == "ticket is expired"


def test_round_must_be_initialised_to_redeem(env: Env) -> None:
    chain, sender, recipient = env.chain, env.account(), env.account()
    env.run(chain.fund_sender(sender.key, ETH, 0))
    env.run(chain.activate(recipient.address))
    ticket = env.run(make_ticket(chain, sender, recipient.address, nonce=11))
    sig = sign(sender.key, ticket.hash())
    start = env.run(chain.call("RoundsManager", "currentRoundStartBlock"))
    env.run(chain.mine(start + chain.round_length - env.run(chain.block_number())))
    assert env.run(chain.call("RoundsManager", "currentRoundInitialized")) is False
    assert env.run(redeem_reason(chain, ticket, sig, 12345)) == "current round is not initialized"
    env.run(chain.initialize_round())
    env.run(chain.transact("TicketBroker", "redeemWinningTicket", ticket.contract_args(), sig, 12345))


def test_unlock_withdraw_and_their_refusals(env: Env) -> None:
    chain, sender, recipient = env.chain, env.account(), env.account()
    key = sender.key
    assert env.run(_send_reason(chain, "TicketBroker", "unlock", key=key)) == "sender deposit and reserve are zero"
    assert "msg.value does not equal sum of deposit amount and reserve amount" in env.run(
        _send_reason(chain, "TicketBroker", "fundDepositAndReserve", ETH, ETH, key=key, value=ETH)
    )
    env.run(chain.fund_sender(key, ETH, ETH // 2))
    env.run(chain.activate(recipient.address))
    assert env.run(_send_reason(chain, "TicketBroker", "cancelUnlock", key=key)) == "no unlock request in progress"
    assert env.run(_send_reason(chain, "TicketBroker", "withdraw", key=key)) == "no unlock request in progress"

    env.run(chain.transact("TicketBroker", "unlock", key=key))
    assert env.run(chain.call("TicketBroker", "isUnlockInProgress", sender.checksum_address)) is True
    assert env.run(_send_reason(chain, "TicketBroker", "unlock", key=key)) == "unlock already initiated"
    assert env.run(_send_reason(chain, "TicketBroker", "withdraw", key=key)) == "account is locked"
    env.run(chain.transact("TicketBroker", "cancelUnlock", key=key))
    assert env.run(chain.call("TicketBroker", "isUnlockInProgress", sender.checksum_address)) is False

    env.run(chain.transact("TicketBroker", "unlock", key=key))
    env.run(chain.advance_round())
    ticket = env.run(make_ticket(chain, sender, recipient.address, nonce=21))  # made while still locked
    sig = sign(key, ticket.hash())
    env.run(chain.advance_round())
    assert env.run(redeem_reason(chain, ticket, sig, 12345)) == "sender is unlocked"

    before = chain.w3.eth.get_balance(sender.checksum_address)
    receipt = env.run(chain.transact("TicketBroker", "withdraw", key=key))
    withdrawal = chain.contract("TicketBroker").events.Withdrawal().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert (withdrawal["deposit"], withdrawal["reserve"]) == (ETH, ETH // 2)
    gas = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert chain.w3.eth.get_balance(sender.checksum_address) == before + ETH + ETH // 2 - gas
    info = env.run(chain.call("TicketBroker", "getSenderInfo", sender.checksum_address))
    assert (info[0][0], info[1][0]) == (0, 0)  # withdrawRound stays, as Livepeer's does


def test_batch_redeem_skips_failing_tickets(env: Env) -> None:
    chain, sender, recipient = env.chain, env.account(), env.account()
    env.run(chain.fund_sender(sender.key, ETH, 0))
    env.run(chain.activate(recipient.address))
    good = env.run(make_ticket(chain, sender, recipient.address, nonce=31, face_value=1000))
    bad = env.run(make_ticket(chain, sender, recipient.address, nonce=32, face_value=1000, win_prob=0))
    args = ([good.contract_args(), bad.contract_args()], [sign(sender.key, good.hash()), sign(sender.key, bad.hash())])
    # An explicit gas limit: an estimate finds the least gas at which the batch succeeds, which may be too little
    # for the tickets inside it (their failures are caught).
    env.run(chain.transact("TicketBroker", "batchRedeemWinningTickets", *args, [12345, 12345], gas=2_000_000))
    assert env.run(chain.call("TicketBroker", "usedTickets", good.hash())) is True
    assert env.run(chain.call("TicketBroker", "usedTickets", bad.hash())) is False


def test_paused_system_refuses_and_only_the_owner_pauses(env: Env) -> None:
    chain, sender = env.chain, env.account()
    assert env.run(_send_reason(chain, "Controller", "pause", key=sender.key)) == ""
    env.run(chain.transact("Controller", "pause"))
    try:
        assert env.run(_send_reason(chain, "TicketBroker", "fundDeposit", key=sender.key, value=1)) == (
            "system is paused"
        )
    finally:
        env.run(chain.transact("Controller", "unpause"))
    assert env.run(
        _send_reason(chain, "BondingManager", "devSetActiveTranscoder", sender.checksum_address, 1, key=sender.key)
    ) == ("caller must be Controller owner")


def test_service_registry_round_trips_a_uri(env: Env) -> None:
    chain, orch = env.chain, env.account()
    receipt = env.run(chain.transact("ServiceRegistry", "setServiceURI", "https://127.0.0.1:8935", key=orch.key))
    event = (
        chain.contract("ServiceRegistry").events.ServiceURIUpdate().process_receipt(receipt, errors=DISCARD)[0]["args"]
    )
    assert event["addr"] == checksum(orch.address)
    assert env.run(chain.call("ServiceRegistry", "getServiceURI", orch.checksum_address)) == "https://127.0.0.1:8935"


def test_close_leaves_no_process() -> None:
    loop = asyncio.new_event_loop()
    try:
        chain = loop.run_until_complete(asyncio.wait_for(start_devchain(), 30))
        pid = chain.pid
        loop.run_until_complete(chain.close())
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        loop.close()
