"""An orchestrator's operator on a real EVM: `lpnode chain ...` and `lpnode orchestrator`'s duties on chain.

anvil with the project's Livepeer contracts (the dev chain), real `lpnode` processes, and the contracts read with
web3 to check each change. Arbitrum itself cannot be reached from here; the dev chain's contracts have Livepeer's
signatures and revert strings.

- each `lpnode chain` state change is read back from the contracts (bond, transcoder, set-service-uri, reward,
  unbond, rebond, withdraw-stake, initialize-round), and `status` says why an account is not active;
- reverts are explained in words (reward twice in a round, unbond more than bonded) and nothing is sent;
- without --yes and without a terminal nothing is sent (exit 2, the nonce is unchanged);
- an orchestrator whose service URI on chain is not its -serviceAddr refuses to start (exit 2, one line);
- a running orchestrator calls reward once per round (lastRewardRound follows the rounds; one Reward event each),
  `lpnode doctor` reports it registered, reachable at its URI on chain, and rewarded this round;
- no key appears in any output.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from web3 import Web3

from lpnode.payments.devchain import DevAccount, DevChain, start_devchain
from paid_nodes import ETH, chain_flags, wallet_flags
from procs import LPNODE, ChildProcess, child_env, free_port, run_cli

T = TypeVar("T")
LPT = 10**18
PERC = 10_000  # one percent, over Livepeer's PERC_DIVISOR of 1 000 000


class Env:
    """The module's dev chain, on an event loop run in the test thread."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.loop = asyncio.new_event_loop()
        self.chain: DevChain = self.run(start_devchain(accounts=8))
        self.w3 = Web3(Web3.HTTPProvider(self.chain.url))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, 60))

    def fund(self, account: DevAccount, lpt: int) -> list[str]:
        """Give ``account`` LPT from the deployer; its wallet flags (keystore and password files)."""
        self.run(self.chain.transact("LivepeerToken", "transfer", account.checksum_address, lpt))
        return wallet_flags(self.tmp / account.checksum_address, account.key)

    def read(self, name: str, fn: str, *args: Any) -> Any:
        return self.run(self.chain.call(name, fn, *args))

    def nonce(self, account: DevAccount) -> int:
        return int(self.w3.eth.get_transaction_count(Web3.to_checksum_address(account.checksum_address)))

    def close(self) -> None:
        self.run(self.chain.close())
        self.loop.close()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    e = Env(tmp_path_factory.mktemp("chain-operator"))
    try:
        yield e
    finally:
        e.close()


def chain_cli(env: Env, wallet: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    """``lpnode chain ARGS`` against the dev chain, with no terminal on stdin."""
    return run_cli("chain", *args, *chain_flags(env.chain), *wallet)


def no_key(result: subprocess.CompletedProcess[str], account: DevAccount) -> None:
    assert account.key.hex() not in result.stdout + result.stderr


def test_an_operator_registers_activates_and_rewards_with_lpnode_chain(env: Env) -> None:
    op = env.chain.accounts[1]
    wallet = env.fund(op, 1000 * LPT)

    shown = chain_cli(env, wallet, "status")
    assert shown.returncode == 0, shown.stderr
    assert "not registered: bond LPT to this account" in shown.stdout
    assert "1000 LPT" in shown.stdout

    bonded = chain_cli(env, wallet, "bond", "100", "--yes")
    assert bonded.returncode == 0, bonded.stderr
    assert "LivepeerToken.approve(" in bonded.stdout and "BondingManager.bond(" in bonded.stdout
    assert "gas about" in bonded.stdout
    delegator = env.read("BondingManager", "getDelegator", op.checksum_address)
    assert delegator[0] == 100 * LPT and delegator[2] == op.checksum_address
    assert "bonded        100 LPT to itself" in bonded.stdout  # the state read back after the receipt

    cut = chain_cli(env, wallet, "transcoder", "--reward-cut", "10", "--fee-share", "50", "--yes")
    assert cut.returncode == 0, cut.stderr
    transcoder = env.read("BondingManager", "getTranscoder", op.checksum_address)
    assert (transcoder[1], transcoder[2]) == (10 * PERC, 50 * PERC)
    assert "reward cut    10%, fee share 50%" in cut.stdout
    assert "joins the active set at round" in cut.stdout  # in the pool, active from the next round

    uri = chain_cli(env, wallet, "set-service-uri", "127.0.0.1:8935", "--yes")
    assert uri.returncode == 0, uri.stderr
    assert env.read("ServiceRegistry", "getServiceURI", op.checksum_address) == "https://127.0.0.1:8935"

    round_now = env.run(env.chain.advance_round())
    differs = chain_cli(env, wallet, "status", "--service-addr", "127.0.0.1:9999")
    assert f"active in round {round_now}" in differs.stdout
    assert "DIFFERS from --service-addr 127.0.0.1:9999" in differs.stdout

    rewarded = chain_cli(env, wallet, "reward", "--yes")
    assert rewarded.returncode == 0, rewarded.stderr
    assert env.read("BondingManager", "getTranscoder", op.checksum_address)[0] == round_now
    assert f"last reward   round {round_now} (called this round)" in rewarded.stdout

    nonce = env.nonce(op)
    again = chain_cli(env, wallet, "reward", "--yes")
    assert again.returncode == 1
    assert "caller has already called reward for the current round (reward was already called in this round" in (
        again.stderr
    )
    assert "nothing was sent" in again.stderr and "Traceback" not in again.stderr
    assert env.nonce(op) == nonce
    for result in (shown, bonded, cut, uri, differs, rewarded, again):
        no_key(result, op)

    as_json = json.loads(chain_cli(env, [], "status", "--json", "--address", op.checksum_address).stdout)
    assert as_json["active"] is True and as_json["reward_called_this_round"] is True
    assert as_json["bonded_wei"] == str(100 * LPT) and as_json["reward_cut"] == 10 * PERC


def test_unbond_rebond_and_withdraw_stake_read_back(env: Env) -> None:
    op = env.chain.accounts[2]
    wallet = env.fund(op, 50 * LPT)
    assert chain_cli(env, wallet, "bond", "40", "--yes").returncode == 0
    pending = chain_cli(env, wallet, "unbond", "10", "--yes")
    assert pending.returncode == 1 and "a bond takes effect from the round after it was made" in pending.stderr
    env.run(env.chain.advance_round())

    nonce = env.nonce(op)
    too_much = chain_cli(env, wallet, "unbond", "41", "--yes")
    assert too_much.returncode == 1
    assert "amount is greater than bonded amount (that is more than the bonded stake" in too_much.stderr
    assert env.nonce(op) == nonce

    assert chain_cli(env, wallet, "unbond", "15", "--yes").returncode == 0
    assert env.read("BondingManager", "getDelegator", op.checksum_address)[0] == 25 * LPT
    amount, withdraw_round = env.read("BondingManager", "getDelegatorUnbondingLock", op.checksum_address, 0)
    assert amount == 15 * LPT and withdraw_round > env.run(env.chain.current_round())

    rebonded = chain_cli(env, wallet, "rebond", "--yes")
    assert rebonded.returncode == 0, rebonded.stderr
    assert env.read("BondingManager", "getDelegator", op.checksum_address)[0] == 40 * LPT
    assert env.read("BondingManager", "getDelegatorUnbondingLock", op.checksum_address, 0)[1] == 0

    assert chain_cli(env, wallet, "unbond", "all", "--yes").returncode == 0
    early = chain_cli(env, wallet, "withdraw-stake", "--yes")
    assert early.returncode == 2 and "no unbonded LPT can be withdrawn yet: lock 1 from round" in early.stderr
    while env.run(env.chain.current_round()) < withdraw_round:
        env.run(env.chain.advance_round())
    withdrawn = chain_cli(env, wallet, "withdraw-stake", "--yes")
    assert withdrawn.returncode == 0, withdrawn.stderr
    assert env.read("LivepeerToken", "balanceOf", op.checksum_address) == 50 * LPT
    assert "not registered" in withdrawn.stdout


def test_nothing_is_sent_without_confirmation(env: Env) -> None:
    op = env.chain.accounts[3]
    wallet = env.fund(op, 10 * LPT)
    nonce = env.nonce(op)
    refused = subprocess.run(
        [*LPNODE, "chain", "bond", "5", *chain_flags(env.chain), *wallet],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, env=child_env(), timeout=120,
    )  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "lpnode: error: nothing was sent: there is no terminal to confirm on; pass --yes to send without asking"
    ]
    assert "BondingManager.bond(" in refused.stdout  # it was shown
    assert env.nonce(op) == nonce
    assert env.read("BondingManager", "getDelegator", op.checksum_address)[0] == 0


def test_initialize_round_when_nobody_did(env: Env) -> None:
    op = env.chain.accounts[3]
    wallet = wallet_flags(env.tmp / op.checksum_address, op.key)
    start = int(env.read("RoundsManager", "currentRoundStartBlock"))
    env.run(env.chain.mine(start + env.chain.round_length - env.run(env.chain.block_number())))
    assert env.read("RoundsManager", "currentRoundInitialized") is False
    shown = chain_cli(env, wallet, "status")
    assert "NOT initialised: run `lpnode chain initialize-round`" in shown.stdout
    done = chain_cli(env, wallet, "initialize-round", "--yes")
    assert done.returncode == 0, done.stderr
    assert env.read("RoundsManager", "currentRoundInitialized") is True
    again = chain_cli(env, wallet, "initialize-round", "--yes")
    assert again.returncode == 0 and "initialised already; nothing to send" in again.stdout


class Orchestrator(ChildProcess):
    """``lpnode orchestrator`` on the dev chain with no runners (BYOC only), TLS on a free port."""

    def __init__(self, env: Env, wallet: list[str], data_dir: Path, service_addr: str, *extra: str) -> None:
        self.admin_url = f"http://127.0.0.1:{free_port()}"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir / "orchestrator.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*LPNODE, "orchestrator", "--orch-secret", "operator-test-secret", "--service-addr", service_addr,
             "--data-dir", str(data_dir), "--cli-addr", self.admin_url.removeprefix("http://"),
             *chain_flags(env.chain), *wallet, *extra],
            stdout=self._log, stderr=subprocess.STDOUT, env=child_env(),
        )  # fmt: skip


def register(env: Env, account: DevAccount, stake: int, uri: str) -> list[str]:
    """Bond ``stake`` to ``account`` itself, set its cuts and URI, and make it active (the next round)."""
    wallet = env.fund(account, stake)
    chain = env.chain
    env.run(chain.transact("LivepeerToken", "approve", chain.addresses["BondingManager"], stake, key=account))
    env.run(chain.transact("BondingManager", "bond", stake, account.checksum_address, key=account))
    env.run(chain.transact("BondingManager", "transcoder", 5 * PERC, 50 * PERC, key=account))
    env.run(chain.transact("ServiceRegistry", "setServiceURI", uri, key=account))
    env.run(chain.advance_round())
    return wallet


def test_an_orchestrator_whose_uri_on_chain_differs_refuses_to_start(env: Env) -> None:
    op = env.chain.accounts[4]
    wallet = register(env, op, 10 * LPT, "https://127.0.0.1:4433")
    node = Orchestrator(env, wallet, env.tmp / "refuses", f"127.0.0.1:{free_port()}")
    try:
        assert node.proc.wait(timeout=60) == 2
    finally:
        node.stop()
    errors = [line for line in node.log().splitlines() if line.startswith("lpnode: error:")]
    assert len(errors) == 1, node.log()
    assert f"the service URI on chain for {op.checksum_address} is https://127.0.0.1:4433" in errors[0]
    assert "lpnode chain set-service-uri https://127.0.0.1:" in errors[0]
    assert "Traceback" not in node.log()


def test_a_running_orchestrator_calls_reward_once_per_round(env: Env) -> None:
    op = env.chain.accounts[5]
    port = free_port()
    wallet = register(env, op, 20 * LPT, f"https://127.0.0.1:{port}")
    gateway = env.chain.accounts[6]
    env.run(env.chain.fund_sender(gateway, ETH, ETH))
    gateway_wallet = wallet_flags(env.tmp / "doctor-wallet", gateway.key)
    node = Orchestrator(env, wallet, env.tmp / "rewards", f"127.0.0.1:{port}")
    try:
        rounds = []
        for _ in range(2):
            current = env.run(env.chain.current_round())
            deadline = time.monotonic() + 40
            while env.read("BondingManager", "getTranscoder", op.checksum_address)[0] != current:
                assert node.proc.poll() is None, node.log()
                assert time.monotonic() < deadline, node.log()
                time.sleep(0.3)
            rounds.append(current)
            if len(rounds) == 1:
                doctor = run_cli(
                    "doctor", "--orchestrator", node.admin_url, "--gateway", f"http://127.0.0.1:{free_port()}",
                    "--eth-keystore-path", gateway_wallet[1], "--eth-password", gateway_wallet[3],
                )  # fmt: skip
                assert "PASS  orchestrator registered on chain: stake " in doctor.stdout, doctor.stdout
                assert f"PASS  service URI on chain reachable: https://127.0.0.1:{port} answered" in doctor.stdout
                assert f"PASS  reward called this round: round {current}" in doctor.stdout
                env.run(env.chain.advance_round())
        time.sleep(6)  # another poll period: no second call in the same round
    finally:
        node.stop()
    bonding = env.w3.eth.contract(
        address=Web3.to_checksum_address(env.chain.addresses["BondingManager"]), abi=_reward_event()
    )
    events = bonding.events.Reward.get_logs(from_block=0, argument_filters={"transcoder": op.checksum_address})
    rounds_manager = env.chain.contract("RoundsManager").functions.currentRound()
    by_round = [rounds_manager.call(block_identifier=e["blockNumber"]) for e in events]
    assert sorted(by_round) == rounds
    assert "reward called" in node.log() and op.key.hex() not in node.log()


def _reward_event() -> list[dict[str, Any]]:
    return [
        {
            "type": "event",
            "name": "Reward",
            "anonymous": False,
            "inputs": [
                {"name": "transcoder", "type": "address", "indexed": True},
                {"name": "amount", "type": "uint256", "indexed": False},
            ],
        }
    ]
