"""The ABI fragments an orchestrator's operator calls: bonding, transcoder settings, rewards, the service URI, LPT.

Exactly the signatures of Livepeer's deployed contracts (livepeer/protocol's BondingManager, ServiceRegistry,
RoundsManager and LivepeerToken; selectors as in the research notes: ``setServiceURI(string)`` 0x5f11301b,
``getServiceURI(address)`` 0x214c2a4b, ``getTranscoder(address)`` 0x5dce9948, ``getDelegator(address)``
0xa64ad595, ...), so the same calls work on the project's dev chain and on Arbitrum One. Percentages are
numerators over :data:`PERC_DIVISOR` (MathUtils.PERC_DIVISOR).
"""

from __future__ import annotations

from lpnode.payments.abi import ABI, _fn, _param

PERC_DIVISOR = 1_000_000
"""Livepeer's denominator for reward cut and fee share (MathUtils.PERC_DIVISOR): 1 000 000 is 100 %."""
MAX_ROUND = 2**256 - 1
"""A transcoder's ``deactivationRound`` while it stays in the pool (BondingManager's MAX_FUTURE_ROUND)."""

_U = "uint256"

BONDING_MANAGER: ABI = [
    _fn("bond", [_param(_U, "_amount"), _param("address", "_to")], mutability="nonpayable"),
    _fn("unbond", [_param(_U, "_amount")], mutability="nonpayable"),
    _fn("rebond", [_param(_U, "_unbondingLockId")], mutability="nonpayable"),
    _fn("rebondFromUnbonded", [_param("address", "_to"), _param(_U, "_unbondingLockId")], mutability="nonpayable"),
    _fn("transcoder", [_param(_U, "_rewardCut"), _param(_U, "_feeShare")], mutability="nonpayable"),
    _fn("reward", mutability="nonpayable"),
    _fn("claimEarnings", [_param(_U, "_endRound")], mutability="nonpayable"),
    _fn("withdrawStake", [_param(_U, "_unbondingLockId")], mutability="nonpayable"),
    _fn("withdrawFees", [_param("address", "_recipient"), _param(_U, "_amount")], mutability="nonpayable"),
    _fn(
        "getDelegator",
        [_param("address", "_delegator")],
        [
            _param(_U, "bondedAmount"),
            _param(_U, "fees"),
            _param("address", "delegateAddress"),
            _param(_U, "delegatedAmount"),
            _param(_U, "startRound"),
            _param(_U, "lastClaimRound"),
            _param(_U, "nextUnbondingLockId"),
        ],
    ),
    _fn(
        "getTranscoder",
        [_param("address", "_transcoder")],
        [
            _param(_U, "lastRewardRound"),
            _param(_U, "rewardCut"),
            _param(_U, "feeShare"),
            _param(_U, "lastActiveStakeUpdateRound"),
            _param(_U, "activationRound"),
            _param(_U, "deactivationRound"),
            _param(_U, "activeCumulativeRewards"),
            _param(_U, "cumulativeRewards"),
            _param(_U, "cumulativeFees"),
            _param(_U, "lastFeeRound"),
        ],
    ),
    _fn(
        "getDelegatorUnbondingLock",
        [_param("address", "_delegator"), _param(_U, "_unbondingLockId")],
        [_param(_U, "amount"), _param(_U, "withdrawRound")],
    ),
    _fn("transcoderStatus", [_param("address", "_transcoder")], [_param("uint8")]),
    _fn("isActiveTranscoder", [_param("address", "_transcoder")], [_param("bool")]),
    _fn("transcoderTotalStake", [_param("address", "_transcoder")], [_param(_U)]),
    _fn("pendingStake", [_param("address", "_delegator"), _param(_U, "_endRound")], [_param(_U)]),
    _fn("pendingFees", [_param("address", "_delegator"), _param(_U, "_endRound")], [_param(_U)]),
    _fn("getTranscoderPoolSize", [], [_param(_U)]),
    _fn("getTranscoderPoolMaxSize", [], [_param(_U)]),
    _fn("getFirstTranscoderInPool", [], [_param("address")]),
    _fn("getNextTranscoderInPool", [_param("address", "_transcoder")], [_param("address")]),
    _fn("unbondingPeriod", [], [_param("uint64")]),
]

SERVICE_REGISTRY: ABI = [
    _fn("setServiceURI", [_param("string", "_serviceURI")], mutability="nonpayable"),
    _fn("getServiceURI", [_param("address", "_addr")], [_param("string")]),
]

ROUNDS_MANAGER: ABI = [
    _fn("currentRoundStartBlock", [], [_param(_U)]),
    _fn("blockNum", [], [_param(_U)]),
]

LIVEPEER_TOKEN: ABI = [
    _fn("balanceOf", [_param("address", "_owner")], [_param(_U)]),
    _fn("allowance", [_param("address", "_owner"), _param("address", "_spender")], [_param(_U)]),
    _fn("approve", [_param("address", "_spender"), _param(_U, "_value")], [_param("bool")], mutability="nonpayable"),
]

ABIS: dict[str, ABI] = {
    "BondingManager": BONDING_MANAGER,
    "ServiceRegistry": SERVICE_REGISTRY,
    "RoundsManager": ROUNDS_MANAGER,
    "LivepeerToken": LIVEPEER_TOKEN,
}
"""What :class:`lpnode.payments.staking.Staking` adds to a chain client, by the Controller's contract name."""
