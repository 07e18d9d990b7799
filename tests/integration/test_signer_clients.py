"""`lpnode gateway -remoteSignerUrl` paying an on-chain `lpnode orchestrator` with no Ethereum flags of its own,
through a real `lpnode signer` holding the deposit: anvil with the project's contracts and a stand-in ETH/USD feed
(Arbitrum's Chainlink feed cannot run here), runner apps priced in USD (a fixed-price single-shot app, a metered
persistent one) and a live `noop` pipeline priced per pixel.

What a user sees: the gateway starts knowing only the signer; calls and sessions of apps on an on-chain
orchestrator succeed (their 402 challenges paid through the signer), a metered session outlives its opening
credit because the gateway keeps paying; a live stream starts paid and goes on being paid; the orchestrator's
balances are credited by the signer's address; the signer's key never shows in any log.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import requests
from test_live_path import write_clip
from test_live_payments import play, stream_status
from test_runner_app_payments import FIXED, TICKET_EV, AppProcess, deploy_feed, until

from lpnode.payments.devchain import DevChain, start_devchain
from paid_nodes import ETH, chain_flags, keystore, wallet_flags
from procs import LPNODE, ChildProcess, GatewayProcess, OrchestratorProcess, child_env, free_port

SECRET = "signer-clients-secret"
LIVE_PRICE = 1  # wei per pixel: 27,648,000 wei a second of live video


class SignerProcess(ChildProcess):
    """An ``lpnode signer`` on a free loopback port, paying from ``key``'s deposit."""

    def __init__(self, data_dir: Path, chain: DevChain, key: bytes) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        path = keystore(data_dir / "wallet", key)
        self.log_path = data_dir / "signer.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        args = [*LPNODE, "signer", "-httpAddr", f"127.0.0.1:{self.port}", "-dataDir", str(data_dir)]
        args += [*chain_flags(chain), "-ethKeystorePath", str(path), "-ethPassword", str(path.parent / "password")]
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=child_env())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            try:
                if requests.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.2)
        raise AssertionError(self.log())


@dataclass
class Stack:
    chain: DevChain
    orchestrator: OrchestratorProcess
    signer: SignerProcess
    gateway: GatewayProcess
    signer_address: str
    signer_key: bytes
    clip: Path


@pytest.fixture(scope="module")
def stack(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("signer-clients")
    loop = asyncio.new_event_loop()
    chain = loop.run_until_complete(start_devchain(round_length=50))
    started: list[Any] = []
    try:
        feed = loop.run_until_complete(asyncio.to_thread(deploy_feed, chain))
        orch, payer = chain.accounts[1], chain.accounts[2]
        loop.run_until_complete(chain.activate(orch.address))
        loop.run_until_complete(chain.fund_sender(payer.key, ETH, ETH))
        app = AppProcess(tmp)
        started.append(app)
        runners = [
            {"label": "metered", "app": "demo/metered", "runner_url": app.url, "health_url": "/health",
             "price_info": {"price": 10, "unit": "hour"}},
            {"label": "fixed-shot", "app": "demo/fixed-shot", "runner_url": app.url, "health_url": "/health",
             "mode": "single-shot", "capacity": 2, "price_info": {"price": "0.001", "unit": "fixed"}},
        ]  # fmt: skip
        (tmp / "runners.json").write_text(json.dumps({"runners": runners}))
        models = [{"pipeline": "live-video-to-video", "model_id": "noop", "warm": True, "price_per_unit": LIVE_PRICE}]
        (tmp / "aiModels.json").write_text(json.dumps(models))
        orchestrator = OrchestratorProcess(
            tmp / "aiModels.json", models_dir, tmp / "orch", *chain_flags(chain),
            *wallet_flags(tmp / "orch-wallet", orch.key), "-priceFeedAddr", feed, "-ticketEV", str(TICKET_EV),
            "-livePaymentInterval", "1s", f"-orchSecret={SECRET}", "-useLiveRunners",
            f"-liveRunnerConfig={tmp / 'runners.json'}", plain=True,
        )  # fmt: skip
        started.append(orchestrator)
        orchestrator.wait_ready()
        signer = SignerProcess(tmp / "signer", chain, payer.key)
        started.append(signer)
        gateway = GatewayProcess(
            tmp / "gateway", "-orchAddr", orchestrator.base_url, "-remoteSignerUrl", signer.url,
            "-livePaymentInterval", "1s",
        )  # fmt: skip
        started.append(gateway)
        clip = tmp / "clip.mp4"
        write_clip(clip, 12.0)
        yield Stack(chain, orchestrator, signer, gateway, payer.checksum_address, payer.key, clip)
    finally:
        for process in reversed(started):
            process.stop()
        loop.run_until_complete(chain.close())
        loop.close()


def balances(stack: Stack) -> dict[str, Fraction]:
    """The orchestrator's balance for each manifest the signer's address paid."""
    found = stack.orchestrator.admin_get("/status").json()["payments"]["balances"]
    return {b["manifest"]: Fraction(b["balance"]) for b in found if b["sender"] == stack.signer_address}


def test_the_gateway_knows_the_signers_address_and_no_key(stack: Stack) -> None:
    status = requests.get(stack.gateway.admin_url + "/status", timeout=10).json()
    assert status["payments"]["address"] == stack.signer_address
    assert status["payments"]["remote_signer"] == stack.signer.url


def test_a_fixed_price_app_call_is_paid_through_the_signer(stack: Stack) -> None:
    until(lambda: requests.get(stack.gateway.base_url + "/discovery", timeout=10).json()[0].get("runners"), 30,
          "the gateway lists the apps")  # fmt: skip
    answer = requests.post(stack.gateway.base_url + "/apps/demo/fixed-shot/app/v1/run", json={}, timeout=30)
    assert answer.status_code == 200, answer.text
    manifest = answer.json()["session"]
    assert len(manifest) == 8  # a paid call's session is the challenge's manifest id
    # The signer paid one ticket's worth for a fixed price; the orchestrator took the price once.
    assert balances(stack)[manifest] == TICKET_EV - FIXED


def test_a_metered_session_is_kept_paid_past_its_opening_credit(stack: Stack) -> None:
    reserved = requests.post(stack.gateway.base_url + "/apps/demo/metered/session", timeout=30)
    assert reserved.status_code == 200, reserved.text
    session = reserved.json()
    sid = session["session_id"]
    first = balances(stack)[sid]
    assert first > 0
    # 12 s is past the signer's 10 s opening: unpaid, the orchestrator would have released it by now.
    time.sleep(12)
    call = requests.get(session["app_url"] + "/still-here", timeout=10)
    assert call.status_code == 200, call.text
    assert balances(stack)[sid] >= 0
    stop = requests.post(session["control_url"] + "/stop", timeout=10)
    assert stop.status_code == 204


def test_a_live_stream_is_paid_through_the_signer(stack: Stack) -> None:
    player = play(stack.gateway, stack.clip, "signer-paid")
    try:
        until(lambda: _running(stack, "signer-paid"), 60, "the stream runs on the orchestrator")
        manifest = stream_status(stack.gateway, "signer-paid")["manifest_id"]
        # The start paid the signer's opening minute of 720p30 at the stream's price, credited to the stream.
        opening = 60 * 1280 * 720 * 30 * LIVE_PRICE
        credited = until(lambda: balances(stack).get(manifest), 10, "the stream's balance")
        assert opening - 4 * 1280 * 720 * 30 * LIVE_PRICE <= credited <= opening + TICKET_EV, credited
        debited = Fraction(stack.orchestrator.admin_get("/status").json()["payments"]["debited_wei"])
        time.sleep(3)
        paid = stream_status(stack.gateway, "signer-paid")["payments"]
        assert paid["failures"] == 0 and paid["paid_seconds"] > 2, paid
        # The orchestrator debits the seconds served; the signer's payments keep the stream's balance above zero.
        later = Fraction(stack.orchestrator.admin_get("/status").json()["payments"]["debited_wei"])
        assert later - debited >= 2 * 1280 * 720 * 30 * LIVE_PRICE, (debited, later)
        assert balances(stack)[manifest] > 0
    finally:
        player.terminate()
        player.communicate(timeout=30)
    for path in (stack.signer.log_path, stack.gateway.log_path, stack.orchestrator.log_path):
        assert stack.signer_key.hex() not in path.read_text()


def _running(stack: Stack, stream: str) -> bool:
    try:
        return bool(stream_status(stack.gateway, stream).get("orchestrator"))
    except (requests.RequestException, KeyError, ValueError):
        return False


SDK_CALL = """
import asyncio, json, sys
from livepeer_gateway.live_runner import call_runner

async def main():
    result = await call_runner(runner_url=sys.argv[1], payload={"hello": "sdk"}, signer_url=sys.argv[2],
                               payment_unit="fixed", timeout=30)
    print(json.dumps({"session_id": result.session_id, "data": result.data}))

asyncio.run(main())
"""


def test_the_sdk_pays_a_fixed_price_call_through_the_signer(stack: Stack, tmp_path: Path) -> None:
    from sdk import sdk_python

    python = sdk_python()
    routes = {r["label"]: r["route"] for r in stack.orchestrator.admin_get("/status").json()["runner_apps"]}
    script = tmp_path / "call.py"
    script.write_text(SDK_CALL)
    target = f"{stack.orchestrator.base_url}/apps/{routes['fixed-shot']}/app/v1/sdk"
    done = subprocess.run([str(python), str(script), target, stack.signer.url], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["data"]["path"] == "/v1/sdk", answer  # the app's own answer: the paid retry got through
    manifest = answer["data"]["session"]
    assert balances(stack)[manifest] == TICKET_EV - FIXED  # the signer's ticket, the price taken once
