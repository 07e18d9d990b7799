"""A local EVM with the project's Livepeer contracts deployed: the chain for development and tests.

:func:`start_devchain` starts anvil on 127.0.0.1, deploys the contracts of ``contracts/`` (Controller,
LivepeerToken, Minter, RoundsManager, BondingManager, ServiceRegistry, TicketBroker), registers them in the
Controller under Livepeer's names (the TicketBroker also as ``JobsManager``, as on Arbitrum One), sets a ticket
validity period and an unlock period of 2 rounds, a pool of 100 orchestrators and an unbonding period of 2 rounds,
mints the deployer 10 million LPT, unpauses the Controller and initialises the first round. Orchestrators join
through the real path (``lpnode.payments.devchain_network``) or the :meth:`DevChain.activate` shortcut.
Code that reads the chain through the Controller's address runs unchanged against it and against Livepeer's
deployed contracts.

The chain is short-lived and small on purpose: rounds of 20 blocks by default (anvil mines more slowly as the
chain grows). Blocks are mined when transactions arrive, or every ``block_time`` seconds; :meth:`DevChain.mine`
and :meth:`DevChain.advance_round` move time on, and :meth:`DevChain.keep_rounds` initialises each new round as a
keeper does on the real network. anvil dies with the process that started it.

Accounts are anvil's well-known development keys (public knowledge: never send real funds to them); the first
one deployed the contracts and owns the Controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, cast

from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError
from web3.types import TxParams, TxReceipt

from lpnode.errors import ConfigError
from lpnode.payments.signatures import address_of, checksum, keccak, parse_address

ANVIL_VERSION = "1.7.1"
#: Where ``make`` installs anvil (npm ``@foundry-rs/anvil``), relative to the repository root.
ANVIL_TOOLS_PATH = Path(".tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
_ANVIL_TOOLS_GLOB = ".tools/node_modules/@foundry-rs/anvil-*/bin/anvil"
#: The contracts deployed, in deployment order; each is registered in the Controller under this name.
CONTRACTS = (
    "Controller",
    "LivepeerToken",
    "Minter",
    "RoundsManager",
    "BondingManager",
    "ServiceRegistry",
    "TicketBroker",
)
DEFAULT_ROUND_LENGTH = 20
DEFAULT_STAKE = 10**18
#: The dev network's parameters: Livepeer's pool size on Arbitrum One, a short unbonding period (Livepeer's is 7
#: rounds) and the Minter's inflation (parts per billion per round: 0.1% of the supply, moving by 0.00005% a round
#: towards 50% bonded).
NUM_ACTIVE_TRANSCODERS = 100
UNBONDING_PERIOD = 2
INFLATION = 1_000_000
INFLATION_CHANGE = 500
TARGET_BONDING_RATE = 500_000_000
#: LPT minted to the deployer at deployment, so that rewards (a share of the supply) are worth seeing.
INITIAL_SUPPLY = 10_000_000 * 10**18

_READY_TIMEOUT = 20.0
_TX_TIMEOUT = 60.0
_REPO_ROOT = Path(__file__).resolve().parents[3]


# initializeRound costs about 117,000 gas here (no loops); the limit is given because it cannot be estimated a block
# early: estimating runs it in the round that is still current, which is initialised.
INITIALIZE_ROUND_GAS = 500_000


class DevChainError(RuntimeError):
    """A dev-chain call or transaction reverted; ``reason`` is the contract's revert string."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _HasKey(Protocol):
    @property
    def key(self) -> bytes: ...


@dataclass(frozen=True)
class DevAccount:
    """A funded development account: 20-byte ``address`` and its 32-byte ``key`` (anvil's public dev keys)."""

    address: bytes
    key: bytes = field(repr=False)

    @property
    def checksum_address(self) -> str:
        return checksum(self.address)

    @property
    def key_hex(self) -> str:
        return "0x" + self.key.hex()


def find_anvil() -> str:
    """The anvil binary to run: ``$LPNODE_ANVIL``, else the one ``make`` installs under ``.tools/``, else ``anvil``
    on PATH. Raises :class:`ConfigError` naming how to install it."""
    env = os.environ.get("LPNODE_ANVIL", "").strip()
    if env:
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            raise ConfigError(f"LPNODE_ANVIL={env} is not an executable file")
        return env
    for root in (_REPO_ROOT, Path.cwd()):
        # npm installs the platform's own package (anvil-linux-amd64, anvil-darwin-arm64, ...).
        for candidate in [root / ANVIL_TOOLS_PATH, *sorted(root.glob(_ANVIL_TOOLS_GLOB))]:
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    found = shutil.which("anvil")
    if found:
        return found
    raise ConfigError(
        "the dev chain needs anvil: run `make up` (it installs it into .tools/), or "
        f"`npm install --prefix .tools @foundry-rs/anvil@{ANVIL_VERSION}`, or set LPNODE_ANVIL to an anvil binary"
    )


@cache
def artifact(name: str) -> dict[str, Any]:
    """The compiled contract ``name`` (``abi``, ``bytecode``, ``compiler``), as shipped with lpnode."""
    text = resources.files("lpnode.payments").joinpath("contracts", f"{name}.json").read_text()
    doc: dict[str, Any] = json.loads(text)
    return doc


def contract_id(name: str) -> bytes:
    """The Controller's key for a contract: ``keccak256(name)``."""
    return keccak(name.encode())


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: anvil gets SIGKILL when the process that started it dies.
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _as_key(key: bytes | str | _HasKey) -> bytes:
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return bytes.fromhex(key.removeprefix("0x"))
    return key.key


def _as_address(address: bytes | str) -> str:
    return checksum(address if isinstance(address, bytes) else parse_address(address))


def _revert_reason(exc: ContractLogicError) -> str:
    text = exc.message or str(exc)
    return text.removeprefix("execution reverted: ").removeprefix("execution reverted")


class DevChain:
    """A running anvil with the contracts deployed. Use :func:`start_devchain`; close it with :meth:`close`.

    Every method that talks to the chain is async and runs web3 in a thread. Transactions are signed locally
    with the sender's key and sent one at a time (a lock keeps nonces in order).
    """

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        url: str,
        accounts: Sequence[DevAccount],
        round_length: int,
        workdir: tempfile.TemporaryDirectory[str],
    ) -> None:
        self.url = url
        self.accounts: list[DevAccount] = list(accounts)
        self.deployer = self.accounts[0]
        self.round_length = round_length
        self.addresses: dict[str, str] = {}
        self.chain_id = 0
        self.w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))
        self._process = process
        self._workdir = workdir
        self._send_lock = threading.Lock()
        self._closed = False

    @property
    def pid(self) -> int:
        """anvil's process id."""
        return self._process.pid

    @property
    def controller(self) -> str:
        """The Controller's checksum address (what ``-ethController`` takes)."""
        return self.addresses["Controller"]

    def contract(self, name: str) -> Contract:
        """A web3 contract for one of :data:`CONTRACTS`, at its deployed address, with the project's ABI."""
        return self.w3.eth.contract(address=Web3.to_checksum_address(self.addresses[name]), abi=artifact(name)["abi"])

    # --- transactions ----------------------------------------------------------------------------------------

    def _send_sync(self, key: bytes, build: Callable[[Any], Any]) -> TxReceipt:
        sender = Web3.to_checksum_address(address_of(key))
        with self._send_lock:
            base: dict[str, Any] = {
                "from": sender,
                "nonce": self.w3.eth.get_transaction_count(sender, "pending"),
                "chainId": self.chain_id,
            }
            try:
                tx = build(base)
            except ContractLogicError as exc:
                raise DevChainError(_revert_reason(exc)) from None
            signed = self.w3.eth.account.sign_transaction(tx, key)
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=_TX_TIMEOUT, poll_latency=0.01)
        if receipt["status"] != 1:
            raise DevChainError(f"transaction {tx_hash.hex()} failed")
        return receipt

    def _call_sync(
        self, name: str, fn: str, *args: Any, key: bytes | None = None, value: int = 0, gas: int | None = None
    ) -> TxReceipt:
        function = self.contract(name).functions[fn](*args)

        def build(base: Any) -> Any:
            params: dict[str, Any] = {**base, "value": value}
            if gas is not None:
                params["gas"] = gas
            return function.build_transaction(cast(TxParams, params))

        return self._send_sync(key or self.deployer.key, build)

    async def transact(
        self,
        name: str,
        fn: str,
        *args: Any,
        key: bytes | str | _HasKey | None = None,
        value: int = 0,
        gas: int | None = None,
    ) -> TxReceipt:
        """Send ``name.fn(*args)`` from ``key`` (default: the deployer) and wait for it to be mined. Raises
        :class:`DevChainError` with the revert string when it would revert. ``gas``: the gas limit (default:
        estimated, which is too little for calls that catch an inner call running out of gas)."""
        signer = _as_key(key) if key is not None else None
        return await asyncio.to_thread(self._call_sync, name, fn, *args, key=signer, value=value, gas=gas)

    async def call(self, name: str, fn: str, *args: Any) -> Any:
        """``name.fn(*args)`` as a read-only call at the latest block; :class:`DevChainError` on a revert."""

        def run() -> Any:
            try:
                return self.contract(name).functions[fn](*args).call()
            except ContractLogicError as exc:
                raise DevChainError(_revert_reason(exc)) from None

        return await asyncio.to_thread(run)

    async def rpc(self, method: str, params: Sequence[Any] = ()) -> Any:
        """A raw JSON-RPC call (e.g. ``anvil_setNextBlockBaseFeePerGas``); returns its ``result``."""

        def run() -> Any:
            response = self.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
            if "error" in response:
                raise DevChainError(str(response["error"]))
            return response.get("result")

        return await asyncio.to_thread(run)

    # --- the protocol ----------------------------------------------------------------------------------------

    async def fund_sender(self, key: bytes | str | _HasKey, deposit: int, reserve: int) -> None:
        """``TicketBroker.fundDepositAndReserve(deposit, reserve)`` from the sender ``key`` (a key or a wallet)."""
        await self.transact("TicketBroker", "fundDepositAndReserve", deposit, reserve, key=key, value=deposit + reserve)

    async def activate(self, address: bytes | str, stake: int = DEFAULT_STAKE) -> None:
        """Make ``address`` a registered, active orchestrator with ``stake`` from this round on (so winning
        tickets can credit it fees and it may claim from reserves), keeping all its fees: a shortcut past bonding
        (no LPT moves) through ``devSetActiveTranscoder``. The real path is
        :func:`lpnode.payments.devchain_network.register_orchestrator`."""
        await self.transact("BondingManager", "devSetActiveTranscoder", _as_address(address), stake)

    async def block_number(self) -> int:
        return await asyncio.to_thread(lambda: int(self.w3.eth.block_number))

    async def current_round(self) -> int:
        return int(await self.call("RoundsManager", "currentRound"))

    async def mine(self, blocks: int = 1) -> None:
        """Mine ``blocks`` empty blocks at once (``anvil_mine``)."""
        if blocks > 0:
            await self.rpc("anvil_mine", [hex(blocks)])

    async def advance_round(self) -> int:
        """Mine to the first block of the next round and initialise it; returns the new round."""
        start = int(await self.call("RoundsManager", "currentRoundStartBlock"))
        await self.mine(start + self.round_length - await self.block_number())
        return await self.initialize_round()

    async def initialize_round(self) -> int:
        """Initialise the current round if it is not yet; returns it."""
        if not await self.call("RoundsManager", "currentRoundInitialized"):
            with contextlib.suppress(DevChainError):  # initialised meanwhile by someone else
                await self.transact("RoundsManager", "initializeRound")
        return await self.current_round()

    async def keep_rounds(self, interval: float = 0.5) -> None:
        """Initialise each round in its own first block, checking every ``interval`` seconds, until cancelled.

        A round initialised only once its first block is seen leaves a block or more in which every bond, transcoder
        or reward call is refused (``current round is not initialized``), and a transaction sent in a round's last
        block is mined, and reverts, in the next; with blocks mined only for transactions the chain even stalls at a
        round's last block, every transaction refused and none left to mine the next. So while the chain is at a
        round's last block, the round to come is initialised ahead: the transaction is mined (at once, or first when
        the next block comes) in that round's first block. A round that started without it (a burst of blocks, a
        busy machine) is initialised as soon as it is seen."""
        while True:
            with contextlib.suppress(DevChainError, OSError):
                await self.initialize_round()
                start = int(await self.call("RoundsManager", "currentRoundStartBlock"))
                # (With rounds of one block every block is a round's last: initialising ahead would mine forever.)
                if self.round_length > 1 and await self.block_number() + 1 == start + self.round_length:
                    await self.transact("RoundsManager", "initializeRound", gas=INITIALIZE_ROUND_GAS)
            await asyncio.sleep(interval)

    async def close(self) -> None:
        """Stop anvil and remove its files; nothing is left running."""
        if self._closed:
            return
        self._closed = True
        if self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self._process.kill()
                await self._process.wait()
        self._workdir.cleanup()

    async def __aenter__(self) -> DevChain:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- deployment ------------------------------------------------------------------------------------------

    def _deploy_sync(self, ticket_validity_period: int, unlock_period: int, active_transcoders: int) -> None:
        self.chain_id = int(self.w3.eth.chain_id)
        key = self.deployer.key

        def deploy(name: str, *args: Any) -> str:
            factory = self.w3.eth.contract(abi=artifact(name)["abi"], bytecode=artifact(name)["bytecode"])
            receipt = self._send_sync(key, lambda base: factory.constructor(*args).build_transaction(base))
            address = str(receipt["contractAddress"])
            self.addresses[name] = address
            return address

        controller = deploy("Controller")
        deploy("LivepeerToken", controller)
        deploy("Minter", controller, INFLATION, INFLATION_CHANGE, TARGET_BONDING_RATE)
        deploy("RoundsManager", controller, self.round_length)
        deploy("BondingManager", controller)
        deploy("ServiceRegistry", controller)
        deploy("TicketBroker", controller)
        registered = [(name, self.addresses[name]) for name in CONTRACTS[1:]]
        registered.append(("JobsManager", self.addresses["TicketBroker"]))
        for name, address in registered:
            self._call_sync("Controller", "setContractInfo", contract_id(name), address, bytes(20))
        self._call_sync("TicketBroker", "setTicketValidityPeriod", ticket_validity_period)
        self._call_sync("TicketBroker", "setUnlockPeriod", unlock_period)
        self._call_sync("BondingManager", "setNumActiveTranscoders", active_transcoders)
        self._call_sync("BondingManager", "setUnbondingPeriod", UNBONDING_PERIOD)
        self._call_sync("LivepeerToken", "mint", self.deployer.checksum_address, INITIAL_SUPPLY)
        self._call_sync("Controller", "unpause")


async def start_devchain(
    port: int = 0,
    *,
    block_time: float | None = None,
    round_length: int = DEFAULT_ROUND_LENGTH,
    accounts: int = 10,
    balance_eth: int = 10_000,
    ticket_validity_period: int = 2,
    unlock_period: int = 2,
    anvil: str | None = None,
    base_fee: int | None = None,
    active_transcoders: int = NUM_ACTIVE_TRANSCODERS,
) -> DevChain:
    """Start anvil on 127.0.0.1:``port`` (0: a free port), deploy and wire the contracts, and initialise round 1.

    ``block_time``: mine a block every so many seconds as well (default: only when a transaction arrives).
    ``base_fee``: the first block's base fee in wei, with no minimum priority fee, so ``eth_gasPrice`` is the base
    fee (0: gas costs nothing until someone sets it with ``anvil_setNextBlockBaseFeePerGas``); default anvil's
    own (1 gwei, falling as empty blocks pass, plus a suggested 1 gwei tip). ``active_transcoders``: the pool's
    maximum size (1 to 256).
    Raises :class:`ConfigError` when anvil is missing or does not start.

    anvil is killed when the thread that started it ends (Linux's parent-death signal follows the thread):
    call this from the thread whose event loop keeps the chain, not from a short-lived worker thread."""
    binary = anvil or find_anvil()
    # Whole-second block times are switched on after deployment, which then takes one block per transaction
    # instead of a block time each; anvil takes fractions only on its command line.
    interval = int(block_time) if block_time and float(block_time).is_integer() else 0
    extra = ["--accounts", str(accounts), "--balance", str(balance_eth)]
    if base_fee is not None:
        extra += ["--base-fee", str(base_fee), "--no-priority-fee"]
    if block_time and not interval:
        extra += ["--block-time", str(block_time)]
    attempts = 1 if port else 3  # a free port picked here may be taken by someone else before anvil binds it
    for attempt in range(attempts):
        try:
            chain = await _launch(binary, port or _free_port(), extra, round_length)
            break
        except ConfigError:
            if attempt == attempts - 1:
                raise
    try:
        await asyncio.to_thread(chain._deploy_sync, ticket_validity_period, unlock_period, active_transcoders)
        await chain.advance_round()
        if interval:
            await chain.rpc("evm_setIntervalMining", [interval])
    except BaseException:
        await chain.close()
        raise
    return chain


async def _launch(binary: str, port: int, extra: list[str], round_length: int) -> DevChain:
    """Run anvil on 127.0.0.1:``port`` and wait until it answers; the chain has no contracts yet."""
    workdir = tempfile.TemporaryDirectory(prefix="lpnode-devchain-")
    config_path = Path(workdir.name) / "accounts.json"
    log_path = Path(workdir.name) / "anvil.log"
    command = [binary, "--host", "127.0.0.1", "--port", str(port), "--silent", "--config-out", str(config_path)]
    with open(log_path, "wb") as log_file:  # noqa: ASYNC230 - a local file opened once for the child's output
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                *extra,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        except OSError as exc:
            workdir.cleanup()
            raise ConfigError(f"cannot run anvil ({binary}): {exc.strerror or exc}") from None
    url = f"http://127.0.0.1:{port}"
    try:
        keys = await _wait_ready(process, url, config_path, log_path)
        return DevChain(process, url, [DevAccount(address_of(k), k) for k in keys], round_length, workdir)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        workdir.cleanup()
        raise


async def _wait_ready(process: asyncio.subprocess.Process, url: str, config_path: Path, log_path: Path) -> list[bytes]:
    """Wait until anvil answers JSON-RPC and has written its accounts; return the accounts' keys."""
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 2}))

    def ready() -> list[bytes] | None:
        if not config_path.exists() or not w3.is_connected():
            return None
        doc = json.loads(config_path.read_text())
        return [bytes.fromhex(k.removeprefix("0x")) for k in doc["private_keys"]]

    def last_line() -> str:
        lines = log_path.read_text(errors="replace").strip().splitlines() if log_path.exists() else []
        return f": {lines[-1]}" if lines else ""

    deadline = time.monotonic() + _READY_TIMEOUT
    while True:
        if process.returncode is not None:
            detail = await asyncio.to_thread(last_line)
            raise ConfigError(f"anvil exited with status {process.returncode} before it was ready{detail}")
        with contextlib.suppress(ValueError, OSError):  # the accounts file half-written, or no answer yet
            keys = await asyncio.to_thread(ready)
            if keys:
                return keys
        if time.monotonic() > deadline:
            raise ConfigError(f"anvil did not answer at {url} within {_READY_TIMEOUT:.0f} s")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 0.05)
