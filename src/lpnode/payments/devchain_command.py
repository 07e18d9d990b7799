"""``lpnode devchain``: a local chain with Livepeer's contracts, for development.

    lpnode devchain                    anvil on a free port; prints the URL, the Controller and the dev accounts
    lpnode devchain --port 8545 --block-time 1

Every development account but the deployer (which holds the initial supply) is given :data:`ACCOUNT_LPT` LPT, so
any of them can rehearse an operator's path; each is printed with its key, its ETH and its LPT. It keeps
initialising rounds until Ctrl-C or SIGTERM, then stops anvil. Point nodes at it with
``-network devchain -ethUrl URL -ethController ADDRESS``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING

from lpnode.errors import ConfigError
from lpnode.serving import run_until_stopped

if TYPE_CHECKING:
    from lpnode.payments.devchain import DevChain

DEFAULT_ROUND_LENGTH = 20  # lpnode.payments.devchain's; not imported here, it loads web3 (slow for every command)
#: LPT (smallest units) minted to each development account but the deployer at start: enough to bond and rehearse.
ACCOUNT_LPT = 10_000 * 10**18
_UNIT = 10**18


def add_devchain_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "devchain",
        help="a local chain (anvil) with Livepeer's contracts deployed, for development",
        description="Start anvil on 127.0.0.1 with the project's Livepeer contracts deployed, print how to reach "
        "it, and initialise each new round until stopped (Ctrl-C).",
    )
    p.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    p.add_argument(
        "--block-time",
        type=float,
        default=None,
        help="also mine a block every this many seconds (default: only when a transaction arrives)",
    )
    p.add_argument(
        "--round-length",
        type=int,
        default=DEFAULT_ROUND_LENGTH,
        help=f"blocks per round (default {DEFAULT_ROUND_LENGTH})",
    )


def describe(
    chain: DevChain, network: dict[str, int] | None = None, balances: dict[str, tuple[int, int]] | None = None
) -> str:
    """What a user needs to use the chain: its URL, chain id, Controller, contracts, the network's parameters
    (``network``, from :func:`lpnode.payments.devchain_network.network_parameters`) and funded accounts, with
    their ETH and LPT when ``balances`` (checksum address to (wei, LPT's smallest units)) has them."""
    lines = [
        f"dev chain at {chain.url} (chain id {chain.chain_id}, rounds of {chain.round_length} blocks)",
        f"  -network devchain -ethUrl {chain.url} -ethController {chain.controller}",
        "contracts:",
        *(f"  {name:<16} {address}" for name, address in chain.addresses.items()),
    ]
    if network:
        lpt = 10**18
        lines += [
            "network:",
            f"  round {network['round']}; transcoder pool {network['pool_size']} of at most "
            f"{network['pool_max_size']}; unbonding period {network['unbonding_period']} rounds",
            f"  LPT supply {network['lpt_supply'] / lpt:,.0f} (held by the accounts below; the deployer mints more); "
            f"inflation {network['inflation'] / 1e7:g}% a round, "
            f"{network['mintable_this_round'] / lpt:,.2f} LPT mintable this round",
        ]
    balances = balances or {}
    lines.append(
        "accounts (anvil's public development keys: never send real funds to them; the first deployed the contracts "
        "and owns the Controller):"
    )
    for account in chain.accounts:
        line = f"  {account.checksum_address}  {account.key_hex}"
        if account.checksum_address in balances:
            eth, lpt_units = balances[account.checksum_address]
            line += f"  {_amount(eth)} ETH  {_amount(lpt_units)} LPT"
        lines.append(line)
    return "\n".join(lines)


def _amount(units: int) -> str:
    """18-decimal ``units`` in whole tokens, grouped, cut to 4 decimals and marked ``~`` when cut: ``~9,999.9826``."""
    value = (Decimal(units) / _UNIT).quantize(Decimal("0.0001"), rounding=ROUND_DOWN)
    text = f"{value:,.4f}".rstrip("0").rstrip(".")
    return text if value == Decimal(units) / _UNIT else "~" + text


async def fund_accounts(chain: DevChain, amount: int = ACCOUNT_LPT) -> dict[str, tuple[int, int]]:
    """Mint ``amount`` LPT to every development account but the deployer, make sure the round the minting ended
    in is initialised, and return each account's (ETH in wei, LPT in smallest units)."""
    from lpnode.payments.devchain_network import fund_lpt, lpt_balance

    # Sent together: with --block-time the chain mines only on its interval, and they share a block or two.
    await asyncio.gather(*(fund_lpt(chain, account, amount) for account in chain.accounts[1:]))
    # Each mint is a block; with short rounds they may have crossed into a round nobody has initialised yet.
    await chain.initialize_round()
    balances = {}
    for account in chain.accounts:
        eth = await asyncio.to_thread(chain.w3.eth.get_balance, chain.w3.to_checksum_address(account.address))
        balances[account.checksum_address] = (int(eth), await lpt_balance(chain, account))
    return balances


def run_devchain(args: argparse.Namespace) -> int:
    if args.port < 0 or args.port > 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {args.port}")
    if args.round_length < 1:
        raise ConfigError(f"--round-length must be at least 1, got {args.round_length}")
    if args.block_time is not None and args.block_time <= 0:
        raise ConfigError(f"--block-time must be positive, got {args.block_time:g}")

    async def main(stop: asyncio.Event) -> None:
        from lpnode.payments.devchain import start_devchain
        from lpnode.payments.devchain_network import network_parameters

        chain = await start_devchain(args.port, block_time=args.block_time, round_length=args.round_length)
        try:
            balances = await fund_accounts(chain)
            print(describe(chain, await network_parameters(chain), balances), flush=True)
            keeper = asyncio.create_task(chain.keep_rounds(interval=0.1))
            await stop.wait()
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        finally:
            await chain.close()
        print("dev chain stopped", file=sys.stderr)

    # The default asyncio loop: anvil is started with a pre-exec hook (it dies with this process).
    run_until_stopped(main, loop_factory=asyncio.new_event_loop)
    return 0
