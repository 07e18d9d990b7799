"""``lpnode chain``: an orchestrator operator's account on chain, the equivalent of go-livepeer's ``livepeer_cli``.

    lpnode chain status [--service-addr HOST:PORT] [--address ADDR] [--json]
    lpnode chain bond AMOUNT [--to ADDR]          bond LPT (to this account: it becomes an orchestrator)
    lpnode chain unbond AMOUNT|all                start taking bonded LPT back (an unbonding lock)
    lpnode chain rebond [LOCK]                    bond an unbonding lock's LPT again
    lpnode chain withdraw-stake [LOCK]            take unbonded LPT back once the unbonding period is over
    lpnode chain transcoder --reward-cut P --fee-share P   set the cuts (percent) and join the pool
    lpnode chain set-service-uri URI              where gateways reach this orchestrator
    lpnode chain reward | claim | initialize-round
    lpnode chain withdraw-fees [AMOUNT|all]       send earned fees (ETH) to this account

Each command takes the keystore and chain flags of ``lpnode deposit``. A state change shows every transaction
(contract, function, arguments, what it does, a gas estimate), asks before sending (``--yes`` sends without
asking; with no terminal to ask on and no ``--yes`` nothing is sent and the exit status is 2), waits for the
receipts, then prints the state read back from the contracts. A transaction that would revert is explained in
words and nothing is sent (exit status 1). Keys and passwords are never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from lpnode.errors import ConfigError
from lpnode.payments.settings import add_connection_flags, command_chain_settings

if TYPE_CHECKING:
    from lpnode.payments.chain_client import ChainClient
    from lpnode.payments.staking import OperatorState, Staking, Step

CHANGES = (
    "bond", "unbond", "rebond", "withdraw-stake", "transcoder", "set-service-uri", "reward", "claim",
    "withdraw-fees", "initialize-round",
)  # fmt: skip
NOT_CONFIRMED = "nothing was sent: there is no terminal to confirm on; pass --yes to send without asking"


def add_chain_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``chain`` and its actions on the ``lpnode`` parser."""
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    common.add_argument("--data-dir", "-dataDir", dest="data_dir", type=Path, default=Path("~/.lpnode"))
    common.add_argument("--yes", "-y", action="store_true", help="send without asking (for scripts)")
    add_connection_flags(common)
    common.set_defaults(network="")
    chain = sub.add_parser(
        "chain",
        help="an orchestrator on chain: status, bond, unbond, rebond, transcoder, set-service-uri, reward, ...",
        description="Read and change an orchestrator's place on chain (Livepeer's BondingManager, ServiceRegistry, "
        "RoundsManager), as go-livepeer's livepeer_cli does. Every change is shown and confirmed before it is sent.",
    )
    actions = chain.add_subparsers(dest="chain_command", required=True, metavar="ACTION")

    def action(name: str, text: str) -> argparse.ArgumentParser:
        return actions.add_parser(name, help=text, description=text, parents=[common], allow_abbrev=False)

    status = action("status", "round, balances, stake, active or not and why, service URI, cuts, rewards, fees")
    status.add_argument("--service-addr", "-serviceAddr", dest="service_addr", default="", help="compare with this")
    status.add_argument("--address", default="", help="read this account instead of the keystore's (no wallet)")
    status.add_argument("--json", action="store_true", help="print the state as JSON")
    bond = action("bond", "bond LPT; to this account by default, which registers it as an orchestrator")
    bond.add_argument("amount", help="LPT, e.g. 100 or 0.5 (or 5000wei)")
    bond.add_argument("--to", default="", help="bond to this orchestrator instead (delegating)")
    action("unbond", "unbond LPT: it can be withdrawn after the unbonding period").add_argument(
        "amount", help="LPT, or all"
    )
    action("rebond", "bond the LPT of an unbonding lock again").add_argument(
        "lock", nargs="?", type=int, default=None, help="the lock's id (default: the only one)"
    )
    action("withdraw-stake", "take back unbonded LPT whose unbonding period is over").add_argument(
        "lock", nargs="?", type=int, default=None, help="the lock's id (default: every withdrawable one)"
    )
    transcoder = action("transcoder", "set the reward cut and fee share, and join the pool of orchestrators")
    transcoder.add_argument("--reward-cut", required=True, help="percent of each round's LPT reward kept, e.g. 10")
    transcoder.add_argument("--fee-share", required=True, help="percent of fees shared with delegators, e.g. 50")
    action("set-service-uri", "register where gateways reach this orchestrator").add_argument(
        "uri", help="https://HOST:PORT (HOST:PORT is taken as https), the orchestrator's -serviceAddr"
    )
    action("reward", "mint this round's LPT reward (active orchestrators, once per round)")
    action("claim", "add earned rewards and fees to the bonded stake and fees")
    action("withdraw-fees", "send earned fees (ETH) to this account").add_argument(
        "amount", nargs="?", default="all", help="ETH, e.g. 0.01, or all (default)"
    )
    action("initialize-round", "initialise the current round (anyone may; needed before rewards and bonding)")


def run_chain(args: argparse.Namespace) -> int:
    settings = command_chain_settings(args, "stake")
    return asyncio.run(_main(args, settings))


async def _main(args: argparse.Namespace, settings: Any) -> int:
    from lpnode.payments.chain_client import ChainClient
    from lpnode.payments.chain_errors import ChainError
    from lpnode.payments.keystore import load_wallet
    from lpnode.payments.staking import Staking

    reader = args.chain_command == "status" and args.address
    wallet = None
    if not reader:
        keystore = settings.keystore_path or args.data_dir.expanduser() / "keystore"
        wallet = await asyncio.to_thread(load_wallet, keystore, settings.account, settings.password)
    client = ChainClient(settings.eth_url, settings.controller, wallet, max_gas_price=settings.max_gas_price)
    try:
        await client.check_controller()
        staking = Staking(client)
        if args.chain_command == "status":
            return await _status(args, staking)
        return await _change(args, client, staking)
    except ChainError as exc:
        raise ConfigError(f"chain {args.chain_command}: {exc}") from None
    finally:
        client.close()


# -- status --------------------------------------------------------------------------------------------------------


async def _status(args: argparse.Namespace, staking: Staking) -> int:
    from lpnode.payments.signatures import parse_address

    address = None
    if args.address:
        try:
            address = parse_address(args.address)
        except ValueError as exc:
            raise ConfigError(f"--address: {exc}") from None
    state = await staking.state(address)
    if args.json:
        print(json.dumps(state_document(state, args.service_addr), indent=2))
    else:
        print("\n".join(describe(state, args.service_addr)))
    return 0


def state_document(state: OperatorState, service_addr: str = "") -> dict[str, Any]:
    """The state as JSON (amounts as strings of wei, percentages as PERC_DIVISOR numerators and as text)."""
    from lpnode.payments.signatures import checksum
    from lpnode.payments.staking import format_percent, same_service

    t, d = state.transcoder, state.delegator
    return {
        "address": checksum(state.address),
        "round": state.current_round,
        "round_initialized": state.round_initialized,
        "blocks_to_next_round": state.blocks_to_next_round,
        "eth_wei": str(state.eth),
        "lpt_wei": str(state.lpt),
        "bonded_wei": str(d.bonded),
        "pending_stake_wei": str(state.pending_stake),
        "delegate": checksum(d.delegate) if any(d.delegate) else "",
        "delegated_wei": str(d.delegated),
        "registered": state.registered,
        "active": state.active,
        "in_pool": state.in_pool,
        "why_not_active": state.why_not_active(),
        "stake_to_enter_wei": str(state.stake_to_enter()),
        "pool_size": len(state.pool.members),
        "pool_max_size": state.pool.max_size,
        "service_uri": state.service_uri,
        "service_addr_matches": same_service(state.service_uri, service_addr) if service_addr else None,
        "reward_cut": t.reward_cut,
        "reward_cut_percent": format_percent(t.reward_cut),
        "fee_share": t.fee_share,
        "fee_share_percent": format_percent(t.fee_share),
        "last_reward_round": t.last_reward_round,
        "reward_called_this_round": state.reward_called,
        "pending_fees_wei": str(state.pending_fees),
        "unbonding_locks": [
            {"id": lock.id, "amount_wei": str(lock.amount), "withdraw_round": lock.withdraw_round}
            for lock in state.locks
        ],
    }


def describe(state: OperatorState, service_addr: str = "") -> list[str]:
    """``lpnode chain status``'s lines: one fact per line, a reason and a fix where something is missing."""
    from lpnode.payments.signatures import checksum
    from lpnode.payments.staking import format_percent, format_token, same_service

    t, d = state.transcoder, state.delegator
    init = "initialised" if state.round_initialized else "NOT initialised: run `lpnode chain initialize-round`"
    lines = [
        f"account       {checksum(state.address)}  ({format_token(state.eth, 'ETH')}, "
        f"{format_token(state.lpt, 'LPT')})",
        f"round         {state.current_round}, {init}; the next starts in {state.blocks_to_next_round} blocks",
    ]
    if d.bonded:
        to = "itself" if d.delegate == state.address else checksum(d.delegate)
        pending = state.pending_stake - d.bonded
        extra = f" (+{format_token(pending, 'LPT')} of rewards to claim)" if pending > 0 else ""
        lines.append(f"bonded        {format_token(d.bonded, 'LPT')} to {to}{extra}")
    else:
        lines.append("bonded        nothing")
    lines.append(f"delegated     {format_token(d.delegated, 'LPT')} (this orchestrator's total stake)")
    why = state.why_not_active()
    if why is None:
        lines.append(f"orchestrator  active in round {state.current_round}")
    else:
        lines.append(f"orchestrator  {'active this round; ' if state.active else 'NOT active: '}{why}")
    lines.append(f"pool          {len(state.pool.members)} of {state.pool.max_size} places taken")
    uri = state.service_uri or "none registered: run `lpnode chain set-service-uri https://HOST:PORT`"
    if state.service_uri and service_addr:
        if same_service(state.service_uri, service_addr):
            uri += f" (the same as --service-addr {service_addr})"
        else:
            uri += (
                f" DIFFERS from --service-addr {service_addr}: gateways dial the URI on chain; run "
                f"`lpnode chain set-service-uri {service_addr}`, or start the orchestrator with that -serviceAddr"
            )
    lines.append(f"service URI   {uri}")
    if state.registered:
        lines.append(f"reward cut    {format_percent(t.reward_cut)}, fee share {format_percent(t.fee_share)}")
        called = "called this round" if state.reward_called else "not called this round yet"
        last = f"round {t.last_reward_round}" if t.last_reward_round else "never"
        lines.append(f"last reward   {last} ({called})")
    fees = format_token(state.pending_fees, "ETH")
    lines.append(
        f"fees          {fees}{' (`lpnode chain withdraw-fees` sends them here)' if state.pending_fees else ''}"
    )
    for lock in state.locks:
        when = (
            "withdrawable now (`lpnode chain withdraw-stake`)"
            if lock.withdraw_round <= state.current_round
            else f"withdrawable from round {lock.withdraw_round}"
        )
        lines.append(f"unbonding     lock {lock.id}: {format_token(lock.amount, 'LPT')}, {when}")
    return lines


# -- changes -------------------------------------------------------------------------------------------------------


async def _change(args: argparse.Namespace, client: ChainClient, staking: Staking) -> int:
    from lpnode.payments.chain_errors import ChainRevert
    from lpnode.payments.signatures import checksum
    from lpnode.payments.staking import format_token
    from lpnode.payments.staking_reverts import explain_revert

    before = await staking.state()
    steps = await _plan(args, staking, before)
    if not steps:
        return 0
    gas_price = await client.gas_price()
    network = f"{args.network} (chain id {await client.chain_id()})"
    print(f"{len(steps)} transaction(s) from {checksum(staking.address)} on {network}:")
    for number, step in enumerate(steps, 1):
        print(f"  {number}. {step.words}")
        print(f"     {step.call}")
        if number == 1:
            try:
                gas = await staking.estimate(step)
            except ChainRevert as exc:
                print(f"lpnode: error: {step.call} would revert: {explain_revert(exc.reason)}", file=sys.stderr)
                print("nothing was sent", file=sys.stderr)
                return 1
            print(f"     gas about {gas:,} at {gas_price:,} wei: {format_token(gas * gas_price, 'ETH')}")
        else:
            print("     gas estimated once the step before is mined")
    if not _confirmed(args.yes):
        print("nothing was sent")
        return 1
    for step in steps:
        try:
            tx_hash = await staking.send(step)
        except ChainRevert as exc:
            sent = f" in transaction {exc.tx_hash}" if exc.tx_hash else "; it was not sent"
            print(f"lpnode: error: {step.call} reverted{sent}: {explain_revert(exc.reason)}", file=sys.stderr)
            return 1
        print(f"mined {step.contract}.{step.function}: transaction {tx_hash}")
    print("now:")
    print("\n".join("  " + line for line in describe(await staking.state())))
    return 0


def _confirmed(yes: bool) -> bool:
    """``--yes``, or the operator's answer; no terminal and no ``--yes`` is a ConfigError (exit 2)."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise ConfigError(NOT_CONFIRMED)
    answer = input("Send? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


async def _plan(args: argparse.Namespace, staking: Staking, state: OperatorState) -> list[Step]:
    """The transactions an action sends, checked against ``state`` where the contracts would only say "revert"."""
    from lpnode.payments.command import parse_eth_amount
    from lpnode.payments.signatures import parse_address
    from lpnode.payments.staking import parse_lpt, parse_percent

    action = args.chain_command
    plans: dict[str, Callable[[], Awaitable[list[Step]]]] = {}

    async def bond() -> list[Step]:
        amount = parse_lpt(args.amount, "the amount")
        try:
            to = parse_address(args.to) if args.to else None
        except ValueError as exc:
            raise ConfigError(f"--to: {exc}") from None
        return await staking.bond_steps(amount, to)

    async def unbond() -> list[Step]:
        if args.amount.strip().lower() == "all":
            if not state.delegator.bonded:
                raise ConfigError("nothing is bonded, so nothing can be unbonded")
            return [staking.unbond_step(state.delegator.bonded)]
        return [staking.unbond_step(parse_lpt(args.amount, "the amount"))]

    async def rebond() -> list[Step]:
        lock = _pick_lock(state, args.lock, "rebond")
        return [staking.rebond_step(lock, unbonded=state.delegator.bonded == 0)]

    async def withdraw_stake() -> list[Step]:
        if args.lock is not None:
            return [staking.withdraw_stake_step(_pick_lock(state, args.lock, "withdraw-stake"))]
        ready = [lock for lock in state.locks if lock.withdraw_round <= state.current_round]
        if not ready:
            waiting = ", ".join(f"lock {lock.id} from round {lock.withdraw_round}" for lock in state.locks)
            raise ConfigError(f"no unbonded LPT can be withdrawn yet{': ' + waiting if waiting else ''}")
        return [staking.withdraw_stake_step(lock) for lock in ready]

    async def transcoder() -> list[Step]:
        cut = parse_percent(args.reward_cut, "--reward-cut")
        return [staking.transcoder_step(cut, parse_percent(args.fee_share, "--fee-share"))]

    async def set_service_uri() -> list[Step]:
        return [staking.service_uri_step(service_uri(args.uri))]

    async def reward() -> list[Step]:
        return [staking.reward_step(state.current_round)]

    async def claim() -> list[Step]:
        return [staking.claim_step(state.current_round)]

    async def withdraw_fees() -> list[Step]:
        if args.amount.strip().lower() == "all":
            if not state.pending_fees:
                raise ConfigError("there are no earned fees to withdraw")
            return [staking.withdraw_fees_step(state.pending_fees)]
        return [staking.withdraw_fees_step(parse_eth_amount(args.amount, "the amount"))]

    async def initialize_round() -> list[Step]:
        if state.round_initialized:
            print(f"round {state.current_round} is initialised already; nothing to send")
            return []
        return [staking.initialize_round_step(state.current_round)]

    plans.update(
        {
            "bond": bond, "unbond": unbond, "rebond": rebond, "withdraw-stake": withdraw_stake,
            "transcoder": transcoder, "set-service-uri": set_service_uri, "reward": reward, "claim": claim,
            "withdraw-fees": withdraw_fees, "initialize-round": initialize_round,
        }
    )  # fmt: skip
    return await plans[action]()


def _pick_lock(state: OperatorState, lock_id: int | None, action: str) -> Any:
    held = {lock.id: lock for lock in state.locks}
    if lock_id is not None:
        if lock_id not in held:
            known = ", ".join(str(i) for i in held) or "none"
            raise ConfigError(f"no unbonding lock {lock_id} (this account holds: {known})")
        return held[lock_id]
    if len(held) == 1:
        return next(iter(held.values()))
    if not held:
        raise ConfigError("this account has no unbonding lock (`lpnode chain unbond AMOUNT` makes one)")
    raise ConfigError(
        f"several unbonding locks ({', '.join(str(i) for i in held)}): name one: lpnode chain {action} ID"
    )


def service_uri(text: str) -> str:
    """A service URI as registered on chain: ``https://HOST:PORT`` (``HOST:PORT`` is taken as https, as
    livepeer_cli stores it). ConfigError when it has no host."""
    value = text.strip()
    value = value if "://" in value else "https://" + value
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        raise ConfigError(f"the service URI must be https://HOST:PORT, got {text!r}")
    return f"{parts.scheme}://{parts.netloc}"
