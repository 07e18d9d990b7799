"""The dev chain as a small Livepeer network: LPT, orchestrators that bond and register, rounds, the pool.

Everything here goes through the contracts' public functions, as an operator's ``livepeer_cli`` does on the real
network (the only shortcut: the deployer mints LPT to fund accounts). Typical use::

    chain = await start_devchain()
    a, b = chain.accounts[1], chain.accounts[2]
    await register_orchestrator(chain, a, stake=2 * LPT, service_uri="https://127.0.0.1:8935", next_round=False)
    await register_orchestrator(chain, b, stake=LPT, service_uri="https://127.0.0.1:8936", reward_cut=10)
    # both active now (the second call initialised the next round); the pool lists a first (more stake)
    [o.address for o in await transcoder_pool(chain)]

Percentages (reward cut, fee share) are taken as percents, as ``livepeer_cli`` takes them, and stored on chain in
parts per million (Livepeer's ``MathUtils``): 10 % is 100000.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lpnode.payments.signatures import address_of, checksum, parse_address

if TYPE_CHECKING:
    from lpnode.payments.devchain import DevChain

#: One LPT in its smallest unit (18 decimals).
LPT = 10**18
#: Livepeer's percentage divisor: reward cut and fee share are parts per million.
PERC_DIVISOR = 1_000_000
_ZERO = "0x" + "00" * 20


def _key_of(account: Any) -> bytes:
    key = account if isinstance(account, bytes) else account.key
    if not isinstance(key, bytes) or len(key) != 32:
        raise ValueError("an account is a 32-byte key or an object with a .key")
    return key


def _address_of(account: Any) -> str:
    if isinstance(account, str):
        return checksum(parse_address(account))
    if isinstance(account, bytes) and len(account) == 20:
        return checksum(account)
    return checksum(address_of(_key_of(account)))


def from_percent(percent: float) -> int:
    """A percent (0–100) as Livepeer's parts per million; ``ValueError`` outside that range."""
    if not 0 <= percent <= 100:
        raise ValueError(f"a percentage must be between 0 and 100, got {percent:g}")
    return round(percent * PERC_DIVISOR / 100)


@dataclass(frozen=True)
class PoolEntry:
    """One orchestrator of the transcoder pool, as the contracts report it."""

    address: str
    total_stake: int
    active: bool
    service_uri: str
    reward_cut: int
    fee_share: int


async def lpt_balance(chain: DevChain, account: Any) -> int:
    """``LivepeerToken.balanceOf`` of an address, key or account."""
    return int(await chain.call("LivepeerToken", "balanceOf", _address_of(account)))


async def fund_lpt(chain: DevChain, account: Any, amount: int) -> None:
    """Mint ``amount`` LPT (smallest units) to an address, key or account; the deployer mints."""
    if amount > 0:
        await chain.transact("LivepeerToken", "mint", _address_of(account), amount)


async def advance_rounds(chain: DevChain, rounds: int = 1) -> int:
    """Mine to the start of each next round and initialise it, ``rounds`` times; returns the round reached."""
    current = await chain.current_round()
    for _ in range(rounds):
        current = await chain.advance_round()
    return current


async def bond(chain: DevChain, account: Any, amount: int, to: Any | None = None) -> None:
    """Approve the BondingManager for ``amount`` LPT and ``bond(amount, to)`` (default: to itself, which registers
    ``account`` as an orchestrator). The account must hold the LPT."""
    key = _key_of(account)
    target = _address_of(to if to is not None else account)
    await chain.transact("LivepeerToken", "approve", chain.addresses["BondingManager"], amount, key=key)
    await chain.transact("BondingManager", "bond", amount, target, key=key)


async def register_orchestrator(
    chain: DevChain,
    account: Any,
    stake: int,
    service_uri: str,
    reward_cut: float = 0.0,
    fee_share: float = 100.0,
    *,
    next_round: bool = True,
) -> None:
    """Make ``account`` (a key or an object with ``.key``) an orchestrator as an operator does: fund it with LPT
    when it holds less than ``stake``, approve and bond ``stake`` to itself, ``transcoder(reward_cut, fee_share)``
    (percents), ``setServiceURI(service_uri)``, then (``next_round``) initialise the next round, from which it is
    active. With ``next_round=False`` it joins the pool now and becomes active at the next round, whoever starts
    it: register several, then advance once."""
    cut, share = from_percent(reward_cut), from_percent(fee_share)
    key = _key_of(account)
    missing = stake - await lpt_balance(chain, account)
    await fund_lpt(chain, account, missing)
    await bond(chain, key, stake)
    await chain.transact("BondingManager", "transcoder", cut, share, key=key)
    await chain.transact("ServiceRegistry", "setServiceURI", service_uri, key=key)
    if next_round:
        await chain.advance_round()


async def transcoder_pool(chain: DevChain) -> list[PoolEntry]:
    """The pool as gateways read it: first to last (most stake first), with each one's active status this round,
    service URI and rates."""
    entries: list[PoolEntry] = []
    address = str(await chain.call("BondingManager", "getFirstTranscoderInPool"))
    size = int(await chain.call("BondingManager", "getTranscoderPoolSize"))
    for _ in range(size):
        if address == _ZERO:
            break
        transcoder = await chain.call("BondingManager", "getTranscoder", address)
        entries.append(
            PoolEntry(
                address=address,
                total_stake=int(await chain.call("BondingManager", "transcoderTotalStake", address)),
                active=bool(await chain.call("BondingManager", "isActiveTranscoder", address)),
                service_uri=str(await chain.call("ServiceRegistry", "getServiceURI", address)),
                reward_cut=int(transcoder[1]),
                fee_share=int(transcoder[2]),
            )
        )
        address = str(await chain.call("BondingManager", "getNextTranscoderInPool", address))
    return entries


async def network_parameters(chain: DevChain) -> dict[str, int]:
    """The network's parameters as the contracts hold them now (for ``lpnode devchain`` and status pages)."""
    calls: Sequence[tuple[str, str, str]] = (
        ("round", "RoundsManager", "currentRound"),
        ("round_length", "RoundsManager", "roundLength"),
        ("pool_max_size", "BondingManager", "getTranscoderPoolMaxSize"),
        ("pool_size", "BondingManager", "getTranscoderPoolSize"),
        ("unbonding_period", "BondingManager", "unbondingPeriod"),
        ("total_bonded", "BondingManager", "getTotalBonded"),
        ("lpt_supply", "LivepeerToken", "totalSupply"),
        ("inflation", "Minter", "inflation"),
        ("mintable_this_round", "Minter", "currentMintableTokens"),
    )
    return {label: int(await chain.call(contract, fn)) for label, contract, fn in calls}
