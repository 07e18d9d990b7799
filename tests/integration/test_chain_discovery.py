"""A gateway that finds its orchestrators on chain alone: anvil with the project's Livepeer contracts, two real
`lpnode orchestrator` processes registered as an operator registers (bond, transcoder, service URI) with different
stakes and prices, and a real `lpnode gateway` given the chain and its wallet but no `-orchAddr`.

What a user sees:
- both orchestrators are discovered (the admin `/getNetworkCapabilities`, `/status`), jobs are paid and served by
  both (the gateway's `/metrics` per orchestrator, tickets sent to each);
- one changes its service URI (it moved to a new port): the gateway follows to the new URI and jobs go there;
- one unbonds: it stays in this round's active set, drops out when the next round starts, and gets no jobs.

Nothing here is mocked: Arbitrum itself is the only thing not run (the same calls go to its contracts).
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from lpnode.payments.devchain import DevAccount, DevChain, start_devchain
from lpnode.payments.devchain_network import LPT, register_orchestrator
from paid_nodes import ETH, chain_flags, keystore
from procs import LPNODE, ChildProcess, GatewayProcess, child_env, free_port

T2I = "lpnode/tiny-text-to-image"
PRICES = {"a": 1000, "b": 2000}  # wei per pixel
STAKES = {"a": 3 * LPT, "b": LPT}
T = TypeVar("T")


class ChainOrchestrator(ChildProcess):
    """An `lpnode orchestrator` on chain, serving on ``port`` (its service URI on chain is ``https://`` that)."""

    def __init__(self, port: int, models: Path, models_dir: Path, data_dir: Path, wallet: Path, chain: DevChain):
        self.port = port
        self.url = f"https://127.0.0.1:{port}"
        self.log_path = data_dir / "orchestrator.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*LPNODE, "orchestrator", "--ai-models", str(models), "--models-dir", str(models_dir),
             "--service-addr", f"127.0.0.1:{port}", "--data-dir", str(data_dir), "--cli-addr", "off",
             "--safety-checker", "lpnode/tiny-safety-checker", *chain_flags(chain),
             "-ethKeystorePath", str(wallet), "-ethPassword", str(wallet.parent / "password")],
            stdout=self._log, stderr=subprocess.STDOUT, env=child_env(),
        )  # fmt: skip

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        cert = self.log_path.parent / "tls" / "cert.pem"
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            try:
                if cert.exists() and requests.get(self.url + "/healthz", verify=str(cert), timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError(self.log())


@dataclass
class Network:
    chain: DevChain
    loop: asyncio.AbstractEventLoop
    tmp: Path
    models_dir: Path
    accounts: dict[str, DevAccount]
    orchestrators: dict[str, ChainOrchestrator]
    gateway: GatewayProcess | None = None
    retired: list[ChainOrchestrator] = field(default_factory=list)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def start(self, name: str, port: int) -> ChainOrchestrator:
        models = self.tmp / f"aiModels-{name}.json"
        entry = {"pipeline": "text-to-image", "model_id": T2I, "warm": True, "price_per_unit": PRICES[name]}
        models.write_text(json.dumps([entry]))
        wallet = keystore(self.tmp / f"wallet-{name}", self.accounts[name].key)
        orch = ChainOrchestrator(port, models, self.models_dir, self.tmp / f"orch-{name}-{port}", wallet, self.chain)
        self.orchestrators[name] = orch
        return orch

    @property
    def gw(self) -> GatewayProcess:
        assert self.gateway is not None
        return self.gateway

    def admin(self, path: str) -> Any:
        return requests.get(self.gw.admin_url + path, timeout=10).json()

    def listed(self) -> set[str]:
        """The orchestrators the gateway's /getNetworkCapabilities shows."""
        return {o["orch_uri"] for o in self.admin("/getNetworkCapabilities")["orchestrators"]}

    def pool_uris(self) -> set[str]:
        """The service URIs of the active orchestrators in the pool, as the gateway's /status last read them."""
        return {m["service_uri"] for m in self.admin("/status")["chain_pool"]["orchestrators"] if m["active"]}

    def jobs_by_orchestrator(self) -> dict[str, int]:
        """Jobs answered 200, per orchestrator URL, from the gateway's /metrics."""
        text = requests.get(self.gw.admin_url + "/metrics", timeout=10).text
        found = re.findall(r'lpnode_gateway_orchestrator_jobs_total\{orchestrator="([^"]+)",status="200"\} (\S+)', text)
        return {url: int(float(count)) for url, count in found}


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.3)


def text_to_image(net: Network) -> requests.Response:
    body = {"prompt": "a lighthouse", "model_id": T2I, "width": 64, "height": 64, "num_inference_steps": 1}
    return requests.post(net.gw.base_url + "/text-to-image", json=body, timeout=120)


def served(net: Network, jobs: int) -> dict[str, int]:
    """Send ``jobs`` jobs one at a time; how many each orchestrator served."""
    before = net.jobs_by_orchestrator()
    for _ in range(jobs):
        answer = text_to_image(net)
        assert answer.status_code == 200, answer.text
    after = net.jobs_by_orchestrator()
    return {url: after[url] - before.get(url, 0) for url in after if after[url] - before.get(url, 0)}


@pytest.fixture(scope="module")
def net(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    tmp = tmp_path_factory.mktemp("chain-discovery")
    loop = asyncio.new_event_loop()
    chain = loop.run_until_complete(start_devchain(round_length=20))
    accounts = {"a": chain.accounts[1], "b": chain.accounts[2], "gateway": chain.accounts[3]}
    network = Network(chain, loop, tmp, models_dir, accounts, {})
    try:
        ports = {"a": free_port(), "b": free_port()}
        for name in ("a", "b"):  # registered as an operator does, then active from the next round
            uri = f"https://127.0.0.1:{ports[name]}"
            network.run(register_orchestrator(chain, accounts[name], STAKES[name], uri, 10, 50, next_round=False))
        network.run(chain.advance_round())
        network.run(chain.fund_sender(accounts["gateway"].key, ETH, ETH))
        for name in ("a", "b"):
            network.start(name, ports[name])
        for orch in network.orchestrators.values():
            orch.wait_ready()
        wallet = keystore(tmp / "wallet-gateway", accounts["gateway"].key)
        network.gateway = GatewayProcess(
            tmp / "gateway", *chain_flags(chain), "-ethKeystorePath", str(wallet),
            "-ethPassword", str(wallet.parent / "password"),
        )  # fmt: skip
        yield network
    finally:
        if network.gateway is not None:
            network.gateway.stop()
        for orch in [*network.orchestrators.values(), *network.retired]:
            assert orch.stop() in (0, -signal.SIGTERM), orch.log()
        logs = [o.log() for o in [*network.orchestrators.values(), *network.retired]]
        if network.gateway is not None:
            logs.append(network.gateway.log_path.read_text())
        for text in logs:
            assert "Traceback" not in text
            for account in accounts.values():
                assert account.key.hex() not in text, "a key in the logs"
        loop.run_until_complete(chain.close())
        loop.close()


def test_both_orchestrators_are_discovered_on_chain_and_paid_for_jobs(net: Network) -> None:
    a, b = net.orchestrators["a"].url, net.orchestrators["b"].url
    wait_for("the gateway lists both orchestrators", lambda: net.listed() == {a, b})
    pool = net.admin("/status")["chain_pool"]
    stakes = {m["service_uri"]: int(m["stake"]) for m in pool["orchestrators"] if m["active"]}
    assert set(stakes) == {a, b}
    # Each calls reward once a round (its stake grows with the LPT minted), a 3:1 split either way.
    assert stakes[a] >= STAKES["a"] and stakes[b] >= STAKES["b"] and stakes[a] / stakes[b] == pytest.approx(3, rel=0.01)
    counts = served(net, 20)
    # go's defaults: a is drawn with 0.7 × 3/4 + 0.3/2 = 0.675, b with 0.325; 20 jobs leave b none 1 time in 2500
    assert set(counts) == {a, b} and counts[a] + counts[b] == 20, counts
    sent = {o["url"]: o["tickets"] for o in net.admin("/status")["payments"]["orchestrators"]}
    assert sent.get(a, 0) > 0 and sent.get(b, 0) > 0, sent


def test_a_new_service_uri_is_followed(net: Network) -> None:
    old, b = net.orchestrators["a"], net.orchestrators["b"].url
    port = free_port()
    uri = f"https://127.0.0.1:{port}"
    net.run(net.chain.transact("ServiceRegistry", "setServiceURI", uri, key=net.accounts["a"].key))
    old.stop()  # a moves: the node at the old address is gone, a new one serves at the new URI
    net.retired.append(old)
    moved = net.start("a", port)
    wait_for("the gateway reads a's new URI on chain", lambda: net.pool_uris() == {moved.url, b})
    moved.wait_ready()
    # Not up yet when the gateway first asked it: asked again once its suspension ends (10 s).
    wait_for("the gateway reaches a at its new URI", lambda: net.listed() == {moved.url, b})
    counts = served(net, 10)
    assert old.url not in counts and counts.get(moved.url, 0) > 0, counts


def test_an_orchestrator_that_unbonds_drops_out_at_the_next_round(net: Network) -> None:
    a, b = net.orchestrators["a"].url, net.orchestrators["b"].url  # a: the one that moved
    b_account = net.accounts["b"]
    current = net.run(net.chain.current_round())
    stake = net.run(net.chain.call("BondingManager", "pendingStake", b_account.checksum_address, current))
    net.run(net.chain.transact("BondingManager", "unbond", stake, key=b_account.key))  # all of it, rewards too
    time.sleep(6)  # a poll of the pool's contracts: b left the pool, but is active until the round ends
    assert net.listed() == {a, b}
    net.run(net.chain.advance_round())
    wait_for("b drops out of the gateway's list", lambda: net.listed() == {a})
    assert served(net, 6) == {a: 6}
