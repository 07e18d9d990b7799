"""`lpnode devchain` as a user runs it: a real anvil, the process's own output, the contracts read with web3.

- every development account but the deployer is given 10,000 LPT, and the printed ETH and LPT are what the
  contracts hold;
- each round is initialised in its own first block (so no bond or reward is refused for want of it);
- SIGINT stops it, anvil with it: exit 0 and the port closed.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from web3 import Web3

from lpnode.payments.devchain import artifact
from procs import LPNODE, child_env, free_port

ACCOUNT = re.compile(r"  (0x[0-9a-fA-F]{40})  0x[0-9a-f]{64}  (~?[\d,.]+) ETH  ([\d,.]+) LPT")
CONTRACT = re.compile(r"  (\w+) +(0x[0-9a-fA-F]{40})")
LPT = 10**18


def test_devchain_funds_its_accounts_with_lpt_and_initialises_each_round_in_its_first_block(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "devchain.out"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*LPNODE, "devchain", "--port", str(port)], stdout=log, stderr=subprocess.PIPE, env=child_env()
        )
    try:
        deadline = time.monotonic() + 60
        while len(re.findall(ACCOUNT, log_path.read_text())) < 10:
            assert process.poll() is None, f"lpnode devchain exited: {process.communicate()[1].decode()}"
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        lines = log_path.read_text().splitlines()
        accounts = [(Web3.to_checksum_address(m[1]), m[2], m[3]) for m in map(ACCOUNT.fullmatch, lines) if m]
        contracts = {m[1]: Web3.to_checksum_address(m[2]) for m in map(CONTRACT.fullmatch, lines) if m}

        assert len(accounts) == 10, lines
        deployer, *others = accounts
        assert deployer[2] == "10,000,000"
        assert all((eth, lpt) == ("10,000", "10,000") for _, eth, lpt in others), others
        assert "LPT supply 10,090,000" in log_path.read_text()

        w3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{port}"))
        token = w3.eth.contract(address=contracts["LivepeerToken"], abi=artifact("LivepeerToken")["abi"])
        for address, _, lpt in accounts:
            assert token.functions.balanceOf(address).call() == int(lpt.replace(",", "")) * LPT
        for address, eth, _ in others:
            assert w3.eth.get_balance(address) == int(eth.replace(",", "")) * 10**18

        # Blocks come only with transactions here: take the chain to a round's last block, as a user's transaction
        # would, and the next block (mined by the keeper itself) starts the round initialised.
        rounds = w3.eth.contract(address=contracts["RoundsManager"], abi=artifact("RoundsManager")["abi"])
        length = rounds.functions.roundLength().call()
        for _ in range(2):
            last = rounds.functions.currentRoundStartBlock().call() + length - 1
            w3.provider.make_request("anvil_mine", [hex(last - w3.eth.block_number)])  # type: ignore[arg-type]
            waited = time.monotonic() + 10
            while w3.eth.block_number == last:
                assert time.monotonic() < waited, "no block started the next round"
                time.sleep(0.05)
            start = last + 1
            assert rounds.functions.currentRoundStartBlock().call(block_identifier=start) == start
            assert rounds.functions.currentRoundInitialized().call(block_identifier=start), (
                f"the round starting at block {start} was not initialised in it"
            )
        time.sleep(0.5)
        assert w3.eth.block_number == start, "blocks are mined with nothing to mine"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            status = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
        stderr = process.stderr.read().decode() if process.stderr else ""
        if process.stderr:
            process.stderr.close()
    assert status == 0, stderr
    assert stderr.strip().splitlines()[-1] == "dev chain stopped"
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0, "anvil is still listening"
