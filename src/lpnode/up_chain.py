"""``lpnode up --network devchain``: the whole stack paying with real tickets on a local chain.

A thread of its own keeps a dev chain for as long as ``up`` runs (:func:`lpnode.payments.devchain.start_devchain`:
anvil on 127.0.0.1 with the project's Livepeer contracts, blocks every second, each new round initialised).
Each orchestrator and the gateway get a keystore wallet in the data dir (made on first use, kept across runs,
unlocked with a password file beside them) and reach the chain the way they would reach Arbitrum One: through
``-network``, ``-ethUrl``, ``-ethController``, ``-ethKeystorePath`` and ``-ethPassword``. Before they start, the
chain gives every wallet ETH for gas, registers each orchestrator as an operator does (LPT bonded to itself,
``transcoder``, its service URI; the first with the most stake, :data:`STAKE` less for each next one), starts the
round from which they are active, and funds the gateway's deposit and reserve on the TicketBroker. The gateway is
given no orchestrator address: it finds them in the chain's pool, as a gateway on the network does.

The chain lives as long as ``up``: each run starts a fresh one, so the orchestrator's queue of winning tickets
from an earlier run (which belong to a chain that is gone) is set aside at start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from lpnode.errors import ConfigError
from lpnode.logs import log_event
from lpnode.payments.devchain import DevChain, start_devchain
from lpnode.payments.devchain_network import LPT, register_orchestrator
from lpnode.payments.keystore import Wallet, create_wallet, load_wallet
from lpnode.payments.redemption import QUEUE_FILE

log = logging.getLogger("lpnode.up")
DEVCHAIN = "devchain"
GAS_MONEY = 100 * 10**18
DEPOSIT = 10**18
RESERVE = 10**18
TICKET_EV = 10**10
"""Each ticket's expected value, in wei (close to go-livepeer's default of 8 gwei): a tiny image job carries a
ticket or two, an LLM answer one now and then (the gateway keeps a ticket's worth of credit per model)."""
MAX_FACE_VALUE = 4 * TICKET_EV
"""Face values capped at 4 tickets' worth, so about one ticket in four wins and is redeemed on chain. A face value
this small is only worth redeeming because the dev chain's gas is free (below: a redemption at the recipient's
350,000 gas must cost less than the face value, so gas above about 114,000 wei would stop ticket params)."""
MAX_GAS_PRICE = 10_000
"""The orchestrator's ``-maxGasPrice`` in wei. The dev chain charges no gas (base fee 0, no tip): raise its base
fee above this with ``anvil_setNextBlockBaseFeePerGas`` and winning tickets wait in the queue until it falls."""
ROUND_LENGTH = 100
"""Blocks per round (one block a second): a winning ticket stays redeemable for 2 rounds, so at least 100 s."""
START_SECONDS = 60.0
STAKE = 1000 * LPT
"""The last orchestrator's stake; each one before it has this much more (two: 2000 and 1000 LPT)."""
REWARD_CUT = 10.0  # percent of each round's reward the orchestrator keeps before its delegators share the rest
FEE_SHARE = 0.0
"""Percent of fees passed to delegators: none, so every fee a winning ticket earns is the orchestrator's own and
``pendingFees`` equals what ``lpnode tickets`` says it earned, to the wei (fees shared with delegators go through
Livepeer's cumulative factors, which round)."""


@dataclass(frozen=True)
class StackChain:
    """Where the chain is and which wallets the roles use."""

    url: str
    controller: str
    chain_id: int
    orchestrators: tuple[str, ...]
    gateway: str
    orchestrator_keystores: tuple[Path, ...]
    gateway_keystore: Path
    password_file: Path
    stakes: tuple[int, ...] = ()

    @property
    def orchestrator(self) -> str:
        """The first orchestrator's address."""
        return self.orchestrators[0]

    def connection_flags(self, keystore: Path) -> list[str]:
        return [
            "--network", DEVCHAIN, "--eth-url", self.url, "--eth-controller", self.controller,
            "--eth-keystore-path", str(keystore), "--eth-password", str(self.password_file),
        ]  # fmt: skip

    def orchestrator_flags(self, index: int = 0) -> list[str]:
        return [
            *self.connection_flags(self.orchestrator_keystores[index]),
            "--ticket-ev", str(TICKET_EV), "--max-face-value", str(MAX_FACE_VALUE),
            "--max-gas-price", str(MAX_GAS_PRICE),
        ]  # fmt: skip

    def gateway_flags(self) -> list[str]:
        return [
            *self.connection_flags(self.gateway_keystore),
            "--max-ticket-ev", str(TICKET_EV * 10), "--max-total-ev", str(TICKET_EV * 100_000),
        ]  # fmt: skip


def orchestrator_dir(data_dir: Path, index: int) -> Path:
    """Where ``up``'s orchestrator number ``index`` (from 0) keeps its state: ``orchestrator``, ``orchestrator-2``..."""
    return data_dir / ("orchestrator" if index == 0 else f"orchestrator-{index + 1}")


class ChainKeeper:
    """Runs the dev chain in a thread of its own for the life of ``up``: :meth:`start` (blocks until the chain,
    the wallets, the orchestrators' registrations and the deposit are ready) and :meth:`stop`. ``services``: each
    orchestrator's ``-serviceAddr`` (``host:port``), registered on chain as ``https://host:port``."""

    def __init__(self, data_dir: Path, services: Sequence[str] = ("127.0.0.1:8936",)) -> None:
        self.data_dir = data_dir
        self.services = list(services)
        self.chain: StackChain | None = None
        self._ready = threading.Event()
        self._problem: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="lpnode-devchain", daemon=True)

    def start(self) -> StackChain:
        self._thread.start()
        if not self._ready.wait(START_SECONDS):
            raise ConfigError(f"the dev chain was not ready within {START_SECONDS:g}s")
        if self._problem is not None:
            if isinstance(self._problem, ConfigError):
                raise self._problem
            raise ConfigError(f"the dev chain could not start: {self._problem}")
        assert self.chain is not None
        return self.chain

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        # anvil dies with the thread that started it: this one lives as long as `up` does.
        try:
            asyncio.run(self._keep())
        except BaseException as exc:  # reported to start(); nothing else waits on this thread
            self._problem = exc
            self._ready.set()

    async def _keep(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        chain = await start_devchain(block_time=1, round_length=ROUND_LENGTH, base_fee=0)
        try:
            self.chain = await self._prepare(chain)
            self._ready.set()
            rounds = asyncio.ensure_future(chain.keep_rounds())
            try:
                await self._stop.wait()
            finally:
                rounds.cancel()
                await asyncio.gather(rounds, return_exceptions=True)
        finally:
            await chain.close()

    async def _prepare(self, chain: DevChain) -> StackChain:
        password_file = _password_file(self.data_dir / "devchain-password")
        password = password_file.read_text().strip()
        orch_keystores = [orchestrator_dir(self.data_dir, i) / "keystore" for i in range(len(self.services))]
        gateway_keystore = self.data_dir / "gateway" / "keystore"
        wallets = await asyncio.gather(
            *(asyncio.to_thread(_wallet, path, password) for path in [*orch_keystores, gateway_keystore])
        )
        orchs, gateway = wallets[:-1], wallets[-1]
        for wallet in wallets:
            await chain.rpc("anvil_setBalance", [wallet.checksum_address, hex(GAS_MONEY)])
        stakes = [STAKE * (len(orchs) - i) for i in range(len(orchs))]
        for i, (wallet, service) in enumerate(zip(orchs, self.services, strict=True)):
            last = i == len(orchs) - 1  # one new round, after all registered: all active from it
            await register_orchestrator(
                chain, wallet, stakes[i], f"https://{service}", REWARD_CUT, FEE_SHARE, next_round=last
            )
            _set_aside_old_tickets(orchestrator_dir(self.data_dir, i))
        await chain.fund_sender(gateway, DEPOSIT, RESERVE)
        log_event(
            log, "dev chain ready", url=chain.url, controller=chain.controller,
            orchestrators=",".join(w.checksum_address for w in orchs), gateway=gateway.checksum_address,
            deposit_eth=str(Fraction(DEPOSIT, 10**18)),
        )  # fmt: skip
        return StackChain(
            url=chain.url, controller=chain.controller, chain_id=chain.chain_id,
            orchestrators=tuple(w.checksum_address for w in orchs), gateway=gateway.checksum_address,
            orchestrator_keystores=tuple(orch_keystores), gateway_keystore=gateway_keystore,
            password_file=password_file, stakes=tuple(stakes),
        )  # fmt: skip


def _password_file(path: Path) -> Path:
    """The dev wallets' password, made (random, owner-only) on first use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file():
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
            out.write(secrets.token_urlsafe(24) + "\n")
    return path


def _wallet(keystore: Path, password: str) -> Wallet:
    """The wallet kept in ``keystore``, made there on first use."""
    if keystore.is_dir() and any(keystore.iterdir()):
        return load_wallet(keystore, "", password)
    keystore.mkdir(parents=True, exist_ok=True)
    wallet, _ = create_wallet(keystore, password)
    return wallet


def _set_aside_old_tickets(orch_dir: Path) -> None:
    """Winning tickets of an earlier run's chain cannot be redeemed on this one: keep them, out of the queue."""
    for name in (QUEUE_FILE, f"{QUEUE_FILE}-wal", f"{QUEUE_FILE}-shm"):
        path = orch_dir / name
        if path.exists():
            path.replace(path.with_name(name + ".earlier-chain"))
