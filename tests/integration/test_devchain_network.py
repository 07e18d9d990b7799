"""The dev chain as a small Livepeer network on a real anvil: bonding, the sorted pool, the active set per round,
rewards, fees shared with delegators, unbonding, and Livepeer's revert strings.

One dev chain (a pool of at most 3) serves the module; the tests run in order, as one operator story.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from web3.logs import DISCARD

from lpnode.payments.devchain import DevAccount, DevChain, DevChainError, start_devchain
from lpnode.payments.devchain_network import (
    LPT,
    advance_rounds,
    bond,
    from_percent,
    fund_lpt,
    lpt_balance,
    network_parameters,
    register_orchestrator,
    transcoder_pool,
)
from lpnode.payments.signatures import sign
from lpnode.payments.ticket import MAX_WIN_PROB, Ticket, rand_hash

T = TypeVar("T")
ETH = 10**18


class Net:
    """The module's chain, its event loop and the accounts the story uses."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.chain: DevChain = self.run(start_devchain(accounts=10, active_transcoders=3))
        a = self.chain.accounts
        self.a, self.b, self.c, self.d, self.e, self.x, self.sender = a[1], a[2], a[3], a[4], a[5], a[6], a[7]

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, 60))

    def call(self, name: str, fn: str, *args: Any) -> Any:
        return self.run(self.chain.call(name, fn, *args))

    def send(self, name: str, fn: str, *args: Any, key: DevAccount) -> Any:
        return self.run(self.chain.transact(name, fn, *args, key=key.key))

    def reason(self, name: str, fn: str, *args: Any, key: DevAccount) -> str:
        with pytest.raises(DevChainError) as caught:
            self.send(name, fn, *args, key=key)
        return caught.value.reason

    def active(self, account: DevAccount) -> bool:
        return bool(self.call("BondingManager", "isActiveTranscoder", account.checksum_address))

    def pool(self) -> list[str]:
        return [entry.address for entry in self.run(transcoder_pool(self.chain))]

    def close(self) -> None:
        self.run(self.chain.close())
        self.loop.close()


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    n = Net()
    try:
        yield n
    finally:
        n.close()


def test_the_pool_is_sorted_by_stake_and_the_active_set_changes_only_at_a_new_round(net: Net) -> None:
    chain = net.chain
    params = net.run(network_parameters(chain))
    assert params["pool_max_size"] == 3 and params["pool_size"] == 0 and params["unbonding_period"] == 2
    assert params["lpt_supply"] == 10_000_000 * LPT and params["mintable_this_round"] > 0

    uri = "https://127.0.0.1:{}"
    for account, stake, port in ((net.a, 1 * LPT, 8001), (net.b, 3 * LPT, 8002), (net.c, 2 * LPT, 8003)):
        net.run(register_orchestrator(chain, account, stake, uri.format(port), fee_share=50, next_round=False))
    assert net.pool() == [net.b.checksum_address, net.c.checksum_address, net.a.checksum_address]
    assert not any(net.active(o) for o in (net.a, net.b, net.c))  # in the pool, active from the next round
    assert net.call("BondingManager", "getTotalBonded") == 0
    assert net.call("BondingManager", "nextRoundTotalActiveStake") == 6 * LPT
    assert net.call("LivepeerToken", "balanceOf", chain.addresses["Minter"]) == 6 * LPT  # bonded LPT moved

    net.run(advance_rounds(chain))
    assert all(net.active(o) for o in (net.a, net.b, net.c))
    assert net.call("BondingManager", "getTotalBonded") == 6 * LPT
    entries = net.run(transcoder_pool(chain))
    assert [e.service_uri for e in entries] == [uri.format(8002), uri.format(8003), uri.format(8001)]
    assert entries[0].fee_share == from_percent(50) == 500_000
    assert net.call("BondingManager", "transcoderStatus", net.b.checksum_address) == 1

    # The pool is full (3): a newcomer with more stake than the last evicts it at the next round ...
    current = net.run(chain.current_round())
    net.run(register_orchestrator(chain, net.d, LPT * 3 // 2, uri.format(8004), next_round=False))
    assert net.pool() == [net.b.checksum_address, net.c.checksum_address, net.d.checksum_address]
    assert net.call("BondingManager", "getTranscoder", net.a.checksum_address)[5] == current + 1  # deactivationRound
    assert net.active(net.a) and not net.active(net.d)
    # ... and one with less stake than the last stays registered but outside the pool.
    net.run(register_orchestrator(chain, net.e, LPT // 2, uri.format(8005), next_round=False))
    assert net.call("BondingManager", "transcoderStatus", net.e.checksum_address) == 1
    assert net.e.checksum_address not in net.pool()

    net.run(advance_rounds(chain))
    assert not net.active(net.a) and net.active(net.d) and not net.active(net.e)
    assert net.call("BondingManager", "getTotalBonded") == (3 + 2 + 1.5) * LPT


def test_reward_mints_the_round_share_once_and_splits_it_by_reward_cut(net: Net) -> None:
    chain = net.chain
    # A delegator bonds 2 LPT to c (its own stake 2 LPT); c keeps a 10% reward cut from the next round.
    net.run(fund_lpt(chain, net.x, 2 * LPT))
    net.run(bond(chain, net.x, 2 * LPT, to=net.c))
    assert net.call("BondingManager", "delegatorStatus", net.x.checksum_address) == 0  # Pending until next round
    net.send("BondingManager", "reward", key=net.c)  # an active orchestrator must call reward before new rates
    net.send("BondingManager", "transcoder", from_percent(10), from_percent(50), key=net.c)
    net.run(advance_rounds(chain))

    mintable = net.call("Minter", "currentMintableTokens")
    total = net.call("BondingManager", "getTotalBonded")
    c_stake = net.call("BondingManager", "transcoderTotalStake", net.c.checksum_address)
    c_pending_before = net.call("BondingManager", "pendingStake", net.c.checksum_address, 0)
    receipt = net.send("BondingManager", "reward", key=net.c)
    minted = chain.contract("BondingManager").events.Reward().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert minted["transcoder"] == net.c.checksum_address
    assert minted["amount"] == mintable * c_stake // total

    reward = minted["amount"]
    x_pending = net.call("BondingManager", "pendingStake", net.x.checksum_address, 0)
    c_pending = net.call("BondingManager", "pendingStake", net.c.checksum_address, 0)
    delegators_share = reward - reward // 10
    x_bonded = net.call("BondingManager", "getDelegator", net.x.checksum_address)[0]
    assert abs(x_pending - (x_bonded + delegators_share * x_bonded // c_stake)) <= 2
    assert abs((x_pending - x_bonded) + (c_pending - c_pending_before) - reward) <= 2  # nothing lost or made up
    assert net.call("BondingManager", "transcoderTotalStake", net.c.checksum_address) == c_stake + reward

    assert net.reason("BondingManager", "reward", key=net.c) == "caller has already called reward for the current round"
    assert net.reason("BondingManager", "reward", key=net.e) == "caller must be an active transcoder"
    assert net.reason("BondingManager", "reward", key=net.x) == "caller must be an active transcoder"


def test_fees_are_shared_with_delegators_by_fee_share(net: Net) -> None:
    chain = net.chain
    net.run(chain.fund_sender(net.sender.key, ETH, 0))
    current = net.run(chain.current_round())
    face_value = 4 * 10**15
    ticket = Ticket(
        recipient=net.c.address,
        sender=net.sender.address,
        face_value=face_value,
        win_prob=MAX_WIN_PROB,
        sender_nonce=1,
        recipient_rand_hash=rand_hash(777),
        creation_round=current,
        creation_round_block_hash=bytes(net.call("RoundsManager", "blockHashForRound", current)),
    )
    pool_stake = net.call("BondingManager", "getTranscoderEarningsPoolForRound", net.c.checksum_address, current)[0]
    c_fees_before = net.call("BondingManager", "pendingFees", net.c.checksum_address, 0)
    x_fees_before = net.call("BondingManager", "pendingFees", net.x.checksum_address, 0)
    sig = sign(net.sender.key, ticket.hash())
    net.run(chain.transact("TicketBroker", "redeemWinningTicket", ticket.contract_args(), sig, 777))

    # feeShare 50%: half to the delegators by stake (x's bonded stake of the round's pool), half to c.
    x_bonded = net.call("BondingManager", "getDelegator", net.x.checksum_address)[0]
    x_fees = net.call("BondingManager", "pendingFees", net.x.checksum_address, 0) - x_fees_before
    c_fees = net.call("BondingManager", "pendingFees", net.c.checksum_address, 0) - c_fees_before
    assert abs(x_fees - face_value // 2 * x_bonded // pool_stake) <= 2
    assert abs(x_fees + c_fees - face_value) <= 2

    # Claiming moves the pending stake and fees into the delegator's bonded amount and fees.
    x_stake = net.call("BondingManager", "pendingStake", net.x.checksum_address, 0)
    net.send("BondingManager", "claimEarnings", 0, key=net.x)
    assert net.call("BondingManager", "getDelegator", net.x.checksum_address)[:2] == [x_stake, x_fees_before + x_fees]

    # Fees are ETH the Minter pays out on withdrawFees.
    payee = net.e.checksum_address
    before = chain.w3.eth.get_balance(payee)
    net.send("BondingManager", "withdrawFees", payee, x_fees, key=net.x)
    assert chain.w3.eth.get_balance(payee) == before + x_fees
    assert net.reason("BondingManager", "withdrawFees", payee, 1, key=net.x) == "insufficient fees to withdraw"


def test_unbonding_leaves_the_pool_at_the_next_round_and_pays_out_after_the_period(net: Net) -> None:
    chain = net.chain
    b = net.b
    bonded = net.call("BondingManager", "getDelegator", b.checksum_address)[0]
    assert net.reason("BondingManager", "unbond", 0, key=b) == "unbond amount must be greater than 0"
    assert net.reason("BondingManager", "unbond", bonded + 1, key=b) == "amount is greater than bonded amount"
    assert net.reason("BondingManager", "unbond", 1, key=net.sender) == "caller must be bonded"

    # A partial unbond and its rebond: the stake goes back and the pool keeps b.
    net.send("BondingManager", "unbond", LPT, key=b)
    assert net.call("BondingManager", "transcoderTotalStake", b.checksum_address) == bonded - LPT
    net.send("BondingManager", "rebond", 0, key=b)
    assert net.call("BondingManager", "transcoderTotalStake", b.checksum_address) == bonded
    assert net.reason("BondingManager", "rebond", 0, key=b) == "invalid unbonding lock ID"

    # Unbonding everything: out of the pool at once, still active until the round ends.
    current = net.run(chain.current_round())
    receipt = net.send("BondingManager", "unbond", bonded, key=b)
    event = chain.contract("BondingManager").events.Unbond().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert (event["unbondingLockId"], event["amount"], event["withdrawRound"]) == (1, bonded, current + 2)
    assert b.checksum_address not in net.pool()
    assert net.active(b)
    assert net.call("BondingManager", "transcoderStatus", b.checksum_address) == 0
    net.run(advance_rounds(chain))
    assert not net.active(b)
    assert net.call("BondingManager", "getTotalBonded") == sum(e.total_stake for e in net.run(transcoder_pool(chain)))

    assert net.reason("BondingManager", "withdrawStake", 1, key=b) == (
        "withdraw round must be before or equal to the current round"
    )
    net.run(advance_rounds(chain))
    before = net.run(lpt_balance(chain, b))
    net.send("BondingManager", "withdrawStake", 1, key=b)
    assert net.run(lpt_balance(chain, b)) == before + bonded
    assert net.reason("BondingManager", "withdrawStake", 1, key=b) == "invalid unbonding lock ID"


def test_bonding_refusals_carry_livepeers_revert_strings(net: Net) -> None:
    chain, stranger = net.chain, net.chain.accounts[8]
    assert net.reason("BondingManager", "transcoder", 0, 0, key=stranger) == "transcoder must be registered"
    assert net.reason("BondingManager", "transcoder", 10**6 + 1, 0, key=net.d) == "invalid rewardCut percentage"
    assert net.reason("BondingManager", "transcoder", 0, 10**6 + 1, key=net.d) == "invalid feeShare percentage"
    assert net.reason("BondingManager", "transcoder", 0, 0, key=net.d) == (
        "caller can't be active or must have already called reward for the current round"
    )
    assert net.reason("BondingManager", "bond", 0, stranger.checksum_address, key=stranger) == (
        "delegation amount must be greater than 0"
    )
    assert net.reason("BondingManager", "bond", LPT, stranger.checksum_address, key=stranger) == (
        "ERC20: transfer amount exceeds allowance"
    )
    assert net.reason("LivepeerToken", "mint", stranger.checksum_address, 1, key=stranger) == "caller is not a minter"
    assert net.reason("Minter", "createReward", 1, 1, key=stranger) == "msg.sender not BondingManager"
    assert net.reason("BondingManager", "setCurrentRoundTotalActiveStake", key=stranger) == (
        "caller must be RoundsManager"
    )

    start = net.call("RoundsManager", "currentRoundStartBlock")
    net.run(chain.mine(start + chain.round_length - net.run(chain.block_number())))
    assert net.reason("BondingManager", "reward", key=net.d) == "current round is not initialized"
    net.run(chain.initialize_round())
    net.send("BondingManager", "reward", key=net.d)
