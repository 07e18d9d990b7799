"""The ABI fragments lpnode calls, with exactly the signatures of Livepeer's deployed contracts.

Only what lpnode uses is here; each list is a valid web3 ABI. The selectors they produce are those of the
contracts on Arbitrum One (``getContract(bytes32)`` 0xe16c7d98, ``redeemWinningTicket`` 0xec8b3cb6, ...), so the
same calls work against the project's dev chain and the real network.
"""

from __future__ import annotations

from typing import Any

ABI = list[dict[str, Any]]


def _param(kind: str, name: str = "") -> dict[str, Any]:
    return {"name": name, "type": kind}


def _fn(
    name: str,
    inputs: list[dict[str, Any]] | None = None,
    outputs: list[dict[str, Any]] | None = None,
    mutability: str = "view",
) -> dict[str, Any]:
    return {
        "type": "function",
        "name": name,
        "inputs": inputs or [],
        "outputs": outputs or [],
        "stateMutability": mutability,
    }


TICKET_TUPLE: dict[str, Any] = {
    "name": "_ticket",
    "type": "tuple",
    "components": [
        _param("address", "recipient"),
        _param("address", "sender"),
        _param("uint256", "faceValue"),
        _param("uint256", "winProb"),
        _param("uint256", "senderNonce"),
        _param("bytes32", "recipientRandHash"),
        _param("bytes", "auxData"),
    ],
}

CONTROLLER: ABI = [
    _fn("getContract", [_param("bytes32", "_id")], [_param("address")]),
    _fn("paused", [], [_param("bool")]),
]

TICKET_BROKER: ABI = [
    _fn(
        "redeemWinningTicket",
        [TICKET_TUPLE, _param("bytes", "_sig"), _param("uint256", "_recipientRand")],
        mutability="nonpayable",
    ),
    _fn(
        "fundDepositAndReserve",
        [_param("uint256", "_depositAmount"), _param("uint256", "_reserveAmount")],
        mutability="payable",
    ),
    _fn("fundDeposit", mutability="payable"),
    _fn("fundReserve", mutability="payable"),
    _fn("unlock", mutability="nonpayable"),
    _fn("cancelUnlock", mutability="nonpayable"),
    _fn("withdraw", mutability="nonpayable"),
    _fn(
        "getSenderInfo",
        [_param("address", "_sender")],
        [
            {
                "name": "sender",
                "type": "tuple",
                "components": [_param("uint256", "deposit"), _param("uint256", "withdrawRound")],
            },
            {
                "name": "reserve",
                "type": "tuple",
                "components": [_param("uint256", "fundsRemaining"), _param("uint256", "claimedInCurrentRound")],
            },
        ],
    ),
    _fn("claimedReserve", [_param("address", "_reserveHolder"), _param("address", "_claimant")], [_param("uint256")]),
    _fn("usedTickets", [_param("bytes32")], [_param("bool")]),
    _fn("isUnlockInProgress", [_param("address", "_sender")], [_param("bool")]),
    _fn("unlockPeriod", [], [_param("uint256")]),
    _fn("ticketValidityPeriod", [], [_param("uint256")]),
]

ROUNDS_MANAGER: ABI = [
    _fn("currentRound", [], [_param("uint256")]),
    _fn("currentRoundInitialized", [], [_param("bool")]),
    _fn("lastInitializedRound", [], [_param("uint256")]),
    _fn("roundLength", [], [_param("uint256")]),
    _fn("blockHashForRound", [_param("uint256", "_round")], [_param("bytes32")]),
    _fn("initializeRound", mutability="nonpayable"),
]

BONDING_MANAGER: ABI = [
    _fn("isActiveTranscoder", [_param("address", "_transcoder")], [_param("bool")]),
    _fn("getTranscoderPoolSize", [], [_param("uint256")]),
    _fn("pendingFees", [_param("address", "_delegator"), _param("uint256", "_endRound")], [_param("uint256")]),
    _fn(
        "withdrawFees",
        [_param("address", "_recipient"), _param("uint256", "_amount")],
        mutability="nonpayable",
    ),
]

# Chainlink's AggregatorV3Interface, as go-livepeer's price feed watcher reads it.
AGGREGATOR: ABI = [
    _fn("decimals", [], [_param("uint8")]),
    _fn("description", [], [_param("string")]),
    _fn(
        "latestRoundData",
        [],
        [
            _param("uint80", "roundId"),
            _param("int256", "answer"),
            _param("uint256", "startedAt"),
            _param("uint256", "updatedAt"),
            _param("uint80", "answeredInRound"),
        ],
    ),
]
