"""`lpnode orchestrator` paid on a real EVM: anvil with the project's contracts, a real orchestrator process
serving a tiny model, and tickets made by the real `payments.sender.Sender` driven by this test.

A paid job succeeds and the balance math holds; each bad payment is refused with go-livepeer's status and
words and credits nothing. The test's own chain view (`Funded`) tells the Sender what the orchestrator must
find out for itself (that a sender is unlocking), so the refusal is the orchestrator's, not the Sender's.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import textwrap
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
import requests
from eth_account import Account

from lpclient import get_orchestrator
from lpnode.payments.chain_client import ChainClient
from lpnode.payments.chain_view import SenderInfo
from lpnode.payments.chain_watcher import ChainWatcher
from lpnode.payments.devchain import DevChain, start_devchain
from lpnode.payments.keystore import Wallet
from lpnode.payments.sender import Sender, SenderSettings
from lpnode.payments.signatures import HALF_N, SECP256K1_N, address_signature, keccak, segment_message, sign
from lpnode.protocol.capabilities import Capability, capability_bitstring
from lpnode.protocol.lp_rpc_pb2 import (
    Capabilities,
    OrchestratorInfo,
    OrchestratorRequest,
    Payment,
    PaymentResult,
    PriceInfo,
    SegData,
    TicketParams,
)
from procs import LPNODE, ChildProcess, OrchestratorProcess, child_env, free_port, run_cli

T2I = "lpnode/tiny-text-to-image"
PRICE = 1000  # wei per pixel
PIXELS = 64 * 64
MANIFEST = f"{int(Capability.TEXT_TO_IMAGE)}_{T2I}"
PASSWORD = "correct horse battery staple"
SECRET = "paid-byoc-secret"
BYOC_PRICE = 1000  # wei per second
CONTAINER = """
from lpnode.byoc.kit import ByocApp

app = ByocApp("echo")

@app.job()
def echo(inputs):
    return {"echo": inputs}
"""
ETH = 10**18
T = TypeVar("T")


class Loop:
    """One event loop for the chain objects this test drives (anvil's process belongs to it)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)


class Funded:
    """A chain view that reports every sender locked and funded, whatever the chain says."""

    def __init__(self, view: ChainWatcher) -> None:
        self.view = view

    def __getattr__(self, name: str) -> Any:
        return getattr(self.view, name)

    async def sender_info(self, sender: bytes) -> SenderInfo:
        return SenderInfo(deposit=ETH, withdraw_round=0, reserve=ETH)


@dataclass
class Paid:
    chain: DevChain
    loop: Loop
    node: OrchestratorProcess
    view: ChainWatcher
    flags: list[str]
    """The chain flags the orchestrator was started with."""


class ContainerProcess(ChildProcess):
    """A BYOC kit container answering ``echo`` jobs."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "container.py").write_text(textwrap.dedent(CONTAINER))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = directory / "container.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*LPNODE, "byoc", "serve", "container:app", "--port", str(self.port)],
            cwd=directory, stdout=self._log, stderr=subprocess.STDOUT, env=child_env(),
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise AssertionError(self.log())


@pytest.fixture(scope="module")
def paid(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Paid]:
    tmp = tmp_path_factory.mktemp("paid-orchestrator")
    loop = Loop()
    chain = loop.run(start_devchain(round_length=50, accounts=14))
    client: ChainClient | None = None
    node: OrchestratorProcess | None = None
    try:
        account = chain.accounts[1]
        keystore = tmp / "keystore.json"
        keystore.write_text(json.dumps(Account.encrypt(account.key, PASSWORD, kdf="scrypt", iterations=2**10)))
        (tmp / "password").write_text(PASSWORD + "\n")
        loop.run(chain.activate(account.address))
        models = [{"pipeline": "text-to-image", "model_id": T2I, "warm": True, "price_per_unit": PRICE}]
        (tmp / "aiModels.json").write_text(json.dumps(models))
        flags = ["-network", "devchain", "-ethUrl", chain.url, "-ethController", chain.controller]
        flags += ["-ethKeystorePath", str(keystore)]
        node = OrchestratorProcess(
            tmp / "aiModels.json", models_dir, tmp / "data", *flags, "-ethPassword", str(tmp / "password"),
            "--orch-secret", SECRET, plain=True,
        )  # fmt: skip
        node.wait_ready()
        client = ChainClient(chain.url, chain.controller, None)
        view = ChainWatcher(client, poll_seconds=0.5)
        loop.run(view.start())
        yield Paid(chain, loop, node, view, flags)
    finally:
        if node is not None:
            assert node.stop() == 0, node.log()
        if client is not None:
            loop.run(view.close())
            client.close()
        loop.run(chain.close())
        loop.loop.close()


def t2i_caps() -> Capabilities:
    cap = int(Capability.TEXT_TO_IMAGE)
    caps = Capabilities(bitstring=capability_bitstring([cap]))
    caps.capacities[cap] = 1
    caps.constraints.PerCapability[cap].models[T2I].warm = False
    return caps


class Gateway:
    """A paying gateway: one funded wallet, its Sender, its session with the orchestrator."""

    def __init__(self, paid: Paid, index: int, *, fund: bool = True, view: Any = None) -> None:
        self.paid = paid
        account = paid.chain.accounts[index]
        self.wallet = Wallet(address=account.address, key=account.key)
        if fund:
            paid.loop.run(paid.chain.fund_sender(account.key, ETH, ETH))
        self.sender = Sender(self.wallet, view or paid.view, SenderSettings(max_ticket_ev=Fraction(10**15)))
        self.info = OrchestratorInfo()
        self.session = ""

    def get_orchestrator(self) -> OrchestratorInfo:
        request = OrchestratorRequest(
            address=self.wallet.address, sig=address_signature(self.wallet.key), capabilities=t2i_caps()
        )
        self.info = get_orchestrator(self.paid.node.base_url, None, request)
        self.session = self.sender.start_session(self.info)
        return self.info

    def payment(self, tickets: int = 1, price: Any = None) -> Payment:
        self.paid.loop.run(self.paid.view.refresh())
        return self.paid.loop.run(self.sender.create_payment(self.session, tickets, price or self.info.price_info))

    def segment(self, manifest: str = MANIFEST) -> str:
        seg = SegData(manifestId=manifest.encode(), capabilities=t2i_caps())
        seg.auth_token.CopyFrom(self.info.auth_token)
        seg.sig = sign(self.wallet.key, segment_message(seg))
        return base64.b64encode(seg.SerializeToString()).decode()

    def job(self, payment: Payment) -> requests.Response:
        headers = {
            "Livepeer-Segment": self.segment(),
            "Livepeer-Payment": base64.b64encode(payment.SerializeToString()).decode(),
            "Authorization": "Livepeer-AI-Worker-1.0",
        }
        body = {"prompt": "a lighthouse", "model_id": T2I, "width": 64, "height": 64, "num_inference_steps": 1}
        return self.paid.node.post("/text-to-image", json=body, headers=headers, timeout=60)

    def balance(self, manifest: str = MANIFEST) -> Fraction:
        sessions = self.paid.node.admin_get("/status").json()["payments"]["balances"]
        mine = [s for s in sessions if s["sender"] == self.wallet.checksum_address and s["manifest"] == manifest]
        return Fraction(mine[0]["balance"]) if mine else Fraction(0)


def refused(response: requests.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert words in response.text, response.text


def test_getorchestrator_gives_address_price_and_ticket_params(paid: Paid) -> None:
    gateway = Gateway(paid, 2)
    info = gateway.get_orchestrator()
    assert info.address == paid.chain.accounts[1].address
    assert (info.price_info.pricePerUnit, info.price_info.pixelsPerUnit) != (0, 0)
    assert Fraction(info.price_info.pricePerUnit, info.price_info.pixelsPerUnit) >= PRICE
    assert info.ticket_params.recipient == paid.chain.accounts[1].address
    assert int.from_bytes(info.ticket_params.face_value, "big") > 0
    status = paid.node.admin_get("/status").json()["payments"]
    assert status["address"] == paid.chain.accounts[1].checksum_address


def test_a_forged_request_signature_is_refused(paid: Paid) -> None:
    other = paid.chain.accounts[3]
    request = OrchestratorRequest(address=paid.chain.accounts[2].address, sig=address_signature(other.key))
    with pytest.raises(grpc.RpcError) as caught:
        get_orchestrator(paid.node.base_url, None, request)
    assert caught.value.details() == "Invalid orchestrator request (orchestrator req sig check failed)"


def test_a_paid_job_is_credited_then_debited_by_its_pixels(paid: Paid) -> None:
    gateway = Gateway(paid, 4)
    gateway.get_orchestrator()
    ev = gateway.sender.expected_value(gateway.session)
    answer = gateway.job(gateway.payment(2))
    assert answer.status_code == 200, answer.text
    price = Fraction(gateway.info.price_info.pricePerUnit, gateway.info.price_info.pixelsPerUnit)
    assert gateway.balance() == int(2 * ev - PIXELS * price)
    metrics = paid.node.admin_get("/metrics").text
    assert "lpnode_orchestrator_tickets_total" in metrics and "lpnode_orchestrator_payment_wei_total" in metrics

    # Replaying the same payment: go's words, nothing credited, no job run.
    replay = gateway.payment(1)
    assert gateway.job(replay).status_code == 200
    after_first = gateway.balance()
    refused(gateway.job(replay), 400, "invalid ticket senderNonce: already seen")
    assert gateway.balance() == after_first


def test_a_job_without_tickets_is_refused_for_insufficient_balance(paid: Paid) -> None:
    gateway = Gateway(paid, 3)
    gateway.get_orchestrator()
    refused(gateway.job(gateway.payment(0)), 400, "Insufficient balance")
    assert gateway.balance() == 0


def test_forged_and_malleated_ticket_signatures_are_refused(paid: Paid) -> None:
    gateway = Gateway(paid, 5)
    gateway.get_orchestrator()
    forged = gateway.payment(1)
    forged.ticket_sender_params[0].sig = sign(paid.chain.accounts[6].key, b"\x00" * 32)
    refused(gateway.job(forged), 400, "invalid ticket signature")
    malleated = gateway.payment(1)
    sig = bytes(malleated.ticket_sender_params[0].sig)
    high_s = SECP256K1_N - int.from_bytes(sig[32:64], "big")
    assert high_s > HALF_N
    malleated.ticket_sender_params[0].sig = sig[:32] + high_s.to_bytes(32, "big") + bytes((55 - sig[64],))
    refused(gateway.job(malleated), 400, "invalid ticket signature")
    assert gateway.balance() == 0


def test_a_price_raised_past_the_limit_is_refused(paid: Paid) -> None:
    gateway = Gateway(paid, 7)
    info = gateway.get_orchestrator()
    assert gateway.job(gateway.payment(1)).status_code == 200  # pins the session's price
    credited = gateway.balance()
    price = info.price_info
    tripled = type(price)(pricePerUnit=price.pricePerUnit * 3, pixelsPerUnit=price.pixelsPerUnit)
    refused(gateway.job(gateway.payment(1, tripled)), 400, "invalid expected price sent with payment")
    assert gateway.balance() == credited


def test_expired_params_and_a_wrong_recipient_are_refused(paid: Paid) -> None:
    gateway = Gateway(paid, 8)
    info = gateway.get_orchestrator()
    payment = gateway.payment(1)
    other = paid.chain.accounts[0]  # an active orchestrator, but not this one
    paid.loop.run(paid.chain.activate(other.address))
    wrong = OrchestratorInfo()
    wrong.CopyFrom(info)
    wrong.ticket_params.recipient = other.address
    gateway.session = gateway.sender.start_session(wrong)
    first, second = gateway.payment(1), gateway.payment(1)
    refused(gateway.job(first), 400, "is inactive in round")  # not yet known active: it is watched from now on
    paid.loop.run(paid.chain.mine(45))
    time.sleep(6)  # the orchestrator's chain view polls every 5 s
    refused(gateway.job(payment), 400, "TicketParams expired")
    refused(gateway.job(second), 400, "invalid ticket recipient")
    assert gateway.balance() == 0


def test_an_unlocking_sender_and_an_empty_deposit_are_refused(paid: Paid) -> None:
    empty = Gateway(paid, 9, fund=False)
    with pytest.raises(grpc.RpcError) as caught:
        empty.get_orchestrator()
    assert "insufficient sender reserve" in str(caught.value.details())

    gateway = Gateway(paid, 6, view=Funded(paid.view))
    gateway.get_orchestrator()
    paid.loop.run(paid.chain.transact("TicketBroker", "unlock", key=paid.chain.accounts[6].key))
    paid.loop.run(paid.chain.advance_round())
    time.sleep(6)
    gateway.get_orchestrator()
    refused(gateway.job(gateway.payment(1)), 400, "is set to unlock soon")
    assert gateway.balance() == 0


def test_a_wrong_password_or_chain_stops_the_start_with_one_line(paid: Paid, tmp_path: Path) -> None:
    models = ["--ai-models", f"text-to-image:{T2I}:true", "--data-dir", str(tmp_path), "--cli-addr", "off"]
    result = run_cli("orchestrator", *models, *paid.flags, "-ethPassword", "not the password", timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("lpnode: error: ") and "not the password" not in result.stderr
    flags = [f if f != paid.chain.url else "http://127.0.0.1:1" for f in paid.flags]
    result = run_cli("orchestrator", *models, *flags, "-ethPassword", PASSWORD, timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("lpnode: error: -network devchain"), result.stderr


def test_a_byoc_job_is_paid_with_the_token_ticket_params(paid: Paid, tmp_path: Path) -> None:
    container = ContainerProcess(tmp_path / "container")
    try:
        body = {"name": "echo", "url": container.url, "capacity": 2, "price_per_unit": BYOC_PRICE}
        assert paid.node.post("/capability/register", json=body, headers={"Authorization": SECRET}).text == "ok"
        gateway = Gateway(paid, 10)
        wallet = gateway.wallet
        proof = {"addr": wallet.checksum_address, "sig": "0x" + address_signature(wallet.key).hex()}
        token_headers = {
            "Livepeer-Eth-Address": base64.b64encode(json.dumps(proof).encode()).decode(),
            "Livepeer-Capability": "echo",
        }
        token = paid.node.get("/process/token", headers=token_headers).json()
        assert token["price"] == {"pricePerUnit": BYOC_PRICE, "pixelsPerUnit": 1}
        params = token["ticket_params"]
        info = OrchestratorInfo(price_info=PriceInfo(pricePerUnit=BYOC_PRICE, pixelsPerUnit=1))
        info.ticket_params.CopyFrom(
            TicketParams(
                **{k: base64.b64decode(v) for k, v in params.items() if k != "expiration_params"},
            )
        )
        expiration = params["expiration_params"]
        info.ticket_params.expiration_params.creation_round = expiration.get("creation_round", 0)
        info.ticket_params.expiration_params.creation_round_block_hash = base64.b64decode(
            expiration.get("creation_round_block_hash", "")
        )
        gateway.info, gateway.session = info, gateway.sender.start_session(info)

        def job(payment: Payment) -> requests.Response:
            request, parameters = json.dumps({"n": 1}), ""
            header = {
                "request": request, "parameters": parameters, "capability": "echo", "timeout_seconds": 10,
                "sender": wallet.checksum_address,
                "sig": "0x" + sign(wallet.key, keccak((request + parameters).encode())).hex(),
            }  # fmt: skip
            headers = {
                "Livepeer": base64.b64encode(json.dumps(header).encode()).decode(),
                "Livepeer-Payment": base64.b64encode(payment.SerializeToString()).decode(),
            }
            return paid.node.post("/process/request/", json={"n": 1}, headers=headers, timeout=30)

        refused(job(gateway.payment(0)), 400, "Insufficient balance for request")
        ev = gateway.sender.expected_value(gateway.session)
        answer = job(gateway.payment(1))
        assert answer.status_code == 200, answer.text
        assert answer.json()["echo"] == {"n": 1}
        assert int(answer.headers["Livepeer-Balance"]) == int(ev - BYOC_PRICE)
        assert gateway.balance("echo") == int(ev - BYOC_PRICE)
    finally:
        container.stop()


def test_a_live_stream_payment_is_credited_and_answered_with_fresh_params(paid: Paid) -> None:
    gateway = Gateway(paid, 11)
    gateway.get_orchestrator()
    ev = gateway.sender.expected_value(gateway.session)
    headers = {
        "Livepeer-Segment": gateway.segment("a1b2c3d4"),
        "Livepeer-Payment": base64.b64encode(gateway.payment(3).SerializeToString()).decode(),
    }
    answer = paid.node.post("/payment", headers=headers)
    assert answer.status_code == 200, answer.text
    result = PaymentResult.FromString(answer.content)
    assert result.info.auth_token == gateway.info.auth_token  # new tokens come only from GetOrchestrator
    assert result.info.ticket_params.recipient == paid.chain.accounts[1].address
    assert gateway.balance("a1b2c3d4") == int(3 * ev)
    headers["Livepeer-Payment"] = "not base64!"
    refused(paid.node.post("/payment", headers=headers), 402, "Livepeer-Payment")
