"""The chain client: Livepeer's contracts through web3, with keys that never leave this process.

Contracts are found as go-livepeer finds them, through the Controller (``getContract(keccak256(name))``);
only the Controller's address is configured. Transactions are signed locally with eth-account and sent raw;
each send waits for its receipt, polling quickly at first (web3's default poll adds ~100 ms per transaction).
Every web3 call runs in a worker thread, so the event loop never waits on the chain.

Failures are :mod:`lpnode.payments.chain_errors` (``ChainError``, ``ChainRevert`` with the contract's reason in
words, ``GasPriceTooHigh``).

Addresses given to and returned by the methods are 20 raw bytes; amounts are wei (``int``); transaction hashes
are 0x-prefixed hex strings.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import requests
from eth_account import Account
from eth_typing import ChecksumAddress
from web3 import HTTPProvider, Web3
from web3.exceptions import (
    ContractLogicError,
    TransactionNotFound,
    Web3Exception,
    Web3RPCError,
)
from web3.providers.rpc.utils import ExceptionRetryConfiguration

from lpnode.payments import abi
from lpnode.payments.chain_errors import ChainError, ChainRevert, GasPriceTooHigh, revert_reason
from lpnode.payments.chain_view import SenderInfo
from lpnode.payments.signatures import keccak

if TYPE_CHECKING:
    from lpnode.payments.keystore import Wallet
    from lpnode.payments.ticket import Ticket

T = TypeVar("T")

# Gas limit = estimate × 6/5: on Arbitrum the estimate moves with L1 prices between estimating and mining.
_GAS_MARGIN = (6, 5)
_RECEIPT_POLL_FIRST = 0.005
_RECEIPT_POLL_MAX = 0.25


def _safe_url(url: str) -> str:
    """The scheme, host and port of an RPC URL: paths and queries often hold API keys."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}"


class ChainClient:
    """Livepeer's contracts on one chain, through the Controller at ``controller`` (an address string).

    ``wallet`` signs transactions; without it only reads work. ``max_gas_price`` (wei, 0: no cap) is checked
    before every send: above it, :class:`GasPriceTooHigh` and nothing is sent. Sends from one client are
    serialised, so their nonces never collide.
    """

    def __init__(
        self,
        url: str,
        controller: str,
        wallet: Wallet | None,
        *,
        max_gas_price: int = 0,
        timeout: float = 20.0,
        receipt_timeout: float = 120.0,
    ) -> None:
        self._url = _safe_url(url)
        self._session = requests.Session()
        provider = HTTPProvider(
            url,
            request_kwargs={"timeout": timeout},
            session=self._session,
            exception_retry_configuration=ExceptionRetryConfiguration(
                errors=(requests.ConnectionError, requests.Timeout), retries=2, backoff_factor=0.1
            ),
        )
        self._w3 = Web3(provider)
        # A second connection for batched polls: web3 batches every call made on a Web3 while its batch is open,
        # and other threads use self._w3 at the same time.
        self._poll_session = requests.Session()
        self._poll_w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": timeout}, session=self._poll_session))
        self._poll_lock = threading.Lock()
        try:
            self._controller = Web3.to_checksum_address(controller)
        except ValueError:
            raise ChainError(f"the Controller address {controller!r} is not an Ethereum address") from None
        self._wallet = wallet
        self._account = Account.from_key(wallet.key) if wallet is not None else None
        self.max_gas_price = max_gas_price
        self._receipt_timeout = receipt_timeout
        self._contracts: dict[str, Any] = {}
        self._extra_abis: dict[str, abi.ABI] = {}
        self._contracts_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._chain_id: int | None = None

    # -- plumbing -------------------------------------------------------------------------------------------

    @property
    def address(self) -> bytes | None:
        """The wallet's address, or None without a wallet."""
        return self._wallet.address if self._wallet is not None else None

    @property
    def controller(self) -> str:
        return self._controller

    def close(self) -> None:
        """Release the HTTP connections (idempotent)."""
        self._session.close()
        self._poll_session.close()

    async def _run(self, fn: Callable[[], T], what: str) -> T:
        return await asyncio.to_thread(self._guarded, fn, what)

    def _guarded(self, fn: Callable[[], T], what: str) -> T:
        try:
            return fn()
        except ChainError:
            raise
        except (ContractLogicError, Web3RPCError) as exc:
            reason = revert_reason(exc)
            if reason is not None:
                raise ChainRevert(reason) from None
            raise ChainError(f"{what}: the chain at {self._url} answered: {_short(exc)}") from None
        except (requests.RequestException, OSError) as exc:
            raise ChainError(f"{what}: cannot reach the chain at {self._url} ({type(exc).__name__})") from None
        except (Web3Exception, ValueError) as exc:
            raise ChainError(f"{what}: {_short(exc)}") from None

    def _contract(self, name: str) -> Any:
        """The named Livepeer contract, resolved through the Controller once."""
        with self._contracts_lock:
            found = self._contracts.get(name)
        if found is not None:
            return found
        controller = self._w3.eth.contract(address=self._controller, abi=abi.CONTROLLER)
        address = controller.functions.getContract(keccak(name.encode())).call()
        if int(address, 16) == 0:
            raise ChainError(f"the Controller at {self._controller} has no {name} registered")
        abis = {
            "TicketBroker": abi.TICKET_BROKER,
            "RoundsManager": abi.ROUNDS_MANAGER,
            "BondingManager": abi.BONDING_MANAGER,
        }
        known = _merged(abis.get(name, []), self._extra_abis.get(name, []))
        contract = self._w3.eth.contract(address=Web3.to_checksum_address(address), abi=known)
        with self._contracts_lock:
            self._contracts[name] = contract
        return contract

    def use_abi(self, name: str, contract_abi: abi.ABI) -> None:
        """Know more functions of the Controller's contract ``name`` (any contract it registers, e.g.
        ``ServiceRegistry``) for :meth:`read`, :meth:`estimate_gas` and :meth:`transact`."""
        with self._contracts_lock:
            self._extra_abis[name] = _merged(self._extra_abis.get(name, []), contract_abi)
            self._contracts.pop(name, None)

    async def read(self, name: str, function: str, *args: Any) -> Any:
        """A view ``function`` of the Controller's contract ``name``; a revert is :class:`ChainRevert`."""
        return await self._call(name, function, *args)

    async def estimate_gas(self, name: str, function: str, *args: Any, value: int = 0) -> int:
        """The gas ``name.function(*args)`` sent from the wallet would use now. It runs the call, so a transaction
        that would revert raises :class:`ChainRevert` here, with nothing signed or sent."""

        def run() -> int:
            call = getattr(self._contract(name).functions, function)(*args)
            return int(call.estimate_gas({"from": self._own_checksum(), "value": value}))

        return await self._run(run, f"{name}.{function}")

    async def transact(self, name: str, function: str, *args: Any, value: int = 0) -> str:
        """Send ``name.function(*args)`` from the wallet and wait for its receipt; the transaction hash. Checks
        and failures as every send here (:class:`GasPriceTooHigh`, :class:`ChainRevert`)."""
        return await self._send(name, function, *args, value=value)

    def _read(self, name: str, function: str, *args: Any) -> Any:
        return getattr(self._contract(name).functions, function)(*args).call()

    async def _call(self, name: str, function: str, *args: Any) -> Any:
        return await self._run(lambda: self._read(name, function, *args), f"{name}.{function}")

    async def call(self, address: str, contract_abi: abi.ABI, function: str, *args: Any) -> Any:
        """Call a view ``function`` of any contract (e.g. a price feed) at ``address``."""

        def run() -> Any:
            contract = self._w3.eth.contract(address=Web3.to_checksum_address(address), abi=contract_abi)
            return getattr(contract.functions, function)(*args).call()

        return await self._run(run, function)

    async def check_controller(self) -> None:
        """Check a Controller is deployed at the configured address and has a TicketBroker."""

        def run() -> None:
            if not self._w3.eth.get_code(self._controller):
                raise ChainError(f"no contract at the Controller address {self._controller} on this chain")
            self._contract("TicketBroker")

        await self._run(run, "Controller.getContract")

    async def poll(
        self,
        active: Sequence[bytes] = (),
        senders: Sequence[bytes] = (),
        claimed: Sequence[tuple[bytes, bytes]] = (),
    ) -> ChainPoll:
        """What a watcher reads each period, in one JSON-RPC batch (one round trip, one thread): the latest block
        (and its L1 block), the gas price, the round, whether ``active`` addresses are active orchestrators, the
        ``senders``' deposits and reserves, and what each (sender, recipient) in ``claimed`` took from the reserve."""

        def run() -> ChainPoll:
            w3 = self._poll_w3
            rounds, bonding, broker = (
                w3.eth.contract(address=self._contract(n).address, abi=self._contract(n).abi)
                for n in ("RoundsManager", "BondingManager", "TicketBroker")
            )
            cs = Web3.to_checksum_address
            with self._poll_lock, w3.batch_requests() as batch:
                batch.add(w3.eth.get_block("latest"))
                batch.add(w3.eth.gas_price)
                batch.add(rounds.functions.currentRound())
                batch.add(rounds.functions.lastInitializedRound())
                batch.add(rounds.functions.currentRoundInitialized())
                for address in active:
                    batch.add(bonding.functions.isActiveTranscoder(cs(address)))
                for sender in senders:
                    batch.add(broker.functions.getSenderInfo(cs(sender)))
                for sender, recipient in claimed:
                    batch.add(broker.functions.claimedReserve(cs(sender), cs(recipient)))
                out: list[Any] = list(batch.execute())
            block, gas_price, current, last, initialized = out[:5]
            rest = out[5:]
            infos = rest[len(active) : len(active) + len(senders)]
            return ChainPoll(
                block=int(block["number"]),
                l1_block=_l1_block(block),
                gas_price=int(gas_price),
                current_round=int(current),
                last_initialized_round=int(last),
                initialized=bool(initialized),
                active=dict(zip(active, (bool(a) for a in rest[: len(active)]), strict=True)),
                senders={
                    s: SenderInfo(int(d), int(w), int(r), int(c))
                    for s, ((d, w), (r, c)) in zip(senders, infos, strict=True)
                },
                claimed=dict(zip(claimed, (int(c) for c in rest[len(active) + len(senders) :]), strict=True)),
            )

        return await self._run(run, "poll")

    async def contract_address(self, name: str) -> str:
        """The address the Controller gives for ``name`` (EIP-55)."""
        return str(await self._run(lambda: self._contract(name).address, f"Controller.getContract({name})"))

    # -- blocks and gas ---------------------------------------------------------------------------------------

    async def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(await self._run(lambda: self._w3.eth.chain_id, "eth_chainId"))
        return self._chain_id

    async def block_number(self) -> int:
        return int(await self._run(lambda: self._w3.eth.block_number, "eth_blockNumber"))

    async def l1_block_number(self) -> int:
        """Arbitrum's ``l1BlockNumber`` of the latest block where the chain has it, else the block number."""

        return await self._run(lambda: _l1_block(self._w3.eth.get_block("latest")), "eth_getBlockByNumber")

    async def gas_price(self) -> int:
        return int(await self._run(lambda: self._w3.eth.gas_price, "eth_gasPrice"))

    async def eth_balance(self, address: bytes) -> int:
        return int(
            await self._run(lambda: self._w3.eth.get_balance(Web3.to_checksum_address(address)), "eth_getBalance")
        )

    async def paused(self) -> bool:
        def run() -> bool:
            controller = self._w3.eth.contract(address=self._controller, abi=abi.CONTROLLER)
            return bool(controller.functions.paused().call())

        return await self._run(run, "Controller.paused")

    # -- rounds -----------------------------------------------------------------------------------------------

    async def current_round(self) -> int:
        return int(await self._call("RoundsManager", "currentRound"))

    async def last_initialized_round(self) -> int:
        return int(await self._call("RoundsManager", "lastInitializedRound"))

    async def current_round_initialized(self) -> bool:
        return bool(await self._call("RoundsManager", "currentRoundInitialized"))

    async def block_hash_for_round(self, round_number: int) -> bytes:
        return bytes(await self._call("RoundsManager", "blockHashForRound", round_number))

    async def round_length(self) -> int:
        return int(await self._call("RoundsManager", "roundLength"))

    async def initialize_round(self) -> str:
        return await self._send("RoundsManager", "initializeRound")

    # -- the ticket broker ------------------------------------------------------------------------------------

    async def sender_info(self, address: bytes) -> SenderInfo:
        (deposit, withdraw_round), (reserve, claimed) = await self._call(
            "TicketBroker", "getSenderInfo", Web3.to_checksum_address(address)
        )
        return SenderInfo(int(deposit), int(withdraw_round), int(reserve), int(claimed))

    async def claimed_reserve(self, sender: bytes, recipient: bytes) -> int:
        return int(
            await self._call(
                "TicketBroker", "claimedReserve", Web3.to_checksum_address(sender), Web3.to_checksum_address(recipient)
            )
        )

    async def unlock_period(self) -> int:
        return int(await self._call("TicketBroker", "unlockPeriod"))

    async def ticket_validity_period(self) -> int:
        return int(await self._call("TicketBroker", "ticketValidityPeriod"))

    async def is_used(self, ticket_hash: bytes) -> bool:
        return bool(await self._call("TicketBroker", "usedTickets", ticket_hash))

    async def fund_deposit_and_reserve(self, deposit: int, reserve: int) -> str:
        return await self._send("TicketBroker", "fundDepositAndReserve", deposit, reserve, value=deposit + reserve)

    async def fund_deposit(self, amount: int) -> str:
        return await self._send("TicketBroker", "fundDeposit", value=amount)

    async def fund_reserve(self, amount: int) -> str:
        return await self._send("TicketBroker", "fundReserve", value=amount)

    async def unlock(self) -> str:
        return await self._send("TicketBroker", "unlock")

    async def cancel_unlock(self) -> str:
        return await self._send("TicketBroker", "cancelUnlock")

    async def withdraw(self) -> str:
        return await self._send("TicketBroker", "withdraw")

    async def redeem_winning_ticket(self, ticket: Ticket, sig: bytes, rand: int) -> str:
        """Redeem one winning ticket; returns the transaction hash. Reverts (``ticket is used``, ``ticket is
        expired``, ...) raise :class:`ChainRevert` with the contract's reason."""
        return await self._send("TicketBroker", "redeemWinningTicket", ticket.contract_args(), sig, rand)

    # -- the bonding manager ----------------------------------------------------------------------------------

    async def is_active_transcoder(self, address: bytes) -> bool:
        return bool(await self._call("BondingManager", "isActiveTranscoder", Web3.to_checksum_address(address)))

    async def transcoder_pool_size(self) -> int:
        return int(await self._call("BondingManager", "getTranscoderPoolSize"))

    async def pending_fees(self, address: bytes) -> int:
        """Fees ``address`` can withdraw, up to the current round."""
        current = await self.current_round()
        return int(await self._call("BondingManager", "pendingFees", Web3.to_checksum_address(address), current))

    async def withdraw_fees(self, amount: int) -> str:
        """Withdraw ``amount`` wei of earned fees to the wallet's own address."""
        return await self._send("BondingManager", "withdrawFees", self._own_checksum(), amount)

    # -- sending ----------------------------------------------------------------------------------------------

    def _own_checksum(self) -> ChecksumAddress:
        if self._wallet is None:
            raise ChainError("this needs a wallet: give -ethKeystorePath (and -ethPassword)")
        return Web3.to_checksum_address(self._wallet.address)

    async def _send(self, name: str, function: str, *args: Any, value: int = 0) -> str:
        return await self._run(lambda: self._send_sync(name, function, args, value), f"{name}.{function}")

    def _send_sync(self, name: str, function: str, args: tuple[Any, ...], value: int) -> str:
        sender = self._own_checksum()
        assert self._account is not None
        call = getattr(self._contract(name).functions, function)(*args)
        with self._send_lock:
            gas_price = int(self._w3.eth.gas_price)
            if self.max_gas_price and gas_price > self.max_gas_price:
                raise GasPriceTooHigh(gas_price, self.max_gas_price)
            # Estimating runs the call: a revert surfaces here, before anything is signed or sent.
            gas = int(call.estimate_gas({"from": sender, "value": value}))
            tx = call.build_transaction(
                {
                    "from": sender,
                    "value": value,
                    "gas": gas * _GAS_MARGIN[0] // _GAS_MARGIN[1],
                    "gasPrice": gas_price,
                    "nonce": self._w3.eth.get_transaction_count(sender, "pending"),
                    "chainId": self._chain_id if self._chain_id is not None else int(self._w3.eth.chain_id),
                }
            )
            signed = self._account.sign_transaction(tx)
            tx_hash = self._w3.eth.send_raw_transaction(signed.raw_transaction)
        hex_hash = "0x" + bytes(tx_hash).hex()
        receipt = self._wait_for_receipt(tx_hash)
        if int(receipt["status"]) != 1:
            raise ChainRevert(self._replay_reason(tx, int(receipt["blockNumber"])), hex_hash)
        return hex_hash

    def _wait_for_receipt(self, tx_hash: Any) -> Any:
        deadline = time.monotonic() + self._receipt_timeout
        delay = _RECEIPT_POLL_FIRST
        while True:
            try:
                return self._w3.eth.get_transaction_receipt(tx_hash)
            except TransactionNotFound:
                pass
            if time.monotonic() > deadline:
                raise ChainError(
                    f"transaction 0x{bytes(tx_hash).hex()} was not mined within {self._receipt_timeout:.0f} s"
                )
            time.sleep(delay)
            delay = min(delay * 2, _RECEIPT_POLL_MAX)

    def _replay_reason(self, tx: dict[str, Any], block: int) -> str:
        """Why a mined transaction failed: the same call replayed on the state it met."""
        call = {key: tx[key] for key in ("from", "to", "data", "value", "gas") if key in tx}
        try:
            self._w3.eth.call(call, block_identifier=max(block - 1, 0))  # type: ignore[arg-type]
        except (ContractLogicError, Web3RPCError) as exc:
            return revert_reason(exc) or "transaction reverted"
        except Exception:  # the replay is only for the message; the revert itself is certain
            return "transaction reverted"
        return "transaction reverted (out of gas, or the state changed before it was mined)"


@dataclass(frozen=True)
class ChainPoll:
    """One :meth:`ChainClient.poll`."""

    block: int
    l1_block: int
    gas_price: int
    current_round: int
    last_initialized_round: int
    initialized: bool
    active: dict[bytes, bool]
    senders: dict[bytes, SenderInfo]
    claimed: dict[tuple[bytes, bytes], int]


def _l1_block(block: Any) -> int:
    """Arbitrum's ``l1BlockNumber`` of ``block`` where the chain has it, else its number."""
    l1 = block.get("l1BlockNumber")
    if l1 is None:
        return int(block["number"])
    # web3 leaves keys it does not know as the node sent them: a hex string.
    return int(l1, 16) if isinstance(l1, str) else int(str(l1))


def _merged(first: abi.ABI, more: abi.ABI) -> abi.ABI:
    """``first`` and the entries of ``more`` it lacks (same name and input types): web3 refuses duplicates."""

    def key(entry: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
        return str(entry.get("name")), tuple(str(i.get("type")) for i in entry.get("inputs", []))

    seen = {key(e) for e in first}
    return [*first, *(e for e in more if key(e) not in seen)]


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
