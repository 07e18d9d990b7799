"""What the chain answers when it fails, in words: the chain errors and revert reasons as every backend words them.

ChainError            the chain cannot be reached, or answered something unusable
├── ChainRevert       a call or a transaction reverted; ``str()`` is the contract's reason in words
└── GasPriceTooHigh   the gas price is above ``max_gas_price``; nothing was sent
"""

from __future__ import annotations

from eth_abi.abi import decode as abi_decode
from web3.exceptions import ContractLogicError, Web3RPCError

from lpnode.errors import LpnodeError

_ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
_PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)
# How backends word a revert around the reason (hardhat, ganache, then anvil and eth-tester): the most
# specific first, since hardhat's message also starts with anvil's words.
_REASON_PREFIXES = (
    "reverted with reason string ",
    "VM Exception while processing transaction: revert ",
    "execution reverted: ",
)


class ChainError(LpnodeError):
    """The chain could not be reached or answered something unusable. ``str()`` names what failed."""


class ChainRevert(ChainError):
    """A contract call or transaction reverted. ``str()`` is the reason (e.g. ``sender is unlocked``)."""

    def __init__(self, reason: str, tx_hash: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.tx_hash = tx_hash


class GasPriceTooHigh(ChainError):
    """The gas price is above the configured maximum; the transaction was not sent."""

    def __init__(self, gas_price: int, max_gas_price: int) -> None:
        super().__init__(f"the gas price {gas_price} wei is above -maxGasPrice {max_gas_price} wei")
        self.gas_price = gas_price
        self.max_gas_price = max_gas_price


def revert_reason(exc: BaseException) -> str | None:
    """The reason a revert carries, decoded from ``Error(string)`` data where present, otherwise read from the
    message; None when ``exc`` is not a revert."""
    data: object = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    if data is None and isinstance(exc, Web3RPCError) and isinstance(exc.rpc_response, dict):
        error = exc.rpc_response.get("error")
        data = error.get("data") if isinstance(error, dict) else None
    reason = _decode_revert_data(data)
    if reason is not None:
        return reason
    message = str(getattr(exc, "message", None) or (exc.args[0] if exc.args else ""))
    for prefix in _REASON_PREFIXES:
        at = message.find(prefix)
        if at >= 0:
            return message[at + len(prefix) :].strip().strip("'\"")
    if isinstance(exc, ContractLogicError):
        return message.removeprefix("execution reverted").strip(": ") or "execution reverted"
    if "revert" in message.lower():
        return message
    return None


def _decode_revert_data(data: object) -> str | None:
    if isinstance(data, str):
        try:
            raw = bytes.fromhex(data.removeprefix("0x"))
        except ValueError:
            return None
    elif isinstance(data, bytes | bytearray):
        raw = bytes(data)
    else:
        return None
    try:
        if raw[:4] == _ERROR_SELECTOR:
            return str(abi_decode(["string"], raw[4:])[0])
        if raw[:4] == _PANIC_SELECTOR:
            return f"panic 0x{abi_decode(['uint256'], raw[4:])[0]:02x}"
    except Exception:  # malformed revert data: fall back to the message
        return None
    return None
