"""Payments where operators look, on a real EVM: anvil with the project's contracts, an `lpnode orchestrator` on
chain (TLS, as on the network) and an `lpnode gateway` paying it from a funded wallet.

After one paid job: `lpnode status` shows both wallets, the gateway's deposit and reserve in ETH and the tickets it
sent, the orchestrator's tickets and earnings (and its senders' balances on the admin API only); the dashboards'
JSON carries the same; `/getNetworkCapabilities` names the ticket recipient with a price; `lpnode doctor` signs
GetOrchestrator with the gateway's wallet and passes the chain checks; `/metrics` counts the tickets.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from lpnode.payments.devchain import start_devchain
from paid_nodes import ETH, chain_flags, keystore
from procs import GatewayProcess, OrchestratorProcess, run_cli

T2I = "lpnode/tiny-text-to-image"


@dataclass
class Paid:
    orchestrator: OrchestratorProcess
    gateway: GatewayProcess
    orch_address: str
    gateway_address: str
    gateway_wallet: Path
    ai_models: Path
    models_dir: Path
    chain_url: str


@pytest.fixture(scope="module")
def paid(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Paid]:
    tmp = tmp_path_factory.mktemp("status-payments")
    loop = asyncio.new_event_loop()
    chain = loop.run_until_complete(start_devchain(round_length=200))
    orchestrator: OrchestratorProcess | None = None
    gateway: GatewayProcess | None = None
    try:
        orch_account, gateway_account = chain.accounts[1], chain.accounts[2]
        loop.run_until_complete(chain.activate(orch_account.address))
        loop.run_until_complete(chain.fund_sender(gateway_account.key, ETH, ETH))
        flags = chain_flags(chain)
        (tmp / "aiModels.json").write_text(
            json.dumps([{"pipeline": "text-to-image", "model_id": T2I, "warm": True, "price_per_unit": 1000}])
        )
        wallet = keystore(tmp / "orch-wallet", orch_account.key)
        orchestrator = OrchestratorProcess(
            tmp / "aiModels.json", models_dir, tmp / "orchestrator", *flags,
            "-ethKeystorePath", str(wallet), "-ethPassword", str(wallet.parent / "password"),
        )  # fmt: skip
        orchestrator.wait_ready()
        gateway_keystore = keystore(tmp / "gateway-wallet", gateway_account.key)
        gateway = GatewayProcess(
            tmp / "gateway", "-orchAddr", orchestrator.base_url, *flags,
            "-ethKeystorePath", str(gateway_keystore), "-ethPassword", str(gateway_keystore.parent / "password"),
        )  # fmt: skip
        body = {"prompt": "a lighthouse", "model_id": T2I, "width": 64, "height": 64, "num_inference_steps": 1}
        answer = requests.post(gateway.base_url + "/text-to-image", json=body, timeout=120)
        assert answer.status_code == 200, answer.text
        yield Paid(
            orchestrator, gateway, orch_account.checksum_address, gateway_account.checksum_address,
            gateway_keystore, tmp / "aiModels.json", models_dir, chain.url,
        )  # fmt: skip
    finally:
        if gateway is not None:
            gateway.stop()
        if orchestrator is not None:
            assert orchestrator.stop() == 0, orchestrator.log()
        loop.run_until_complete(chain.close())
        loop.close()


def test_status_shows_both_wallets_funds_tickets_and_earnings_in_eth(paid: Paid) -> None:
    result = run_cli("status", "--gateway", paid.gateway.admin_url, "--orchestrator", paid.orchestrator.admin_url)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"payments on chain (devchain): wallet {paid.gateway_address}" in out
    assert "deposit 1 ETH, reserve 1 ETH, unlocking: no" in out
    gateway_part, orch_part = out.split("== orchestrator")
    sent = next(line for line in gateway_part.splitlines() if line.startswith(paid.orchestrator.base_url))
    assert sent.split()[1:3] != ["0", "0"] and sent.split()[4] == "ETH", sent  # payments, tickets, EV in ETH
    assert f"payments on chain (devchain): wallet {paid.orch_address}, active: yes" in orch_part
    assert "RECEIVED" in orch_part and "EARNED" in orch_part and "e+" not in out
    assert "SENDER" in orch_part and paid.gateway_address in orch_part  # the admin API: balances per sender

    public = run_cli("status", "--orchestrator", paid.orchestrator.base_url)
    assert public.returncode == 0, public.stdout + public.stderr
    assert f"wallet {paid.orch_address}" in public.stdout
    assert "SENDER" not in public.stdout and paid.chain_url not in public.stdout


def test_dashboards_carry_payments_and_the_public_views_hold_back_balances(paid: Paid) -> None:
    status = paid.orchestrator.get("/status").json()["payments"]
    assert status["address"] == paid.orch_address and status["tickets"]["received"] >= 1
    assert "balances" not in status and "chain_url" not in status
    admin = paid.orchestrator.admin_get("/status").json()["payments"]
    assert any(b["sender"] == paid.gateway_address for b in admin["balances"])

    public = requests.get(paid.gateway.base_url + "/dashboard/data.json", timeout=10).json()["payments"]
    assert (public["network"], public["address"]) == ("devchain", paid.gateway_address)
    assert (public["deposit_wei"], public["reserve_wei"], public["problem"]) == (str(ETH), str(ETH), "")
    assert public["orchestrators"][0]["tickets"] >= 1 and "credits" not in public
    mine = requests.get(paid.gateway.admin_url + "/dashboard/data.json", timeout=10).json()["payments"]
    assert all("/" not in c["credit_wei"] for c in mine["credits"])  # whole wei, not an exact fraction


def test_network_capabilities_name_the_ticket_recipient_with_a_price(paid: Paid) -> None:
    document = requests.get(paid.gateway.admin_url + "/getNetworkCapabilities", timeout=10).json()
    (orch,) = document["orchestrators"]
    assert orch["address"] == paid.orch_address
    assert orch["price_info"] is not None
    assert any(p.get("constraint") == T2I and p["pricePerUnit"] > 0 for p in orch["capabilities_prices"])


def test_doctor_signs_with_the_gateways_wallet_and_checks_the_chain(paid: Paid) -> None:
    common = ["doctor", "--orchestrator", paid.orchestrator.base_url, "--gateway", paid.gateway.base_url,
              "--ai-models", str(paid.ai_models), "--models-dir", str(paid.models_dir),
              "--data-dir", str(paid.ai_models.parent / "no-up")]  # fmt: skip
    result = run_cli(*common, "-ethKeystorePath", str(paid.gateway_wallet),
                     "-ethPassword", str(paid.gateway_wallet.parent / "password"), timeout=180)  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert f"signed by {paid.gateway_address}" in out
    assert f"PASS  orchestrator active on chain: {paid.orch_address}" in out
    assert f"PASS  ticket params received: for {paid.gateway_address} paying text-to-image {T2I}" in out
    assert "PASS  gateway deposit and reserve" in out and "deposit 1 ETH, reserve 1 ETH" in out

    unsigned = run_cli(*common, timeout=180)
    assert "SKIP  advertised from outside (GetOrchestrator): the orchestrator is on chain" in unsigned.stdout
    wrong = run_cli(*common, "-ethKeystorePath", str(paid.gateway_wallet), "-ethPassword", "not it", timeout=180)
    assert "cannot unlock the gateway's wallet" in wrong.stdout and "not it" not in wrong.stdout
    assert "Traceback" not in unsigned.stderr + wrong.stderr


def test_metrics_count_tickets_ev_and_funds(paid: Paid) -> None:
    gateway = requests.get(paid.gateway.admin_url + "/metrics", timeout=10).text
    for name in ("lpnode_gateway_tickets_sent_total", "lpnode_gateway_ticket_ev_sent_wei_total",
                 "lpnode_gateway_deposit_wei", "lpnode_gateway_reserve_wei"):  # fmt: skip
        assert name in gateway, name
    orchestrator = paid.orchestrator.get("/metrics").text
    for name in ("lpnode_orchestrator_tickets_total", "lpnode_orchestrator_earned_wei_total",
                 "lpnode_orchestrator_payment_wei_total"):  # fmt: skip
        assert name in orchestrator, name
