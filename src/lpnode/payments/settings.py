"""The chain flags every role shares, what they mean once checked, and opening the chain they name.

Off-chain is the default and needs none of this: :func:`chain_settings` then returns settings whose
``on_chain`` is false, and the roles hold no chain objects at all. go-livepeer's spellings are accepted beside
ours (``-ethUrl URL``, ``-ethUrl=URL``, ``--eth-url URL``); amounts are in wei, as there.

A network is either built in (:data:`NETWORKS`: its Controller, price feed and redeem gas are known) or any
other name given with ``-ethUrl`` and ``-ethController`` (any EVM with Livepeer's contracts, e.g. a local
anvil). Every problem is one :class:`~lpnode.errors.ConfigError` line that never holds the password.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from lpnode.errors import ConfigError
from lpnode.protocol.go_duration import parse_go_duration

if TYPE_CHECKING:
    from lpnode.payments.chain_client import ChainClient
    from lpnode.payments.chain_watcher import ChainWatcher
    from lpnode.payments.keystore import Wallet
    from lpnode.payments.price_feed import PriceFeed

log = logging.getLogger(__name__)

OFFCHAIN = "offchain"
# go-livepeer's redeem gas estimates: on Arbitrum, and on any network it does not know.
REDEEM_GAS_L2 = 1_200_000
REDEEM_GAS_L1 = 350_000
DEFAULT_TICKET_EV = Fraction(8_000_000_000)
DEFAULT_MAX_TICKET_EV = Fraction(3_000_000_000_000)
DEFAULT_MAX_TOTAL_EV = Fraction(20_000_000_000_000)
DEFAULT_LIVE_PAYMENT_INTERVAL = 5.0
ROLES = ("orchestrator", "gateway", "both")


@dataclass(frozen=True)
class Network:
    """A network lpnode knows by name."""

    name: str
    chain_id: int
    controller: str
    price_feed: str
    redeem_gas: int


NETWORKS: dict[str, Network | None] = {
    OFFCHAIN: None,
    "arbitrum-one-mainnet": Network(
        name="arbitrum-one-mainnet",
        chain_id=42161,
        controller="0xD8E8328501E9645d16Cf49539efC04f734606ee4",
        price_feed="0x639Fe6ab55C921f74e7fac1ee960C0B6293ba612",
        redeem_gas=REDEEM_GAS_L2,
    ),
}


@dataclass(frozen=True)
class ChainSettings:
    """The checked chain flags. Addresses are EIP-55 strings ("" when not given); amounts are wei.

    ``password`` is the password itself (read from the file ``-ethPassword`` named, if it named one); it is left
    out of ``repr``. ``max_gas_price`` 0 means no cap; ``max_face_value`` 0 means none; ``price_feed`` "" means
    no currency conversion (prices in USD are refused by whoever needs them).
    """

    network: str = OFFCHAIN
    eth_url: str = ""
    controller: str = ""
    keystore_path: Path | None = None
    account: str = ""
    password: str = field(default="", repr=False)
    max_gas_price: int = 0
    ticket_ev: Fraction = DEFAULT_TICKET_EV
    max_ticket_ev: Fraction = DEFAULT_MAX_TICKET_EV
    max_total_ev: Fraction = DEFAULT_MAX_TOTAL_EV
    deposit_multiplier: int = 1
    max_face_value: int = 0
    price_feed: str = ""
    live_payment_interval: float = DEFAULT_LIVE_PAYMENT_INTERVAL

    @property
    def on_chain(self) -> bool:
        return self.network != OFFCHAIN

    @property
    def redeem_gas(self) -> int:
        """Gas one ``redeemWinningTicket`` is assumed to cost (face values are 100 × this × the gas price)."""
        known = NETWORKS.get(self.network)
        return known.redeem_gas if known is not None else REDEEM_GAS_L1

    @property
    def chain_id(self) -> int | None:
        """The chain id a built-in network must have (None: any)."""
        known = NETWORKS.get(self.network)
        return known.chain_id if known is not None else None


def add_connection_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The flags that say which chain and which account: ``-network``, ``-ethUrl``, ``-ethController``,
    ``-ethKeystorePath``, ``-ethAcctAddr``, ``-ethPassword`` and ``-maxGasPrice`` (each in both spellings)."""
    parser.add_argument(
        "--network",
        "-network",
        dest="network",
        default=OFFCHAIN,
        help=f"offchain (default), {', '.join(n for n in NETWORKS if n != OFFCHAIN)}, or any name with "
        "--eth-url and --eth-controller",
    )
    parser.add_argument("--eth-url", "-ethUrl", dest="eth_url", default="", help="JSON-RPC URL of the chain")
    parser.add_argument(
        "--eth-controller", "-ethController", dest="eth_controller", default="", help="the Controller's address"
    )
    parser.add_argument(
        "--eth-keystore-path",
        "-ethKeystorePath",
        dest="eth_keystore_path",
        default="",
        help="a keystore file or directory (default DATA_DIR/keystore)",
    )
    parser.add_argument("--eth-acct-addr", "-ethAcctAddr", dest="eth_acct_addr", default="", help="the account to use")
    parser.add_argument(
        "--eth-password",
        "-ethPassword",
        dest="eth_password",
        default="",
        help="keystore password, or a file holding it",
    )
    parser.add_argument(
        "--max-gas-price",
        "-maxGasPrice",
        dest="max_gas_price",
        default="0",
        help="hold transactions while the gas price is above this, in wei (default 0: no cap)",
    )


def add_chain_flags(parser: argparse.ArgumentParser, role: str) -> None:
    """Add the chain flags to a role's parser: ``orchestrator`` gets ``-ticketEV`` and ``-maxFaceValue``,
    ``gateway`` gets ``-maxTicketEV``, ``-maxTotalEV`` and ``-depositMultiplier``, ``both`` gets all of them.

    Give the parser ``allow_abbrev=False`` so go's single-dash spellings never match by prefix.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    g = parser.add_argument_group("chain (off-chain unless -network names a chain)")
    add_connection_flags(g)
    if role in ("orchestrator", "both"):
        g.add_argument(
            "--ticket-ev", "-ticketEV", dest="ticket_ev", default=str(DEFAULT_TICKET_EV), help="wei (default 8e9)"
        )
        g.add_argument(
            "--max-face-value", "-maxFaceValue", dest="max_face_value", default="0", help="wei (default 0: none)"
        )
    if role in ("gateway", "both"):
        g.add_argument(
            "--max-ticket-ev",
            "-maxTicketEV",
            dest="max_ticket_ev",
            default=str(DEFAULT_MAX_TICKET_EV),
            help="wei (default 3e12)",
        )
        g.add_argument(
            "--max-total-ev",
            "-maxTotalEV",
            dest="max_total_ev",
            default=str(DEFAULT_MAX_TOTAL_EV),
            help="wei per payment (default 2e13)",
        )
        g.add_argument(
            "--deposit-multiplier", "-depositMultiplier", dest="deposit_multiplier", default="1", help="default 1"
        )
    g.add_argument(
        "--price-feed-addr",
        "-priceFeedAddr",
        dest="price_feed_addr",
        default="",
        help="Chainlink ETH/USD aggregator (default: the network's)",
    )
    g.add_argument(
        "--live-payment-interval",
        "-livePaymentInterval",
        dest="live_payment_interval",
        default="5s",
        help="how often live streams pay, a duration such as 5s (default 5s)",
    )


def chain_settings(args: argparse.Namespace) -> ChainSettings:
    """Check the chain flags :func:`add_chain_flags` added; every problem is a one-line ``ConfigError``.

    Off-chain, only ``-livePaymentInterval`` is read; every other chain flag is ignored, as in go-livepeer.
    """
    interval = go_duration(str(getattr(args, "live_payment_interval", "5s")), "-livePaymentInterval")
    network = str(getattr(args, "network", OFFCHAIN) or OFFCHAIN)
    if network == OFFCHAIN:
        return ChainSettings(live_payment_interval=interval)
    known = NETWORKS.get(network)
    eth_url = str(getattr(args, "eth_url", "")).strip()
    controller = str(getattr(args, "eth_controller", "")).strip()
    if not eth_url:
        raise ConfigError(f"-network {network} needs -ethUrl (the JSON-RPC URL of a node of that chain)")
    if known is None and not controller:
        raise ConfigError(
            f"-network {network} is not a built-in network ({', '.join(NETWORKS)}): give -ethController "
            "(the address of its Livepeer Controller) with -ethUrl"
        )
    controller = _address(controller or (known.controller if known else ""), "-ethController")
    feed_flag = str(getattr(args, "price_feed_addr", "")).strip()
    price_feed = _address(feed_flag, "-priceFeedAddr") if feed_flag else (known.price_feed if known else "")
    account = str(getattr(args, "eth_acct_addr", "")).strip()
    keystore = str(getattr(args, "eth_keystore_path", "")).strip()
    return ChainSettings(
        network=network,
        eth_url=eth_url,
        controller=controller,
        keystore_path=Path(keystore).expanduser() if keystore else None,
        account=_address(account, "-ethAcctAddr") if account else "",
        password=_password(str(getattr(args, "eth_password", ""))),
        max_gas_price=_wei(getattr(args, "max_gas_price", "0"), "-maxGasPrice"),
        ticket_ev=_positive_amount(getattr(args, "ticket_ev", DEFAULT_TICKET_EV), "-ticketEV"),
        max_ticket_ev=_positive_amount(getattr(args, "max_ticket_ev", DEFAULT_MAX_TICKET_EV), "-maxTicketEV"),
        max_total_ev=_positive_amount(getattr(args, "max_total_ev", DEFAULT_MAX_TOTAL_EV), "-maxTotalEV"),
        deposit_multiplier=_multiplier(getattr(args, "deposit_multiplier", "1")),
        max_face_value=_wei(getattr(args, "max_face_value", "0"), "-maxFaceValue"),
        price_feed=price_feed,
        live_payment_interval=interval,
    )


def command_chain_settings(args: argparse.Namespace, what: str) -> ChainSettings:
    """:func:`chain_settings` for a command that only works on a chain (``lpnode chain``, ``lpnode deposit``):
    without ``--network``, the chain of ``--eth-url`` and ``--eth-controller``; ``offchain`` is refused, saying it
    has no ``what``."""
    if not args.network:
        if not args.eth_controller:
            raise ConfigError(
                "give --eth-url and --eth-controller (any chain with Livepeer's contracts), "
                f"or --network {next(n for n in NETWORKS if n != OFFCHAIN)} with --eth-url"
            )
        args.network = "custom"
    if args.network == OFFCHAIN:
        raise ConfigError(f"--network offchain has no {what}; give the chain with --eth-url and --eth-controller")
    return chain_settings(args)


def go_duration(text: str, flag: str) -> float:
    """A Go duration (``5s``, ``500ms``, ``1m30s``) in seconds; a bare number means seconds. Must be positive."""
    try:
        seconds = parse_go_duration(text, bare_seconds=True)
    except ValueError:
        raise ConfigError(f"{flag} must be a duration such as 5s or 500ms, got {text!r}") from None
    if not seconds > 0:
        raise ConfigError(f"{flag} must be positive, got {text!r}")
    return seconds


def _address(text: str, flag: str) -> str:
    from lpnode.payments.signatures import checksum, parse_address

    try:
        return checksum(parse_address(text))
    except ValueError as exc:
        raise ConfigError(f"{flag}: {exc}") from None


def _amount(value: object, flag: str) -> Fraction:
    if isinstance(value, Fraction | int):
        return Fraction(value)
    text = str(value).strip()
    try:
        amount = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"{flag} must be an amount in wei such as 1000000000, got {text!r}") from None
    if amount < 0:
        raise ConfigError(f"{flag} must not be negative, got {text!r}")
    return amount


def _positive_amount(value: object, flag: str) -> Fraction:
    amount = _amount(value, flag)
    if amount <= 0:
        raise ConfigError(f"{flag} must be more than 0 wei, got {value!r}")
    return amount


def _wei(value: object, flag: str) -> int:
    amount = _amount(value, flag)
    if amount.denominator != 1:
        raise ConfigError(f"{flag} must be a whole number of wei, got {value!r}")
    return int(amount)


def _multiplier(value: object) -> int:
    text = str(value).strip()
    try:
        number = int(text)
    except ValueError:
        raise ConfigError(f"-depositMultiplier must be a whole number of 1 or more, got {text!r}") from None
    if number < 1:
        raise ConfigError(f"-depositMultiplier must be 1 or more, got {text!r}")
    return number


def _password(value: str) -> str:
    """go's ``-ethPassword``: the password, or the path of a file holding it (trimmed)."""
    if not value:
        return ""
    from lpnode.payments.keystore import read_password

    return read_password(value)


@dataclass
class ChainNode:
    """What a role holds on chain: its wallet, the client, the watcher (a :class:`ChainView`) and the price
    feed (None when no feed is configured or it could not be read at start)."""

    settings: ChainSettings
    wallet: Wallet
    client: ChainClient
    watcher: ChainWatcher
    price_feed: PriceFeed | None

    async def close(self) -> None:
        """Stop the background loops and release the connection (idempotent)."""
        if self.price_feed is not None:
            await self.price_feed.close()
        await self.watcher.close()
        self.client.close()


async def open_chain(settings: ChainSettings, data_dir: Path, *, poll_seconds: float | None = None) -> ChainNode:
    """Unlock the wallet, connect, check the chain is the one named, and start watching it.

    The keystore defaults to ``DATA_DIR/keystore`` (go-livepeer's place). Raises ``ConfigError`` with one line
    when the keystore, the URL, the chain id or the Controller is unusable.
    """
    from lpnode.payments.chain_client import ChainClient
    from lpnode.payments.chain_errors import ChainError
    from lpnode.payments.chain_watcher import DEFAULT_POLL_SECONDS, ChainWatcher
    from lpnode.payments.keystore import load_wallet
    from lpnode.payments.price_feed import PriceFeed

    if not settings.on_chain:
        raise ConfigError("open_chain needs an on-chain network; off-chain there is no chain to open")
    keystore = settings.keystore_path or data_dir / "keystore"
    # scrypt takes about a second: keep it off the event loop.
    wallet = await asyncio.to_thread(load_wallet, keystore, settings.account, settings.password)
    known = NETWORKS.get(settings.network)
    controller = settings.controller or (known.controller if known is not None else "")
    try:
        client = ChainClient(settings.eth_url, controller, wallet, max_gas_price=settings.max_gas_price)
    except ChainError as exc:
        raise ConfigError(f"-ethController: {exc}") from None
    try:
        chain_id = await client.chain_id()
        if settings.chain_id is not None and chain_id != settings.chain_id:
            raise ConfigError(
                f"-ethUrl serves chain id {chain_id}, but -network {settings.network} is chain id {settings.chain_id}"
            )
        await client.check_controller()
    except ChainError as exc:
        client.close()
        raise ConfigError(f"-network {settings.network}: {exc}") from None
    except BaseException:
        client.close()
        raise
    watcher = ChainWatcher(client, poll_seconds if poll_seconds is not None else DEFAULT_POLL_SECONDS)
    try:
        await watcher.start()
    except ChainError as exc:
        client.close()
        raise ConfigError(f"-network {settings.network}: {exc}") from None
    feed: PriceFeed | None = None
    if settings.price_feed:
        feed = PriceFeed(client, settings.price_feed)
        try:
            await feed.start()
        except ChainError as exc:
            log.warning("price feed %s unreadable, prices in USD are refused: %s", settings.price_feed, exc)
            await feed.close()
            feed = None
    log.info(
        "on chain: network %s, chain id %d, Controller %s, account %s",
        settings.network,
        chain_id,
        controller,
        wallet.checksum_address,
    )
    return ChainNode(settings=settings, wallet=wallet, client=client, watcher=watcher, price_feed=feed)
