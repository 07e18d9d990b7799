"""An orchestrator's place on chain: what its operator reads and the transactions that change it.

:class:`Staking` wraps a :class:`~lpnode.payments.chain_client.ChainClient` (the wallet is the operator's account)
with Livepeer's operator calls: ``bond``, ``unbond``, ``rebond``, ``transcoder`` (reward cut and fee share),
``setServiceURI``, ``reward``, ``claimEarnings``, ``withdrawFees``, ``withdrawStake`` and ``initializeRound``.
Each state change is first a :class:`Step` (contract, function, arguments, and the same in words), so a caller
can show it and ask before :meth:`Staking.send`. :meth:`Staking.state` reads everything ``lpnode chain status``
shows into one :class:`OperatorState`, which also says why an orchestrator is not active
(:meth:`OperatorState.why_not_active`).

Amounts are in wei of LPT or ETH (``int``); percentages are numerators over
:data:`~lpnode.payments.staking_abi.PERC_DIVISOR`. Failures are :mod:`lpnode.payments.chain_errors` classes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from web3 import Web3

from lpnode.errors import ConfigError
from lpnode.payments.chain_client import ChainClient
from lpnode.payments.chain_errors import ChainError
from lpnode.payments.signatures import checksum
from lpnode.payments.staking_abi import ABIS, MAX_ROUND, PERC_DIVISOR

TOKEN = 10**18
ZERO = bytes(20)
_POOL_WALK_LIMIT = 1000  # the deployed pool holds 100; a longer walk means a broken list


# -- amounts and words ---------------------------------------------------------------------------------------------


def parse_lpt(text: str, what: str) -> int:
    """``100`` (LPT), ``100lpt`` or ``5wei`` (LPT's smallest unit) in wei. ConfigError when unusable."""
    value = text.strip().lower().replace("_", "")
    unit = next((u for u in ("lpt", "wei") if value.endswith(u)), "lpt")
    try:
        amount = Decimal(value.removesuffix(unit).strip()) * (TOKEN if unit == "lpt" else 1)
    except InvalidOperation:
        raise ConfigError(f"{what} must be an amount of LPT such as 100 or 0.5, got {text!r}") from None
    if amount <= 0 or amount != amount.to_integral_value():
        raise ConfigError(f"{what} must be more than 0 and a whole number of wei, got {text!r}")
    return int(amount)


def format_token(wei: int, symbol: str) -> str:
    """``wei`` as whole tokens without trailing zeros (``12.5 LPT``): exact to 6 decimals, beyond that rounded to 6
    and marked ``~`` (``~0.333333 LPT``)."""
    exact = Decimal(wei) / TOKEN
    shown = exact.quantize(Decimal("0.000001"))
    text = format(shown, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{'' if shown == exact else '~'}{text} {symbol}"


def parse_percent(text: str, what: str) -> int:
    """A percentage (``10``, ``12.5``, ``10%``) as a numerator over PERC_DIVISOR. ConfigError when unusable."""
    try:
        percent = Decimal(text.strip().removesuffix("%"))
    except InvalidOperation:
        raise ConfigError(f"{what} must be a percentage such as 10 or 12.5, got {text!r}") from None
    units = percent * PERC_DIVISOR / 100
    if not 0 <= percent <= 100 or units != units.to_integral_value():
        raise ConfigError(f"{what} must be between 0 and 100 with at most 4 decimals, got {text!r}")
    return int(units)


def format_percent(units: int) -> str:
    """A numerator over PERC_DIVISOR as a percentage (``12.5%``)."""
    text = format(Decimal(units) * 100 / PERC_DIVISOR, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text}%"


def host_port(uri: str) -> tuple[str, int | None]:
    """The host (lower case) and port a service URI names; the scheme's port when it names none, https assumed."""
    text = uri.strip()
    parts = urlsplit(text if "://" in text else "https://" + text)
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = {"https": 443, "http": 80}.get(parts.scheme)
    return (parts.hostname or "").lower(), port


def same_service(on_chain: str, service_url: str) -> bool:
    """Whether two service URIs reach the same place: host and port compared, as go-livepeer compares them."""
    return host_port(on_chain) == host_port(service_url)


# -- what is read --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delegator:
    """``BondingManager.getDelegator``."""

    bonded: int
    fees: int
    delegate: bytes
    delegated: int
    start_round: int
    last_claim_round: int
    next_lock_id: int


@dataclass(frozen=True)
class Transcoder:
    """The parts of ``BondingManager.getTranscoder`` an operator reads."""

    last_reward_round: int
    reward_cut: int
    fee_share: int
    activation_round: int
    deactivation_round: int


@dataclass(frozen=True)
class UnbondingLock:
    id: int
    amount: int
    withdraw_round: int


@dataclass(frozen=True)
class Pool:
    """The transcoder pool: the next round's active set, by stake (highest first)."""

    members: tuple[bytes, ...]
    max_size: int
    last_stake: int
    """The stake of the pool's last member (0 for an empty pool): to enter a full pool, have more than this."""

    @property
    def full(self) -> bool:
        return self.max_size > 0 and len(self.members) >= self.max_size


@dataclass(frozen=True)
class OperatorState:
    """One account's place on chain, read at ``block``. ``active`` is this round's active set; ``in_pool`` is the
    pool, from which the next round's active set is taken."""

    address: bytes
    current_round: int
    round_initialized: bool
    round_length: int
    round_start_block: int
    block: int
    eth: int
    lpt: int
    allowance: int
    delegator: Delegator
    transcoder: Transcoder
    registered: bool
    active: bool
    pending_stake: int
    pending_fees: int
    service_uri: str
    pool: Pool
    locks: tuple[UnbondingLock, ...] = field(default=())

    @property
    def in_pool(self) -> bool:
        return self.address in self.pool.members

    @property
    def blocks_to_next_round(self) -> int:
        return max(0, self.round_start_block + self.round_length - self.block)

    @property
    def reward_called(self) -> bool:
        """reward was called in the current round."""
        return self.transcoder.last_reward_round == self.current_round

    @property
    def leaving(self) -> bool:
        """Active now, but not in the next round's set (unbonded all, or evicted by a bigger stake)."""
        return self.active and self.transcoder.deactivation_round != MAX_ROUND

    def stake_to_enter(self) -> int:
        """How much more stake would put this account in a full pool (0: none needed)."""
        if not self.pool.full or self.in_pool:
            return 0
        return max(0, self.pool.last_stake + 1 - self.delegator.delegated)

    def why_not_active(self) -> str | None:
        """None when active in this round (and staying); else why not, and what to do, in one sentence."""
        you = self.delegator
        if not self.registered:
            if you.bonded and you.delegate not in (self.address, ZERO):
                return (
                    f"not an orchestrator: its LPT is bonded to {checksum(you.delegate)}; an orchestrator bonds to "
                    "itself (unbond, then `lpnode chain bond AMOUNT`)"
                )
            return (
                "not registered: bond LPT to this account (`lpnode chain bond AMOUNT`), then set the reward cut and "
                "fee share (`lpnode chain transcoder --reward-cut P --fee-share P`)"
            )
        if self.active and not self.leaving:
            return None
        if self.in_pool:
            starts = max(self.transcoder.activation_round, self.current_round + 1)
            return f"in the pool: joins the active set at round {starts} (in {self.blocks_to_next_round} blocks)"
        if self.pool.full:
            need = self.stake_to_enter()
            now = "active this round, but " if self.active else ""
            return (
                f"{now}not in the pool: it is full ({len(self.pool.members)} of {self.pool.max_size}) and its "
                f"smallest stake is {format_token(self.pool.last_stake, 'LPT')}; this account has "
                f"{format_token(you.delegated, 'LPT')}: bond {format_token(need, 'LPT')} more to enter"
            )
        return (
            "not in the pool although it has room: run `lpnode chain transcoder --reward-cut P --fee-share P` to "
            "join it (active from the next round)"
        )


@dataclass(frozen=True)
class Step:
    """One transaction to send: ``contract.function(*args)``, with ``words`` saying what it does."""

    contract: str
    function: str
    args: tuple[Any, ...]
    words: str

    @property
    def call(self) -> str:
        shown = ", ".join(checksum(a) if isinstance(a, bytes) and len(a) == 20 else repr(a) for a in self.args)
        return f"{self.contract}.{self.function}({shown})"


# -- the operator's calls ------------------------------------------------------------------------------------------


class Staking:
    """An operator's reads and transactions through ``client`` (whose wallet is the operator's account; reads of
    other accounts need no wallet)."""

    def __init__(self, client: ChainClient) -> None:
        self.client = client
        for name, contract_abi in ABIS.items():
            client.use_abi(name, contract_abi)

    @property
    def address(self) -> bytes:
        address = self.client.address
        if address is None:
            raise ChainError("this needs a wallet: give -ethKeystorePath (and -ethPassword)")
        return address

    async def _read(self, name: str, function: str, *args: Any) -> Any:
        return await self.client.read(name, function, *args)

    # -- reads --------------------------------------------------------------------------------------------------

    async def service_uri(self, address: bytes | None = None) -> str:
        """The service URI ``address`` (default: the wallet's) registered in the ServiceRegistry ("" if none)."""
        who = Web3.to_checksum_address(address or self.address)
        return str(await self._read("ServiceRegistry", "getServiceURI", who))

    async def transcoder(self, address: bytes | None = None) -> Transcoder:
        t = await self._read("BondingManager", "getTranscoder", Web3.to_checksum_address(address or self.address))
        return Transcoder(int(t[0]), int(t[1]), int(t[2]), int(t[4]), int(t[5]))

    async def delegator(self, address: bytes | None = None) -> Delegator:
        d = await self._read("BondingManager", "getDelegator", Web3.to_checksum_address(address or self.address))
        delegate = bytes.fromhex(str(d[2]).removeprefix("0x"))
        return Delegator(int(d[0]), int(d[1]), delegate, int(d[3]), int(d[4]), int(d[5]), int(d[6]))

    async def pool(self) -> Pool:
        """The whole pool, walked from its first member (at most 100 calls on Arbitrum One)."""
        max_size = int(await self._read("BondingManager", "getTranscoderPoolMaxSize"))
        members: list[bytes] = []
        current = str(await self._read("BondingManager", "getFirstTranscoderInPool"))
        while int(current, 16) and len(members) < _POOL_WALK_LIMIT:
            members.append(bytes.fromhex(current.removeprefix("0x")))
            current = str(await self._read("BondingManager", "getNextTranscoderInPool", current))
        last_stake = 0
        if members:
            last = Web3.to_checksum_address(members[-1])
            last_stake = int(await self._read("BondingManager", "transcoderTotalStake", last))
        return Pool(tuple(members), max_size, last_stake)

    async def locks(self, address: bytes, next_lock_id: int) -> tuple[UnbondingLock, ...]:
        """The unbonding locks still held (rebonded and withdrawn ones read as withdraw round 0 and are left out)."""
        who = Web3.to_checksum_address(address)
        found = await asyncio.gather(
            *(self._read("BondingManager", "getDelegatorUnbondingLock", who, i) for i in range(next_lock_id))
        )
        return tuple(UnbondingLock(i, int(a), int(w)) for i, (a, w) in enumerate(found) if int(w) > 0)

    async def state(self, address: bytes | None = None) -> OperatorState:
        """Everything ``lpnode chain status`` shows about ``address`` (default: the wallet's), read now."""
        who = address or self.address
        cs = Web3.to_checksum_address(who)
        bonding = await self.client.contract_address("BondingManager")
        current_round = await self.client.current_round()
        (
            initialized, round_length, start, block, eth, lpt, allowance, delegator, transcoder, status, active,
            pending_stake, pending_fees, uri, pool,
        ) = await asyncio.gather(
            self.client.current_round_initialized(),
            self.client.round_length(),
            self._read("RoundsManager", "currentRoundStartBlock"),
            self._read("RoundsManager", "blockNum"),
            self.client.eth_balance(who),
            self._read("LivepeerToken", "balanceOf", cs),
            self._read("LivepeerToken", "allowance", cs, bonding),
            self.delegator(who),
            self.transcoder(who),
            self._read("BondingManager", "transcoderStatus", cs),
            self._read("BondingManager", "isActiveTranscoder", cs),
            self._read("BondingManager", "pendingStake", cs, current_round),
            self._read("BondingManager", "pendingFees", cs, current_round),
            self.service_uri(who),
            self.pool(),
        )  # fmt: skip
        return OperatorState(
            address=who,
            current_round=current_round,
            round_initialized=bool(initialized),
            round_length=int(round_length),
            round_start_block=int(start),
            block=int(block),
            eth=int(eth),
            lpt=int(lpt),
            allowance=int(allowance),
            delegator=delegator,
            transcoder=transcoder,
            registered=int(status) == 1,
            active=bool(active),
            pending_stake=int(pending_stake),
            pending_fees=int(pending_fees),
            service_uri=uri,
            pool=pool,
            locks=await self.locks(who, delegator.next_lock_id),
        )

    # -- the transactions, as steps -------------------------------------------------------------------------------

    async def bond_steps(self, amount: int, to: bytes | None = None) -> list[Step]:
        """Approve the BondingManager to take ``amount`` LPT (when it may not yet), then bond it to ``to`` (default:
        the wallet itself, which registers it as an orchestrator)."""
        bonding = await self.client.contract_address("BondingManager")
        target = to or self.address
        allowance = int(await self._read("LivepeerToken", "allowance", Web3.to_checksum_address(self.address), bonding))
        steps = []
        if allowance < amount:
            steps.append(
                Step(
                    "LivepeerToken",
                    "approve",
                    (bonding, amount),
                    f"let the BondingManager take {format_token(amount, 'LPT')} from this account",
                )
            )
        whom = "this account (it becomes an orchestrator)" if target == self.address else checksum(target)
        steps.append(
            Step(
                "BondingManager",
                "bond",
                (amount, Web3.to_checksum_address(target)),
                f"bond {format_token(amount, 'LPT')} to {whom}",
            )
        )
        return steps

    def unbond_step(self, amount: int) -> Step:
        return Step(
            "BondingManager", "unbond", (amount,),
            f"unbond {format_token(amount, 'LPT')} (withdrawable with `lpnode chain withdraw-stake` after the "
            "unbonding period)",
        )  # fmt: skip

    def rebond_step(self, lock: UnbondingLock, unbonded: bool) -> Step:
        words = f"bond the {format_token(lock.amount, 'LPT')} of unbonding lock {lock.id} again"
        if unbonded:  # nothing is bonded, so there is no delegate to add it to: name this account
            return Step(
                "BondingManager", "rebondFromUnbonded", (Web3.to_checksum_address(self.address), lock.id),
                words + ", to this account",
            )  # fmt: skip
        return Step("BondingManager", "rebond", (lock.id,), words)

    def transcoder_step(self, reward_cut: int, fee_share: int) -> Step:
        return Step(
            "BondingManager", "transcoder", (reward_cut, fee_share),
            f"keep {format_percent(reward_cut)} of each round's LPT reward and share {format_percent(fee_share)} "
            "of fees with delegators; join the pool if not in it",
        )  # fmt: skip

    def service_uri_step(self, uri: str) -> Step:
        return Step("ServiceRegistry", "setServiceURI", (uri,), f"tell gateways to reach this orchestrator at {uri}")

    def reward_step(self, current_round: int) -> Step:
        return Step("BondingManager", "reward", (), f"mint this orchestrator's LPT reward for round {current_round}")

    def claim_step(self, current_round: int) -> Step:
        return Step(
            "BondingManager", "claimEarnings", (current_round,),
            f"add the rewards and fees earned up to round {current_round} to the bonded stake and fees",
        )  # fmt: skip

    def withdraw_fees_step(self, amount: int) -> Step:
        return Step(
            "BondingManager", "withdrawFees", (Web3.to_checksum_address(self.address), amount),
            f"send {format_token(amount, 'ETH')} of earned fees to this account",
        )  # fmt: skip

    def withdraw_stake_step(self, lock: UnbondingLock) -> Step:
        return Step(
            "BondingManager", "withdrawStake", (lock.id,),
            f"take the {format_token(lock.amount, 'LPT')} of unbonding lock {lock.id} back to this account",
        )  # fmt: skip

    def initialize_round_step(self, current_round: int) -> Step:
        return Step("RoundsManager", "initializeRound", (), f"initialise round {current_round}")

    # -- sending ------------------------------------------------------------------------------------------------

    async def estimate(self, step: Step) -> int:
        """The gas ``step`` would use now; :class:`~lpnode.payments.chain_errors.ChainRevert` if it would revert."""
        return await self.client.estimate_gas(step.contract, step.function, *step.args)

    async def send(self, step: Step) -> str:
        """Send ``step`` and wait for its receipt; the transaction hash."""
        return await self.client.transact(step.contract, step.function, *step.args)
