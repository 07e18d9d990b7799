"""Livepeer's orchestrator pool as the chain holds it: who is in BondingManager's transcoder pool, with what stake,
whether each is active this round, and the service URI each registered in ServiceRegistry.

Read-only (no wallet) and on a connection of its own. Contracts are found through the Controller, as every other
chain read here. What a caller may rely on:

- :meth:`TranscoderPool.read` walks the pool from ``getFirstTranscoderInPool()`` along
  ``getNextTranscoderInPool(address)`` (highest stake first) and, for each member, reads
  ``transcoderTotalStake``, ``isActiveTranscoder`` and ``ServiceRegistry.getServiceURI`` in the same JSON-RPC batch
  as its link. When the pool is the one read before, a read is **one batch**; each member not seen before costs one
  more (a link of the sorted list names only the next member).
- An orchestrator that left the pool this round (it unbonded: Livepeer deactivates it from the next round) stays
  in the read, with ``in_pool`` false, for as long as the chain says it is active: it drops out at the next round,
  as go-livepeer's pool cache does with activation and deactivation rounds.
- :meth:`TranscoderPool.changes` is the cheap check between reads: one batch for the block and the round, and
  (when blocks were mined) one request for the logs of BondingManager and ServiceRegistry since the last look
  (bonds, unbonds, rewards, service URIs all log there).

Failures are :class:`~lpnode.payments.chain_errors.ChainError`, with the URL's path and query (which often hold an
API key) left out.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from web3 import HTTPProvider, Web3
from web3.exceptions import Web3Exception

from lpnode.payments import abi
from lpnode.payments.chain_errors import ChainError
from lpnode.payments.signatures import checksum, keccak
from lpnode.payments.staking_abi import BONDING_MANAGER, SERVICE_REGISTRY

ZERO = bytes(20)
MAX_POOL = 1000
"""Walks stop after this many members (Livepeer's pool holds 100): a chain answering a loop cannot hold a read."""


@dataclass(frozen=True)
class PoolMember:
    """One orchestrator of the pool. ``address``: 20 raw bytes; ``stake``: ``transcoderTotalStake`` in LPT's base
    unit; ``active``: in the current round's active set; ``service_uri``: as registered ("" when none);
    ``in_pool``: still in the pool (false: it left this round and is active until the next one)."""

    address: bytes
    stake: int
    active: bool
    service_uri: str
    in_pool: bool = True

    @property
    def checksum_address(self) -> str:
        return checksum(self.address)


@dataclass(frozen=True)
class PoolRead:
    """One read of the pool: the round it was read in and its members, pool order first (highest stake first),
    then those that left the pool but are still active."""

    round: int
    members: tuple[PoolMember, ...]

    @property
    def active(self) -> list[PoolMember]:
        return [m for m in self.members if m.active]


@dataclass(frozen=True)
class PoolChanges:
    """:meth:`TranscoderPool.changes`: the latest block, the current round and whether BondingManager or
    ServiceRegistry logged anything since the block looked at before."""

    block: int
    round: int
    logged: bool


@dataclass(frozen=True)
class _Facts:
    next: bytes
    active: bool
    stake: int
    service_uri: str


class TranscoderPool:
    """The pool of the Livepeer contracts behind the Controller at ``controller`` on the chain at ``url``.

    ``service_registry``: read service URIs from this ServiceRegistry instead of the Controller's (an address
    string; "" for the Controller's). Close with :meth:`close`.
    """

    def __init__(self, url: str, controller: str, *, service_registry: str = "", timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        self._where = f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}"
        self._session = requests.Session()
        self._w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": timeout}, session=self._session))
        try:
            self._controller = Web3.to_checksum_address(controller)
            self._registry_override = Web3.to_checksum_address(service_registry) if service_registry else ""
        except ValueError as exc:
            raise ChainError(f"not an Ethereum address: {exc}") from None
        self._contracts: tuple[Any, Any, Any] | None = None
        self._known: list[bytes] = []  # the members of the last read, in order: the next read's first batch
        self._lock = threading.Lock()  # one read at a time: web3 batches every call made while a batch is open

    def close(self) -> None:
        """Release the connection (idempotent)."""
        self._session.close()

    async def read(self) -> PoolRead:
        """The pool now (see the module docstring). Raises :class:`ChainError`."""
        return await asyncio.to_thread(self._guarded, self._read, "reading the orchestrator pool")

    async def changes(self, since_block: int | None) -> PoolChanges:
        """The latest block, the round, and whether the pool's contracts logged anything after ``since_block``
        (None: do not look at logs; ``logged`` is false). Raises :class:`ChainError`."""
        return await asyncio.to_thread(self._guarded, lambda: self._changes(since_block), "watching the pool")

    # -- plumbing -------------------------------------------------------------------------------------------

    def _guarded(self, fn: Any, what: str) -> Any:
        try:
            with self._lock:
                return fn()
        except ChainError:
            raise
        except (requests.RequestException, OSError) as exc:
            raise ChainError(f"{what}: cannot reach the chain at {self._where} ({type(exc).__name__})") from None
        except (Web3Exception, ValueError, TypeError, KeyError) as exc:
            text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise ChainError(f"{what}: the chain at {self._where} answered: {text}") from None

    def _resolved(self) -> tuple[Any, Any, Any]:
        """BondingManager, ServiceRegistry and RoundsManager, found through the Controller once (one batch)."""
        if self._contracts is not None:
            return self._contracts
        w3 = self._w3
        controller = w3.eth.contract(address=self._controller, abi=abi.CONTROLLER)
        names = ("BondingManager", "ServiceRegistry", "RoundsManager")
        with w3.batch_requests() as batch:
            for name in names:
                batch.add(controller.functions.getContract(keccak(name.encode())))
            found = [str(a) for a in batch.execute()]
        for name, address in zip(names, found, strict=True):
            if int(address, 16) == 0:
                raise ChainError(f"the Controller at {self._controller} has no {name} registered")
        registry = self._registry_override or found[1]
        self._contracts = (
            w3.eth.contract(address=Web3.to_checksum_address(found[0]), abi=BONDING_MANAGER),
            w3.eth.contract(address=Web3.to_checksum_address(registry), abi=SERVICE_REGISTRY),
            w3.eth.contract(address=Web3.to_checksum_address(found[2]), abi=abi.ROUNDS_MANAGER),
        )
        return self._contracts

    def _read(self) -> PoolRead:
        bonding, registry, rounds = self._resolved()
        facts: dict[bytes, _Facts] = {}
        asking = list(self._known)
        head: tuple[int, bytes, int] | None = None  # round, first member, pool size
        for _ in range(MAX_POOL + 2):
            head, new = self._batch(bonding, registry, rounds, asking, head)
            facts.update(new)
            order, missing = _walk(head[1], head[2], facts)
            if missing is None:
                break
            asking = [missing]
        else:
            raise ChainError(f"the orchestrator pool did not end within {MAX_POOL} members")
        in_pool = set(order)
        left = [a for a in self._known if a not in in_pool and a in facts and facts[a].active]
        self._known = [*order, *left]
        members = [
            PoolMember(a, facts[a].stake, facts[a].active, facts[a].service_uri, in_pool=a in in_pool)
            for a in self._known
        ]
        return PoolRead(head[0], tuple(members))

    def _batch(
        self, bonding: Any, registry: Any, rounds: Any, asking: list[bytes], head: tuple[int, bytes, int] | None
    ) -> tuple[tuple[int, bytes, int], dict[bytes, _Facts]]:
        """One JSON-RPC batch: the round, the pool's first member and size (unless ``head`` has them), and the
        link, activity, stake and service URI of each address in ``asking``."""
        w3 = self._w3
        with w3.batch_requests() as batch:
            if head is None:
                batch.add(rounds.functions.currentRound())
                batch.add(bonding.functions.getFirstTranscoderInPool())
                batch.add(bonding.functions.getTranscoderPoolSize())
            for address in asking:
                member = Web3.to_checksum_address(address)
                batch.add(bonding.functions.getNextTranscoderInPool(member))
                batch.add(bonding.functions.isActiveTranscoder(member))
                batch.add(bonding.functions.transcoderTotalStake(member))
                batch.add(registry.functions.getServiceURI(member))
            out: list[Any] = list(batch.execute())
        if head is None:
            head = (int(out[0]), _raw(out[1]), int(out[2]))
            out = out[3:]
        facts = {
            address: _Facts(_raw(out[i]), bool(out[i + 1]), int(out[i + 2]), str(out[i + 3]).strip())
            for address, i in zip(asking, range(0, len(out), 4), strict=True)
        }
        return head, facts

    def _changes(self, since_block: int | None) -> PoolChanges:
        bonding, registry, rounds = self._resolved()
        w3 = self._w3
        with w3.batch_requests() as batch:
            batch.add(w3.eth.get_block_number())
            batch.add(rounds.functions.currentRound())
            out: list[Any] = list(batch.execute())
        block, current = int(out[0]), int(out[1])
        logged = False
        if since_block is not None and block > since_block:
            where = {"fromBlock": since_block + 1, "toBlock": block, "address": [bonding.address, registry.address]}
            logged = bool(w3.eth.get_logs(where))  # type: ignore[arg-type]
        return PoolChanges(block, current, logged)


def _raw(address: Any) -> bytes:
    return bytes.fromhex(str(address)[2:].rjust(40, "0"))


def _walk(first: bytes, size: int, facts: dict[bytes, _Facts]) -> tuple[list[bytes], bytes | None]:
    """The pool in order as far as ``facts`` know it, and the first member whose link is still unknown (None: the
    walk reached the end)."""
    order: list[bytes] = []
    seen: set[bytes] = set()
    cursor = first
    while cursor != ZERO and cursor not in seen and len(order) < max(size, 0) and len(order) < MAX_POOL:
        held = facts.get(cursor)
        if held is None:
            return order, cursor
        order.append(cursor)
        seen.add(cursor)
        cursor = held.next
    return order, None
