"""`lpnode gateway` paying on a real EVM: anvil with the project's contracts, a real `lpnode orchestrator` on
chain serving tiny models at a price, and a real gateway process whose wallet holds a deposit and reserve.

Jobs sent to the gateway's public API are paid with tickets: the orchestrator's balance for the gateway and the
gateway's own credit agree with the fees of the jobs run; ticket params that expire between jobs are fetched
again without the caller noticing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from lpnode.payments.devchain import DevChain, start_devchain
from lpnode.protocol.capabilities import Capability
from paid_nodes import ETH, chain_flags, keystore
from procs import GatewayProcess, OrchestratorProcess

T2I = "lpnode/tiny-text-to-image"
LLM = "lpnode/tiny-llm"
T2I_PRICE = 1000  # wei per pixel
LLM_PRICE = 2_000_000  # wei per token
T = TypeVar("T")


@dataclass
class Stack:
    chain: DevChain
    loop: asyncio.AbstractEventLoop
    orchestrator: OrchestratorProcess
    gateway: GatewayProcess
    gateway_address: str

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)


@pytest.fixture(scope="module")
def stack(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("paying-gateway")
    loop = asyncio.new_event_loop()
    chain = loop.run_until_complete(start_devchain(round_length=200))
    orchestrator: OrchestratorProcess | None = None
    gateway: GatewayProcess | None = None
    try:
        orch_account, gateway_account = chain.accounts[1], chain.accounts[2]
        loop.run_until_complete(chain.activate(orch_account.address))
        loop.run_until_complete(chain.fund_sender(gateway_account.key, ETH, ETH))
        flags = chain_flags(chain)
        models = [
            {"pipeline": "text-to-image", "model_id": T2I, "warm": True, "price_per_unit": T2I_PRICE},
            {"pipeline": "llm", "model_id": LLM, "warm": True, "price_per_unit": LLM_PRICE},
        ]
        (tmp / "aiModels.json").write_text(json.dumps(models))
        wallet = keystore(tmp / "orch-wallet", orch_account.key)
        orchestrator = OrchestratorProcess(
            tmp / "aiModels.json", models_dir, tmp / "orchestrator", *flags,
            "-ethKeystorePath", str(wallet), "-ethPassword", str(wallet.parent / "password"), plain=True,
        )  # fmt: skip
        orchestrator.wait_ready()
        wallet = keystore(tmp / "gateway-wallet", gateway_account.key)
        gateway = GatewayProcess(
            tmp / "gateway", "-orchAddr", orchestrator.base_url, *flags,
            "-ethKeystorePath", str(wallet), "-ethPassword", str(wallet.parent / "password"),
        )  # fmt: skip
        yield Stack(chain, loop, orchestrator, gateway, gateway_account.checksum_address)
    finally:
        if gateway is not None:
            gateway.stop()
        if orchestrator is not None:
            assert orchestrator.stop() == 0, orchestrator.log()
        loop.run_until_complete(chain.close())
        loop.close()


def orchestrator_balance(stack: Stack, manifest: str) -> Fraction:
    sessions = stack.orchestrator.admin_get("/status").json()["payments"]["balances"]
    mine = [s for s in sessions if s["sender"] == stack.gateway_address and s["manifest"] == manifest]
    return Fraction(mine[0]["balance"]) if mine else Fraction(0)


def gateway_payments(stack: Stack) -> dict[str, Any]:
    payments: dict[str, Any] = requests.get(stack.gateway.admin_url + "/status", timeout=10).json()["payments"]
    return payments


def gateway_credit(stack: Stack, manifest: str) -> Fraction:
    credits = [c for c in gateway_payments(stack)["credits"] if c["manifest"] == manifest]
    return Fraction(credits[0]["credit_wei"]) if credits else Fraction(0)


def agree(stack: Stack, manifest: str) -> None:
    """The orchestrator's balance for the gateway (shown in whole wei) is the gateway's own credit."""
    theirs, ours = orchestrator_balance(stack, manifest), gateway_credit(stack, manifest)
    assert ours >= 0 and abs(theirs - ours) < 1, (theirs, float(ours))


def text_to_image(stack: Stack) -> requests.Response:
    body = {"prompt": "a lighthouse", "model_id": T2I, "width": 64, "height": 64, "num_inference_steps": 1}
    return requests.post(stack.gateway.base_url + "/text-to-image", json=body, timeout=120)


def test_the_gateway_shows_its_wallet_and_funds(stack: Stack) -> None:
    payments = gateway_payments(stack)
    assert payments["address"] == stack.gateway_address
    assert int(payments["deposit_wei"]) == ETH and int(payments["reserve_wei"]) == ETH


def test_text_to_image_is_paid_and_both_sides_agree(stack: Stack) -> None:
    manifest = f"{int(Capability.TEXT_TO_IMAGE)}_{T2I}"
    for _ in range(2):
        answer = text_to_image(stack)
        assert answer.status_code == 200, answer.text
    sent = {o["url"]: o for o in gateway_payments(stack)["orchestrators"]}
    assert sent[stack.orchestrator.base_url]["tickets"] >= 2
    agree(stack, manifest)
    metrics = requests.get(stack.gateway.admin_url + "/metrics", timeout=10).text
    assert "lpnode_gateway_tickets_sent_total" in metrics


def test_an_llm_stream_is_paid_by_its_max_tokens(stack: Stack) -> None:
    manifest = f"{int(Capability.LLM)}_{LLM}"
    body = {"model": LLM, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "stream": True}
    with requests.post(stack.gateway.base_url + "/llm", json=body, stream=True, timeout=120) as answer:
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/event-stream")
        text = b"".join(answer.iter_content(None)).decode()
    assert "data:" in text
    agree(stack, manifest)


def test_expired_ticket_params_are_refreshed_without_the_caller_noticing(stack: Stack) -> None:
    manifest = f"{int(Capability.TEXT_TO_IMAGE)}_{T2I}"
    assert text_to_image(stack).status_code == 200
    stack.run(stack.chain.mine(60))  # past the params' expiration block (issued 40 blocks ahead)
    answer = text_to_image(stack)
    assert answer.status_code == 200, answer.text
    agree(stack, manifest)
