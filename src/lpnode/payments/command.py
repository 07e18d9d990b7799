"""``lpnode wallet``, ``lpnode deposit`` and ``lpnode tickets``: an operator's view of keys, funds and tickets.

    lpnode wallet new --keystore DIR [--password P]     make an account (go-ethereum keystore file)
    lpnode wallet import --keystore DIR [--private-key-file F] [--password P]
                                                         write a raw private key (from F or stdin) into one
    lpnode wallet show --keystore DIR|FILE [--eth-url U] the accounts there (and their ETH balance)
    lpnode deposit [show]                                a gateway's deposit, reserve and unlock state
    lpnode deposit --deposit 0.5 --reserve 0.5           fund them (ETH, or amounts like 5000000wei, 2gwei)
    lpnode deposit unlock | cancel-unlock | withdraw     start, cancel or finish taking the funds back
    lpnode tickets --data-dir D                          an orchestrator's tickets: received, won, redeemed, ...

Passwords and keys are never printed. A transaction that reverts is one ``lpnode: error:`` line saying why.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lpnode.errors import ConfigError
from lpnode.payments.settings import add_connection_flags, command_chain_settings

if TYPE_CHECKING:
    from lpnode.payments.chain_client import ChainClient
    from lpnode.payments.chain_view import SenderInfo

WEI_PER_ETH = 10**18
_UNITS = {"wei": 1, "gwei": 10**9, "eth": WEI_PER_ETH}
DEPOSIT_ACTIONS = ("show", "unlock", "cancel-unlock", "withdraw")
# What to do about each revert a deposit command can meet (the reason is the contract's own string).
_REVERT_HINTS = {
    "msg.value does not equal sum of deposit amount and reserve amount": "the amounts did not add up",
    "no unlock request in progress": "no unlock is in progress: run `lpnode deposit unlock` first",
    "account is locked": "the funds are locked: run `lpnode deposit unlock`, wait for the unlock period, then withdraw",
    "sender deposit and reserve are zero": "the deposit and reserve are empty",
    "unlock already initiated": "an unlock is already in progress; `lpnode deposit show` says when it ends",
    "system is paused": "the Livepeer contracts are paused; try again later",
}


def add_payment_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``wallet``, ``deposit`` and ``tickets`` on the ``lpnode`` parser."""
    wallet = sub.add_parser("wallet", help="make or show Ethereum accounts (go-ethereum keystore files)")
    wsub = wallet.add_subparsers(dest="wallet_command", required=True, metavar="{new,import,show}")
    new = wsub.add_parser("new", help="make an account and write its keystore file")
    new.add_argument("--keystore", type=Path, required=True, help="directory to write the keystore file in")
    new.add_argument("--password", default=None, help="the password, or a file holding it (asked for if omitted)")
    imported = wsub.add_parser(
        "import",
        help="write a raw private key into a keystore file",
        description="Encrypt a raw private key (64 hex digits, 0x optional) into a go-ethereum keystore file. The "
        "key is read from --private-key-file, or else from standard input (asked for, unechoed, on a terminal); "
        "it is never a command-line argument, and never printed.",
    )
    imported.add_argument("--keystore", type=Path, required=True, help="directory to write the keystore file in")
    imported.add_argument(
        "--private-key-file", type=Path, default=None, help="a file holding the key (default: standard input)"
    )
    imported.add_argument(
        "--password", default=None, help="the password, or a file holding it (asked for on a terminal if omitted)"
    )
    show = wsub.add_parser("show", help="the accounts in a keystore dir or file")
    show.add_argument("--keystore", type=Path, required=True, help="a keystore directory or file")
    show.add_argument("--eth-url", "-ethUrl", dest="eth_url", default="", help="also show each account's balance")

    deposit = sub.add_parser(
        "deposit",
        help="a gateway's deposit and reserve: show, fund, unlock, cancel-unlock, withdraw",
        description="Show or change the deposit and reserve a gateway pays tickets from (TicketBroker). "
        "Amounts are ETH (0.5), or carry a unit: 500000000000000000wei, 2gwei, 0.5eth.",
        allow_abbrev=False,
    )
    deposit.add_argument("action", nargs="?", default="show", choices=DEPOSIT_ACTIONS, help="default show")
    deposit.add_argument("--deposit", dest="deposit_amount", default="", help="add this to the deposit")
    deposit.add_argument("--reserve", dest="reserve_amount", default="", help="add this to the reserve")
    deposit.add_argument("--data-dir", "-dataDir", dest="data_dir", type=Path, default=Path("~/.lpnode"))
    deposit.add_argument("--json", action="store_true", help="print the state as JSON")
    add_connection_flags(deposit)
    deposit.set_defaults(network="")

    tickets = sub.add_parser("tickets", help="an orchestrator's winning tickets and what they earned")
    tickets.add_argument("--data-dir", "-dataDir", dest="data_dir", type=Path, default=Path("~/.lpnode"))
    tickets.add_argument("--json", action="store_true", help="print JSON")


# -- amounts ------------------------------------------------------------------------------------------------------


def parse_eth_amount(text: str, what: str) -> int:
    """``0.5`` (ETH), ``0.5eth``, ``2gwei`` or ``500000000000000000wei`` in wei. ConfigError when unusable."""
    value = text.strip().lower().replace("_", "")
    unit = next((u for u in ("gwei", "wei", "eth") if value.endswith(u)), "eth")
    number = value.removesuffix(unit).strip()
    try:
        amount = Decimal(number) * _UNITS[unit]
    except InvalidOperation:
        raise ConfigError(
            f"{what} must be an amount such as 0.5 (ETH) or 500000000000000000wei, got {text!r}"
        ) from None
    if amount < 0 or amount != amount.to_integral_value():
        raise ConfigError(f"{what} must be a positive whole number of wei, got {text!r}")
    return int(amount)


def format_eth(wei: int) -> str:
    """``wei`` as ETH, exact, without trailing zeros (``0.5 ETH``)."""
    text = format(Decimal(wei) / WEI_PER_ETH, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text} ETH"


def _password_arg(value: str | None, *, confirm: bool) -> str:
    from lpnode.payments.keystore import read_password

    if value is not None:
        return read_password(value)
    if not sys.stdin.isatty():
        raise ConfigError("give --password (the password, or a file holding it): there is no terminal to ask on")
    first = getpass.getpass("Password for the new keystore file: ")
    if confirm and getpass.getpass("Repeat it: ") != first:
        raise ConfigError("the two passwords differ; nothing was written")
    return first


# -- wallet -------------------------------------------------------------------------------------------------------


def run_wallet(args: argparse.Namespace) -> int:
    if args.wallet_command == "import":
        return _import_wallet(args)
    if args.wallet_command == "new":
        from lpnode.payments.keystore import create_wallet

        password = _password_arg(args.password, confirm=True)
        if not password:
            print("lpnode: warning: the keystore file is encrypted with an empty password", file=sys.stderr)
        wallet, path = create_wallet(args.keystore.expanduser(), password)
        print(f"address {wallet.checksum_address}")
        print(f"file    {path}")
        return 0
    accounts = _keystore_accounts(args.keystore.expanduser())
    if not accounts:
        print(f"no keystore files in {args.keystore}; make one with: lpnode wallet new --keystore {args.keystore}")
        return 1
    balances: dict[str, int] = {}
    if args.eth_url:
        balances = asyncio.run(_balances(args.eth_url, [a for a, _ in accounts]))
    for address, path in accounts:
        extra = f"  {format_eth(balances[address])}" if address in balances else ""
        print(f"{address}  {path}{extra}")
    return 0


def _import_wallet(args: argparse.Namespace) -> int:
    from lpnode.payments.keystore import Wallet, import_wallet, parse_private_key, refuse_existing

    text = _private_key_text(args.private_key_file)
    if not text.strip():
        where = f"--private-key-file {args.private_key_file} is empty" if args.private_key_file else "no private key"
        raise ConfigError(f"{where}: give the key (64 hex digits) in a file or on standard input; nothing was written")
    key = parse_private_key(text)
    # An account that is there already is refused before the password is asked for.
    refuse_existing(args.keystore, Wallet.from_key(key).address)
    password = _password_arg(args.password, confirm=True)
    if not password:
        print("lpnode: warning: the keystore file is encrypted with an empty password", file=sys.stderr)
    wallet, path = import_wallet(args.keystore, key, password)
    print(f"address {wallet.checksum_address}")
    print(f"file    {path}")
    return 0


def _private_key_text(path: Path | None) -> str:
    """The key's text from ``path``, or standard input: unechoed on a terminal, else everything piped in."""
    if path is not None:
        try:
            return path.expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not a text file"
            raise ConfigError(f"--private-key-file {path}: cannot read it: {reason}") from None
    if sys.stdin is None:
        raise ConfigError("no standard input to read the private key from; give --private-key-file FILE")
    if sys.stdin.isatty():
        return getpass.getpass("Private key (64 hex digits, not shown): ")
    try:
        return sys.stdin.read(4096)  # a key is 66 characters; anything longer is refused as not a key
    except UnicodeDecodeError:
        raise ConfigError("standard input is not text: pipe in the private key as 64 hex digits") from None


def _keystore_accounts(path: Path) -> list[tuple[str, Path]]:
    """(checksum address, file) of each keystore file at ``path`` (a file or a directory); nothing is decrypted."""
    from lpnode.payments.signatures import checksum, parse_address

    if not path.exists():
        raise ConfigError(f"--keystore {path} does not exist")
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    found = []
    for file in files:
        try:
            document = json.loads(file.read_text(encoding="utf-8"))
            found.append((checksum(parse_address(str(document["address"]))), file))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a keystore file
    return found


async def _balances(url: str, addresses: list[str]) -> dict[str, int]:
    from lpnode.payments.chain_client import ChainClient
    from lpnode.payments.signatures import parse_address

    # The Controller is not used for balances; any address will do.
    client = ChainClient(url, "0x" + "00" * 20, None)
    try:
        return {a: await client.eth_balance(parse_address(a)) for a in addresses}
    finally:
        client.close()


# -- deposit ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DepositState:
    account: str
    balance: int
    info: SenderInfo
    current_round: int
    unlock_period: int

    def status(self) -> str:
        if not self.info.withdraw_round:
            return "locked (tickets can be paid)"
        if self.info.withdraw_round > self.current_round:
            return f"unlocking: withdrawable from round {self.info.withdraw_round} (now {self.current_round})"
        return "unlocked: `lpnode deposit withdraw` takes the funds back"

    def as_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "balance_wei": str(self.balance),
            "deposit_wei": str(self.info.deposit),
            "reserve_wei": str(self.info.reserve),
            "withdraw_round": self.info.withdraw_round,
            "current_round": self.current_round,
            "unlock_period": self.unlock_period,
            "status": self.status(),
        }


def run_deposit(args: argparse.Namespace) -> int:
    deposit = parse_eth_amount(args.deposit_amount, "--deposit") if args.deposit_amount else 0
    reserve = parse_eth_amount(args.reserve_amount, "--reserve") if args.reserve_amount else 0
    funding = bool(args.deposit_amount or args.reserve_amount)
    if funding and args.action != "show":
        raise ConfigError(f"--deposit/--reserve fund the account; run `lpnode deposit {args.action}` on its own")
    settings = command_chain_settings(args, "deposit")
    return asyncio.run(_deposit(args, settings, deposit, reserve, funding))


async def _deposit(args: argparse.Namespace, settings: Any, deposit: int, reserve: int, funding: bool) -> int:
    from lpnode.payments.chain_client import ChainClient
    from lpnode.payments.chain_errors import ChainError, ChainRevert
    from lpnode.payments.keystore import load_wallet

    keystore = settings.keystore_path or args.data_dir.expanduser() / "keystore"
    wallet = await asyncio.to_thread(load_wallet, keystore, settings.account, settings.password)
    client = ChainClient(settings.eth_url, settings.controller, wallet, max_gas_price=settings.max_gas_price)
    action = "fund" if funding else args.action
    try:
        await client.check_controller()
        tx_hash = ""
        if funding:
            if deposit and reserve:
                tx_hash = await client.fund_deposit_and_reserve(deposit, reserve)
            elif deposit:
                tx_hash = await client.fund_deposit(deposit)
            else:
                tx_hash = await client.fund_reserve(reserve)
        elif action == "unlock":
            tx_hash = await client.unlock()
        elif action == "cancel-unlock":
            tx_hash = await client.cancel_unlock()
        elif action == "withdraw":
            tx_hash = await client.withdraw()
        state = await _state(client, wallet.address)
    except ChainRevert as exc:
        hint = _REVERT_HINTS.get(exc.reason, "")
        print(f"lpnode: error: {action} reverted: {exc.reason}{' (' + hint + ')' if hint else ''}", file=sys.stderr)
        return 1
    except ChainError as exc:
        raise ConfigError(f"{action}: {exc}") from None
    finally:
        client.close()
    if args.json:
        print(json.dumps({"transaction": tx_hash, **state.as_dict()}, indent=2))
        return 0
    if tx_hash:
        print(f"transaction {tx_hash}")
    print(f"account   {state.account}  (balance {format_eth(state.balance)})")
    print(f"deposit   {format_eth(state.info.deposit)}")
    print(f"reserve   {format_eth(state.info.reserve)}")
    print(f"state     {state.status()}")
    return 0


async def _state(client: ChainClient, address: bytes) -> DepositState:
    from lpnode.payments.signatures import checksum

    info, balance, current_round, unlock_period = await asyncio.gather(
        client.sender_info(address),
        client.eth_balance(address),
        client.current_round(),
        client.unlock_period(),
    )
    return DepositState(checksum(address), balance, info, current_round, unlock_period)


# -- tickets ------------------------------------------------------------------------------------------------------


def run_tickets(args: argparse.Namespace) -> int:
    from lpnode.payments.redemption import QUEUE_FILE, RedemptionQueue

    path = args.data_dir.expanduser() / QUEUE_FILE
    if not path.is_file():
        print(f"no tickets in {args.data_dir}: an orchestrator on chain keeps them in {path}")
        return 0
    queue = RedemptionQueue(path)
    try:
        stats = queue.stats()
    finally:
        queue.close()
    if args.json:
        print(json.dumps({**stats, "earned_wei": str(stats["earned_wei"]), "queued_wei": str(stats["queued_wei"])}))
        return 0
    for key in ("received", "won", "queued", "redeemed", "failed", "expired"):
        print(f"{key:<9} {stats[key]}")
    print(f"{'earned':<9} {format_eth(stats['earned_wei'])}")
    if stats["queued"]:
        print(f"{'pending':<9} {format_eth(stats['queued_wei'])} in queued tickets")
    for outcome in stats["recent"]:
        detail = outcome["tx_hash"] or outcome["reason"]
        print(f"  {outcome['status']:<8} {format_eth(outcome['face_value_wei']):>24}  {outcome['sender']}  {detail}")
    return 0
