"""Runner apps paid on a real EVM: anvil with the project's contracts and a stand-in ETH/USD feed, one
`lpnode orchestrator` on chain hosting static runner apps priced in USD, and tickets made by the real
`payments.sender.Sender` driven by this test (the path a remote signer takes to make them).

What a paying client sees: discovery prices in wei; 402 challenges; a metered session debited every second and
released (the runner told, the app gone) when its credit runs out; follow-up payments; a fixed price taken once
(409 on a second payment); a single-shot call cut off when its credit runs out; `/refresh-payment`.

Arbitrum's Chainlink feed cannot run here: a tiny aggregator contract answers 2,000 USD an ETH.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from lpnode.payments.chain_client import ChainClient
from lpnode.payments.chain_watcher import ChainWatcher
from lpnode.payments.devchain import DevChain, start_devchain
from lpnode.payments.keystore import Wallet
from lpnode.payments.sender import Sender, SenderSettings
from lpnode.payments.signatures import segment_message, sign
from lpnode.protocol.lp_rpc_pb2 import OrchestratorInfo, PaymentResult, SegData
from paid_nodes import ETH, chain_flags, wallet_flags
from procs import ChildProcess, OrchestratorProcess, free_port

T = TypeVar("T")
SECRET = "paid-apps-secret"
TICKET_EV = 10**12
WEI_PER_USD = Fraction(ETH, 2000)
PER_SECOND = int(Fraction(10, 3600) * WEI_PER_USD)  # 10 USD an hour: 1,388,888,888,888 wei a second
FIXED = int(Fraction(1, 1000) * WEI_PER_USD)  # 0.001 USD a call: 5e11 wei
AGGREGATOR = """
# pragma version 0.4.3
@external
@view
def decimals() -> uint8:
    return 8

@external
@view
def description() -> String[16]:
    return "ETH / USD"

@external
@view
def latestRoundData() -> (uint80, int256, uint256, uint256, uint80):
    return 1, 200000000000, 1700000000, 1700000001, 1
"""
APP = textwrap.dedent(
    """
    import asyncio, sys
    from aiohttp import web

    async def health(request):
        return web.Response(text="ok")

    async def slow(request):
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        for i in range(20):
            await response.write(f"{i}\\n".encode())
            await asyncio.sleep(0.5)
        return response

    async def echo(request):
        return web.json_response({"path": request.path, "session": request.headers.get("Livepeer-Session-Id", "")})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_route("*", "/slow", slow)
    app.router.add_route("*", "/{tail:.*}", echo)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
    """
)


class AppProcess(ChildProcess):
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (tmp / "app.py").write_text(APP)
        self.log_path = tmp / "app.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, str(tmp / "app.py"), str(self.port)], stdout=self._log, stderr=subprocess.STDOUT
        )
        until(lambda: _ok(self.url + "/health"), 30, "the app answers")


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).ok
    except requests.ConnectionError:
        return False


def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


@dataclass
class Stack:
    chain: DevChain
    loop: asyncio.AbstractEventLoop
    node: OrchestratorProcess
    view: ChainWatcher
    routes: dict[str, str]
    """Runner ID by label."""

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)


def deploy_feed(chain: DevChain) -> str:
    import vyper

    compiled = vyper.compile_code(AGGREGATOR, output_formats=["abi", "bytecode"])
    deployer = chain.accounts[0]
    w3 = chain.w3
    factory = w3.eth.contract(abi=compiled["abi"], bytecode=compiled["bytecode"])
    tx = factory.constructor().build_transaction(
        {
            "from": deployer.checksum_address,
            "nonce": w3.eth.get_transaction_count(deployer.checksum_address, "pending"),
            "chainId": chain.chain_id,
        }
    )
    signed = w3.eth.account.sign_transaction(tx, deployer.key)
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction), 30, 0.01)
    return str(receipt["contractAddress"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("paid-apps")
    loop = asyncio.new_event_loop()
    chain = loop.run_until_complete(start_devchain(round_length=50))
    app = node = None
    client: ChainClient | None = None
    view: ChainWatcher | None = None
    try:
        feed = loop.run_until_complete(asyncio.to_thread(deploy_feed, chain))
        orch = chain.accounts[1]
        loop.run_until_complete(chain.activate(orch.address))
        app = AppProcess(tmp)
        hour, fixed = {"price": 10, "unit": "hour"}, {"price": "0.001", "currency": "USD", "unit": "fixed"}
        runners = [
            {"label": "metered", "app": "demo/metered", "runner_url": app.url, "health_url": "/health",
             "capacity": 2, "price_info": hour},
            {"label": "metered-shot", "app": "demo/metered-shot", "runner_url": app.url, "health_url": "/health",
             "mode": "single-shot", "price_info": hour},
            {"label": "fixed-shot", "app": "demo/fixed-shot", "runner_url": app.url, "health_url": "/health",
             "mode": "single-shot", "capacity": 2, "price_info": fixed},
            {"label": "fixed", "app": "demo/fixed", "runner_url": app.url, "health_url": "/health",
             "price_info": fixed},
        ]  # fmt: skip
        (tmp / "runners.json").write_text(json.dumps({"runners": runners}))
        node = OrchestratorProcess(
            "", tmp / "models", tmp / "orch", *chain_flags(chain), *wallet_flags(tmp / "orch-wallet", orch.key),
            "-priceFeedAddr", feed, "-ticketEV", str(TICKET_EV), "-livePaymentInterval", "1s",
            f"-orchSecret={SECRET}", "-useLiveRunners", f"-liveRunnerConfig={tmp / 'runners.json'}", plain=True,
        )  # fmt: skip
        node.wait_ready(90)
        listed = node.admin_get("/status").json()["runner_apps"]
        routes = {r["label"]: r["route"] for r in listed}
        client = ChainClient(chain.url, chain.controller, None)
        view = ChainWatcher(client, poll_seconds=0.5)
        loop.run_until_complete(view.start())
        yield Stack(chain, loop, node, view, routes)
    finally:
        if node is not None:
            assert node.stop() == 0, node.log()
        if app is not None:
            app.stop()
        if view is not None:
            loop.run_until_complete(view.close())
        if client is not None:
            client.close()
        loop.run_until_complete(chain.close())
        loop.close()


class Payer:
    """A client paying with its own funded wallet: what a remote signer does on its behalf."""

    def __init__(self, stack: Stack, index: int) -> None:
        self.stack = stack
        account = stack.chain.accounts[index]
        self.wallet = Wallet(address=account.address, key=account.key)
        stack.run(stack.chain.fund_sender(account.key, ETH, ETH))
        self.sender = Sender(self.wallet, stack.view, SenderSettings(max_ticket_ev=Fraction(10**15)))

    @property
    def address(self) -> str:
        return self.wallet.checksum_address

    def challenge(self, url: str, method: str = "POST") -> dict[str, Any]:
        answer = requests.request(method, url, headers={"Livepeer-Payer-Address": self.address}, timeout=10)
        assert answer.status_code == 402, answer.text
        assert answer.headers["content-type"].startswith("application/json")
        document: dict[str, Any] = answer.json()
        return document

    def headers(self, params: str, manifest: str, tickets: int, price: Any = None) -> dict[str, str]:
        info = OrchestratorInfo.FromString(base64.b64decode(params))
        session = self.sender.start_session(info)
        self.stack.run(self.stack.view.refresh())
        payment = self.stack.run(self.sender.create_payment(session, tickets, price or info.price_info))
        seg = SegData(manifestId=manifest.encode())
        seg.auth_token.CopyFrom(info.auth_token)
        seg.sig = sign(self.wallet.key, segment_message(seg))
        return {
            "Livepeer-Payment": base64.b64encode(payment.SerializeToString()).decode(),
            "Livepeer-Segment": base64.b64encode(seg.SerializeToString()).decode(),
        }

    def balance(self, manifest: str) -> Fraction:
        sessions = self.stack.node.admin_get("/status").json()["payments"]["balances"]
        mine = [s for s in sessions if s["sender"] == self.address and s["manifest"] == manifest]
        return Fraction(mine[0]["balance"]) if mine else Fraction(0)


def url(stack: Stack, label: str, tail: str) -> str:
    return f"{stack.node.base_url}/apps/{stack.routes[label]}{tail}"


def used(stack: Stack, label: str) -> int:
    runners = stack.node.get("/discovery").json()[0]["runners"]
    (entry,) = [r for r in runners if f"/apps/{stack.routes[label]}/" in r["url"]]
    return int(entry["capacity_used"])


def test_discovery_prices_each_app_in_wei(stack: Stack) -> None:
    runners = {r["app"]: r for r in stack.node.get("/discovery").json()[0]["runners"]}
    assert runners["demo/metered"]["price_info"] == {"price": PER_SECOND, "currency": "wei", "unit": "seconds"}
    assert runners["demo/fixed-shot"]["price_info"] == {"price": FIXED, "currency": "wei", "unit": "fixed"}
    assert PER_SECOND == 1_388_888_888_888


def test_an_unpaid_reservation_gets_the_402_challenge(stack: Stack) -> None:
    anonymous = requests.post(url(stack, "metered", "/session"), timeout=10)
    assert anonymous.status_code == 402
    assert anonymous.json() == {"error": {"message": "invalid live runner payment signer address"}}
    payer = Payer(stack, 2)
    challenge = payer.challenge(url(stack, "metered", "/session"))
    assert set(challenge) == {"payment_params", "orchestrator", "manifest_id", "payment_url"}
    manifest = challenge["manifest_id"]
    assert len(manifest) == 8 and int(manifest, 16) >= 0
    assert challenge["orchestrator"] == stack.node.base_url
    assert challenge["payment_url"] == url(stack, "metered", f"/session/{manifest}/payment")
    info = OrchestratorInfo.FromString(base64.b64decode(challenge["payment_params"]))
    assert info.transcoder == stack.node.base_url
    assert (info.price_info.pricePerUnit, info.price_info.pixelsPerUnit) == (PER_SECOND, 1)
    assert info.auth_token.session_id == manifest and not info.HasField("capabilities")
    assert bytes(info.ticket_params.recipient) == bytes(info.address) and info.ticket_params.face_value
    bad = requests.post(
        url(stack, "metered", "/session"), headers={"Livepeer-Payment": "%%%", "Livepeer-Segment": "x"}, timeout=10
    )
    assert bad.status_code == 402 and "Livepeer-Payment" in bad.text
    assert used(stack, "metered") == 0


def test_a_metered_session_is_debited_then_released_when_its_credit_runs_out(stack: Stack) -> None:
    payer = Payer(stack, 3)
    challenge = payer.challenge(url(stack, "metered", "/session"))
    manifest = challenge["manifest_id"]
    wrong = payer.headers(challenge["payment_params"], "deadbeef", 1)
    refused = requests.post(url(stack, "metered", "/session"), headers=wrong, timeout=10)
    assert (refused.status_code, refused.text) == (403, "mismatched manifest and auth token\n")

    headers = payer.headers(challenge["payment_params"], manifest, 6)  # 6e12 wei: about 4.3 s
    reserved = requests.post(url(stack, "metered", "/session"), headers=headers, timeout=10)
    assert reserved.status_code == 200, reserved.text
    session = reserved.json()
    assert session["session_id"] == manifest
    assert payer.balance(manifest) == 6 * TICKET_EV  # credited; the first debit comes one interval later
    call = requests.get(session["app_url"] + "/hello", timeout=10)
    assert call.json() == {"path": "/hello", "session": manifest}
    # Debited a whole second at a time (a busy machine may have debited two before this looks).
    until(lambda: payer.balance(manifest) in (6 * TICKET_EV - n * PER_SECOND for n in (1, 2)), 5, "seconds debited")

    # A follow-up payment keeps it going: credited to the session's balance, answered with fresh params.
    follow = payer.headers(challenge["payment_params"], manifest, 2)
    paid = requests.post(challenge["payment_url"], headers=follow, timeout=10)
    assert paid.status_code == 200, paid.text
    result = PaymentResult.FromString(paid.content)
    assert result.info.auth_token.session_id == manifest and result.info.ticket_params.recipient_rand_hash
    other = payer.headers(challenge["payment_params"], "0badcafe", 1)
    mismatched = requests.post(challenge["payment_url"], headers=other, timeout=10)
    assert (mismatched.status_code, mismatched.text) == (403, "mismatched session and payment manifest\n")

    # 8e12 wei in all at 1.39e12 a second: released within about six seconds, and the app is gone.
    until(lambda: used(stack, "metered") == 0, 15, "the unpaid session released")
    gone = requests.get(session["app_url"] + "/hello", timeout=10)
    assert (gone.status_code, gone.text) == (404, "runner session not found\n")
    left = payer.balance(manifest)
    assert 0 <= left < PER_SECOND * 2, left  # what was left could not pay for the next interval
    unknown = requests.post(url(stack, "metered", "/session/nosuch/payment"), headers=follow, timeout=10)
    assert (unknown.status_code, unknown.text) == (404, "runner session not found\n")


def test_a_fixed_price_is_taken_once(stack: Stack) -> None:
    payer = Payer(stack, 4)
    challenge = payer.challenge(url(stack, "fixed", "/session"))
    manifest = challenge["manifest_id"]
    info = OrchestratorInfo.FromString(base64.b64decode(challenge["payment_params"]))
    cheaper = type(info.price_info)(pricePerUnit=FIXED - 1, pixelsPerUnit=1)
    mismatched = requests.post(
        url(stack, "fixed", "/session"), headers=payer.headers(challenge["payment_params"], manifest, 1, cheaper),
        timeout=10,
    )  # fmt: skip
    assert (mismatched.status_code, mismatched.text) == (400, "payment price does not match live runner price\n")
    assert used(stack, "fixed") == 0

    challenge = payer.challenge(url(stack, "fixed", "/session"))
    manifest = challenge["manifest_id"]
    reserved = requests.post(
        url(stack, "fixed", "/session"), headers=payer.headers(challenge["payment_params"], manifest, 1), timeout=10
    )
    assert reserved.status_code == 200, reserved.text
    assert payer.balance(manifest) == TICKET_EV - FIXED
    time.sleep(2.5)  # no meter: nothing more is taken
    assert payer.balance(manifest) == TICKET_EV - FIXED
    again = requests.post(
        challenge["payment_url"], headers=payer.headers(challenge["payment_params"], manifest, 1), timeout=10
    )
    assert again.status_code == 409, again.text
    assert again.text == "fixed-price live runner sessions do not accept follow-up payments\n"
    stop = requests.post(reserved.json()["control_url"] + "/stop", timeout=10)
    assert stop.status_code == 204 and used(stack, "fixed") == 0


def test_a_fixed_price_single_shot_call_is_served_once_paid(stack: Stack) -> None:
    payer = Payer(stack, 5)
    target = url(stack, "fixed-shot", "/app/v1/run")
    challenge = payer.challenge(target)
    manifest = challenge["manifest_id"]
    answer = requests.post(target, headers=payer.headers(challenge["payment_params"], manifest, 1), timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"path": "/v1/run", "session": manifest}
    assert payer.balance(manifest) == TICKET_EV - FIXED
    assert used(stack, "fixed-shot") == 0


def test_a_metered_single_shot_call_is_cut_off_when_its_credit_runs_out(stack: Stack) -> None:
    payer = Payer(stack, 6)
    target = url(stack, "metered-shot", "/app/slow")
    challenge = payer.challenge(target)
    headers = payer.headers(challenge["payment_params"], challenge["manifest_id"], 1)  # 1e12 wei: 0.72 s
    started = time.monotonic()
    lines: list[bytes] = []
    with (
        pytest.raises(requests.exceptions.ChunkedEncodingError),
        requests.post(target, headers=headers, stream=True, timeout=20) as answer,
    ):
        assert answer.status_code == 200
        for line in answer.iter_lines():
            lines.append(line)
    assert time.monotonic() - started < 5 and 0 < len(lines) < 20, lines  # the app streams for 10 s if let
    until(lambda: used(stack, "metered-shot") == 0, 3, "the call's slot freed")


def test_refresh_payment_gives_fresh_terms_for_a_paid_session(stack: Stack) -> None:
    refresh = stack.node.base_url + "/refresh-payment"
    bad = requests.post(refresh, json={"sender": "nope", "manifest_id": "x"}, timeout=10)
    assert (bad.status_code, bad.json()) == (400, {"error": {"message": "invalid sender"}})
    payer = Payer(stack, 7)
    missing = requests.post(refresh, json={"sender": payer.address}, timeout=10)
    assert (missing.status_code, missing.json()) == (400, {"error": {"message": "missing manifest_id"}})
    unknown = requests.post(refresh, json={"sender": payer.address, "manifest_id": "00000000"}, timeout=10)
    assert (unknown.status_code, unknown.json()) == (409, {"error": {"message": "fixed price not found for session"}})

    challenge = payer.challenge(url(stack, "metered", "/session"))
    manifest = challenge["manifest_id"]
    reserved = requests.post(
        url(stack, "metered", "/session"), headers=payer.headers(challenge["payment_params"], manifest, 10),
        timeout=10,
    )  # fmt: skip
    assert reserved.status_code == 200, reserved.text
    fresh = requests.post(refresh, json={"sender": payer.address, "manifest_id": manifest}, timeout=10)
    assert fresh.status_code == 200, fresh.text
    document = fresh.json()
    assert document["manifest_id"] == manifest and document["payment_url"] == stack.node.base_url + "/payment"
    info = OrchestratorInfo.FromString(base64.b64decode(document["payment_params"]))
    assert info.auth_token.session_id == manifest and (info.price_info.pricePerUnit, info.price_info.pixelsPerUnit) == (
        PER_SECOND,
        1,
    )
    # The fresh terms pay the session at its own payment URL.
    paid = requests.post(
        challenge["payment_url"], headers=payer.headers(document["payment_params"], manifest, 1), timeout=10
    )
    assert paid.status_code == 200, paid.text
    requests.post(reserved.json()["control_url"] + "/stop", timeout=10)
