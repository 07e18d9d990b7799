"""`lpnode signer` as a black box over HTTP: real signer processes paying from a funded wallet on anvil (the
project's contracts), a real on-chain `lpnode orchestrator` whose `GetOrchestrator` answer (requested with the
signer's own address signature) the payments are made against, and an auth webhook served by this test.

The orchestrator takes the signer's tickets (`POST /payment`), credits their EV to the signer's address, and
redeems a winning one on chain. Every refusal of the remote-signer contract (research remote-signer.md §5, §7, §8,
§14) is checked by status and go-livepeer's words. Requests built here from the orchestrator's real info, altered
(an older auth token, a higher price, ...), are what a misbehaving or stale client would send.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from lpclient import get_orchestrator
from lpnode.payments.devchain import DevChain, start_devchain
from lpnode.payments.signatures import sign
from lpnode.payments.ticket import MAX_WIN_PROB
from lpnode.protocol.capabilities import Capability, capability_bitstring
from lpnode.protocol.lp_rpc_pb2 import Capabilities, OrchestratorInfo, OrchestratorRequest, Payment, PaymentResult
from lpnode.protocol.remote_signer import OrchestratorInfoSignature, SignedState
from lpnode.signer.state import parse_time
from paid_nodes import ETH, chain_flags, wallet_flags
from procs import LPNODE, ChildProcess, OrchestratorProcess, child_env, free_port, run_cli

T2I = "lpnode/tiny-text-to-image"
PRICE = 1000  # wei per pixel
TICKET_EV = 1_000_000  # wei: the orchestrator's -ticketEV
MAX_PRICE = 5000  # signer A's -maxPricePerUnit
CAP_MAX_LOW, CAP_MAX_HIGH = 200, 50_000  # signer A's -maxPricePerCapability for two text-to-image models
GUARDED_MAX = 20_000  # the guarded signer's -maxPricePerUnit
CAPABILITY_PRICES = {"capabilities_prices": [
    {"pipeline": "text-to-image", "model_id": "capped-low", "price_per_unit": CAP_MAX_LOW, "pixels_per_unit": 1},
    {"pipeline": "text-to-image", "model_id": "capped-high", "price_per_unit": CAP_MAX_HIGH, "pixels_per_unit": 1},
]}  # fmt: skip


class SignerProcess(ChildProcess):
    """An `lpnode signer` on a free loopback port."""

    def __init__(self, directory: Path, *flags: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = directory / "signer.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*LPNODE, "signer", "-httpAddr", f"127.0.0.1:{self.port}", "-dataDir", str(directory), *flags],
            stdout=self._log, stderr=subprocess.STDOUT, env=child_env(),
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            try:
                if requests.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise AssertionError(self.log())

    def pay(self, body: dict[str, Any], **headers: str) -> requests.Response:
        return requests.post(self.url + "/generate-live-payment", json=body, headers=headers, timeout=30)


class Webhook:
    """An auth webhook: answers ``answers[case]`` for a request whose client sent ``X-Case: case``."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.answers: dict[str, Any] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                body["received_headers"] = dict(self.headers.items())
                outer.calls.append(body)
                case = body["headers"].get("X-Case", [""])[0]
                answer = outer.answers.get(case, {"status": 200})
                status, payload = answer if isinstance(answer, tuple) else (200, answer)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/auth"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def for_case(self, case: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["headers"].get("X-Case", [""])[0] == case]


@dataclass
class Stack:
    chain: DevChain
    loop: asyncio.AbstractEventLoop
    orchestrator: OrchestratorProcess
    signer: SignerProcess
    """No webhook, -maxPricePerUnit 5000 (per-capability maximums for two models), -remoteDiscovery of the
    orchestrator."""
    guarded: SignerProcess
    """With the auth webhook and -maxPricePerUnit 20000."""
    webhook: Webhook
    signer_key: bytes
    address: str
    info_sig: OrchestratorInfoSignature
    infos: dict[str, OrchestratorInfo] = field(default_factory=dict)

    def info(self) -> OrchestratorInfo:
        """The orchestrator's terms for the signer (a real GetOrchestrator with the signer's signature)."""
        request = OrchestratorRequest(
            address=self.info_sig.address_bytes, sig=self.info_sig.signature_bytes, capabilities=t2i_caps()
        )
        return get_orchestrator(self.orchestrator.base_url, None, request)


def t2i_caps(model: str = T2I) -> Capabilities:
    cap = int(Capability.TEXT_TO_IMAGE)
    caps = Capabilities(bitstring=capability_bitstring([cap]))
    caps.capacities[cap] = 1
    caps.constraints.PerCapability[cap].models[model].warm = False
    return caps


def ev_of(info: OrchestratorInfo) -> Fraction:
    """The EV of one ticket of ``info``'s params (a little over -ticketEV: the win probability rounds up)."""
    params = info.ticket_params
    return Fraction(int.from_bytes(params.face_value, "big") * int.from_bytes(params.win_prob, "big"), MAX_WIN_PROB)


def tickets_in(answer: requests.Response) -> int:
    return len(Payment.FromString(base64.b64decode(answer.json()["payment"])).ticket_sender_params)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def body(info: OrchestratorInfo, **fields: Any) -> dict[str, Any]:
    return {"orchestrator": b64(info.SerializeToString()), **fields}


def decoded_state(answer: requests.Response) -> dict[str, Any]:
    state = SignedState.from_json(answer.json()["state"])
    assert state is not None
    parsed: dict[str, Any] = json.loads(state.state)
    return parsed


def refused(answer: requests.Response, status: int, words: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json"), answer.headers
    assert words in answer.json()["error"]["message"], answer.text


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("signer")
    loop = asyncio.new_event_loop()
    chain = loop.run_until_complete(start_devchain(round_length=500, base_fee=0))  # no gas: small face values
    procs: list[ChildProcess] = []
    webhook = Webhook()
    try:
        orch_account, signer_account = chain.accounts[1], chain.accounts[2]
        loop.run_until_complete(chain.activate(orch_account.address))
        loop.run_until_complete(chain.fund_sender(signer_account.key, ETH, ETH))
        models = [{"pipeline": "text-to-image", "model_id": T2I, "warm": False, "price_per_unit": PRICE}]
        (tmp / "aiModels.json").write_text(json.dumps(models))
        flags = chain_flags(chain)
        orchestrator = OrchestratorProcess(
            tmp / "aiModels.json", tmp / "models", tmp / "orchestrator", *flags,
            *wallet_flags(tmp / "orch-wallet", orch_account.key),
            "-ticketEV", str(TICKET_EV), "-maxFaceValue", str(2 * TICKET_EV), plain=True,
        )  # fmt: skip
        procs.append(orchestrator)
        orchestrator.wait_ready()
        wallet = wallet_flags(tmp / "signer-wallet", signer_account.key)
        signer = SignerProcess(
            tmp / "signer-a", *flags, *wallet, "-maxPricePerUnit", str(MAX_PRICE), "-remoteDiscovery",
            "-orchAddr", orchestrator.base_url, "-maxPricePerCapability", json.dumps(CAPABILITY_PRICES),
        )  # fmt: skip
        procs.append(signer)
        guarded = SignerProcess(
            tmp / "signer-b", *flags, *wallet, "-remoteSignerWebhookUrl", webhook.url,
            "-remoteSignerWebhookHeaders", "Authorization: Bearer hook-secret, X-Signer: b",
            "-maxPricePerUnit", str(GUARDED_MAX),
        )  # fmt: skip
        procs.append(guarded)
        info_sig = OrchestratorInfoSignature.from_json(
            requests.post(signer.url + "/sign-orchestrator-info", json={}, timeout=10).json()
        )
        yield Stack(chain, loop, orchestrator, signer, guarded, webhook, signer_account.key,
                    signer_account.checksum_address, info_sig)  # fmt: skip
    finally:
        for proc in reversed(procs):
            assert proc.stop() == 0, proc.log()
        webhook.server.shutdown()
        webhook.server.server_close()
        loop.run_until_complete(chain.close())
        loop.close()
    for proc in procs:  # no key in any log
        assert signer_account.key.hex() not in proc.log().lower()


# --- the signer's identity ------------------------------------------------------------------------------------


def test_sign_orchestrator_info_gives_the_signers_address_and_signature_the_orchestrator_accepts(stack: Stack) -> None:
    assert stack.info_sig.address == stack.address  # EIP-55
    assert stack.info_sig.signature.startswith("0x") and len(stack.info_sig.signature_bytes) == 65
    bare = requests.post(stack.signer.url + "/sign-orchestrator-info", timeout=10)  # go's gateway sends no body
    assert bare.json() == stack.info_sig.to_json()
    info = stack.info()  # the orchestrator checked the signature on chain
    assert info.ticket_params.recipient == stack.chain.accounts[1].address
    assert requests.get(stack.signer.url + "/healthz", timeout=5).content == b""
    assert requests.get(stack.signer.url + "/sign-orchestrator-info", timeout=5).status_code == 405
    missing = requests.get(stack.signer.url + "/nothing", timeout=5)
    assert (missing.status_code, missing.text) == (404, "404 page not found\n")


# --- payments the orchestrator takes ----------------------------------------------------------------------------


def test_tickets_are_credited_by_the_orchestrator_and_a_winner_is_redeemed_on_chain(stack: Stack) -> None:
    info = stack.info()
    fee_pixels = 10 * TICKET_EV // PRICE  # exactly 10 tickets' worth
    answer = stack.signer.pay(body(info, inPixels=fee_pixels, ManifestID="paid-1"))
    assert answer.status_code == 200, answer.text
    payment = Payment.FromString(base64.b64decode(answer.json()["payment"]))
    assert len(payment.ticket_sender_params) == 10
    assert [t.sender_nonce for t in payment.ticket_sender_params] == list(range(1, 11))
    ev = ev_of(info)
    assert Fraction(decoded_state(answer)["Balance"]) == 10 * ev - 10 * TICKET_EV
    credited = stack.orchestrator.post(
        "/payment",
        headers={"Livepeer-Payment": answer.json()["payment"], "Livepeer-Segment": answer.json()["segCreds"]},
    )
    assert credited.status_code == 200, credited.text
    assert PaymentResult.FromString(credited.content).info.ticket_params.recipient
    status = stack.orchestrator.admin_get("/status").json()["payments"]
    mine = [b for b in status["balances"] if b["sender"] == stack.address and b["manifest"] == "paid-1"]
    assert mine and int(mine[0]["balance"]) == int(10 * ev)
    # Each ticket wins with probability 1/2: the orchestrator redeems the winners on chain.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        tickets = stack.orchestrator.admin_get("/status").json()["payments"]["tickets"]
        if tickets["redeemed"] >= 1:
            break
        time.sleep(0.5)
    assert tickets["redeemed"] >= 1 and tickets["failed"] == 0, tickets
    metrics = requests.get(stack.signer.url + "/metrics", timeout=5).text
    assert 'lpnode_signer_payments_total{status="200"}' in metrics and "lpnode_signer_tickets_total" in metrics


def test_fixed_pays_one_unit_and_the_state_carries_the_nonce_on(stack: Stack) -> None:
    info = stack.info()
    first = stack.signer.pay(body(info, type="fixed", inPixels=999_999))
    assert first.status_code == 200, first.text
    state = decoded_state(first)
    assert state["SequenceNumber"] == 0 and state["Type"] == "fixed" and state["SenderNonce"] == 1
    ev = ev_of(info)
    assert Fraction(state["Balance"]) == ev - PRICE  # one unit at the price, not inPixels
    assert set(state) == {"StateID", "PMSessionID", "LastUpdate", "OrchestratorAddress", "App", "AuthExpiry",
                          "SenderNonce", "Balance", "InitialPricePerUnit", "InitialPixelsPerUnit", "Type",
                          "SequenceNumber", "AuthID"}  # fmt: skip
    again = stack.signer.pay(body(info, type="fixed", state=first.json()["state"], ManifestID="fixed-1"))
    assert again.status_code == 200, again.text
    nxt = decoded_state(again)
    assert nxt["SequenceNumber"] == 1 and nxt["StateID"] == state["StateID"]
    assert Fraction(nxt["Balance"]) == Fraction(state["Balance"]) + ev - PRICE  # the credit was below one EV
    payment = Payment.FromString(base64.b64decode(again.json()["payment"]))
    assert [t.sender_nonce for t in payment.ticket_sender_params] == [2]
    # Now the credit (about 2 EV) covers a call: nothing is due, and no state comes back (keep the old one).
    due = stack.signer.pay(body(info, type="fixed", state=again.json()["state"], ManifestID="fixed-1"))
    refused(due, 482, "no tickets")
    assert "state" not in due.json()


def test_fixed_leaves_no_credit_when_one_ticket_is_worth_the_price(stack: Stack) -> None:
    info = stack.info()
    # Tickets worth exactly the price: 5 × the price, winning 1 time in 5 (5 divides 2²⁵⁶ − 1, so the EV is whole).
    # Not redeemable (the orchestrator made other params), and not sent to it.
    assert MAX_WIN_PROB % 5 == 0
    info.ticket_params.face_value = (5 * PRICE).to_bytes(2, "big")
    info.ticket_params.win_prob = (MAX_WIN_PROB // 5).to_bytes(32, "big")
    answer = stack.signer.pay(body(info, type="fixed"))
    assert answer.status_code == 200, answer.text
    assert tickets_in(answer) == 1 and decoded_state(answer)["Balance"] == "0"


def test_a_fractional_price_is_billed_exactly_at_the_initial_price(stack: Stack) -> None:
    info = stack.info()
    info.price_info.pricePerUnit, info.price_info.pixelsPerUnit = 150, 175  # 6/7 wei a pixel
    ev = ev_of(info)
    first = stack.signer.pay(body(info, inPixels=1000, ManifestID="fraction"))
    assert first.status_code == 200, first.text
    answer = first.json()
    assert answer["payment"] and answer["segCreds"] and answer["state"]["State"] and answer["state"]["Sig"]
    state = decoded_state(first)
    assert state["SequenceNumber"] == 0
    assert Fraction(state["Balance"]) == tickets_in(first) * ev - Fraction(6000, 7)
    assert "/" in state["Balance"] and "." not in state["Balance"]  # an exact fraction, never rounded
    lower = OrchestratorInfo()
    lower.CopyFrom(info)
    lower.price_info.pricePerUnit = 100
    again = stack.signer.pay(body(lower, inPixels=2500, ManifestID="fraction", state=answer["state"]))
    assert again.status_code == 200, again.text
    nxt = decoded_state(again)
    assert nxt["SequenceNumber"] == 1
    assert Fraction(nxt["Balance"]) == Fraction(state["Balance"]) + tickets_in(again) * ev - Fraction(15000, 7)
    expected = Payment.FromString(base64.b64decode(again.json()["payment"])).expected_price
    assert (expected.pricePerUnit, expected.pixelsPerUnit) == (100, 175)


def test_live_bills_ten_seconds_first_then_the_seconds_elapsed(stack: Stack) -> None:
    info = stack.info()
    info.price_info.pricePerUnit, info.price_info.pixelsPerUnit = 3000, 1  # wei per second
    ev = ev_of(info)
    before = time.time_ns()
    first = stack.signer.pay(body(info, type="live", app="my-app"))
    after = time.time_ns()
    assert first.status_code == 200, first.text
    state = decoded_state(first)
    assert Fraction(state["Balance"]) == ev - 10 * 3000 and state["App"] == "my-app"
    assert before <= parse_time(state["LastUpdate"]) <= after  # the time it billed
    time.sleep(1.2)
    before = time.time_ns()
    again = stack.signer.pay(body(info, type="live", app="my-app", ManifestID="m", state=first.json()["state"]))
    after = time.time_ns()
    assert again.status_code == 200, again.text
    billed = (Fraction(state["Balance"]) + tickets_in(again) * ev - Fraction(decoded_state(again)["Balance"])) / 3000
    assert billed == 2  # 1.2 s, rounded up to whole seconds
    assert before <= parse_time(decoded_state(again)["LastUpdate"]) <= after


def test_the_fee_stays_at_the_initial_price_when_the_orchestrator_lowers_it(stack: Stack) -> None:
    info = stack.info()
    ev = ev_of(info)
    first = stack.signer.pay(body(info, inPixels=2000))  # 2,000 pixels at 1,000 wei: about 2 EV
    assert first.status_code == 200, first.text
    lower = OrchestratorInfo()
    lower.CopyFrom(info)
    lower.price_info.pricePerUnit = PRICE // 2
    again = stack.signer.pay(body(lower, inPixels=2000, ManifestID="m", state=first.json()["state"]))
    assert again.status_code == 200, again.text
    fee = Fraction(decoded_state(first)["Balance"]) + tickets_in(again) * ev - Fraction(decoded_state(again)["Balance"])
    assert fee == 2000 * PRICE
    expected = Payment.FromString(base64.b64decode(again.json()["payment"])).expected_price
    assert (expected.pricePerUnit, expected.pixelsPerUnit) == (PRICE // 2, 1)


def test_lv2v_opens_with_sixty_seconds_of_720p30(stack: Stack) -> None:
    info = stack.info()
    info.price_info.pricePerUnit, info.price_info.pixelsPerUnit = 1, 1000  # 27,648 wei a second
    answer = stack.signer.pay(body(info, type="lv2v"))
    assert answer.status_code == 200, answer.text
    tickets, ev = tickets_in(answer), ev_of(info)
    fee = Fraction(60 * 1280 * 720 * 30, 1000)
    assert tickets == -(-fee // ev)
    assert Fraction(decoded_state(answer)["Balance"]) == tickets * ev - fee


# --- refusals ---------------------------------------------------------------------------------------------------


def test_a_forged_or_foreign_state_is_refused(stack: Stack) -> None:
    info = stack.info()
    first = stack.signer.pay(body(info, type="fixed", app="a"))
    assert first.status_code == 200
    signed = SignedState.from_json(first.json()["state"])
    assert signed is not None
    forged = json.loads(signed.state)
    forged["Balance"] = "1000000000000"
    tampered = SignedState(json.dumps(forged).encode(), signed.sig).to_json()
    refused(stack.signer.pay(body(info, type="fixed", app="a", ManifestID="x", state=tampered)), 400, "invalid sig")
    state = first.json()["state"]
    refused(stack.signer.pay(body(info, type="fixed", app="a", state=state)), 400, "missing manifestID")
    refused(stack.signer.pay(body(info, type="fixed", app="b", ManifestID="x", state=state)), 400, "app mismatch")
    refused(stack.signer.pay(body(info, type="live", app="a", ManifestID="x", state=state)), 400, "job type mismatch")
    other = OrchestratorInfo()
    other.CopyFrom(info)
    other.address = bytes(20)
    refused(stack.signer.pay(body(other, type="fixed", app="a", ManifestID="x", state=state)), 400,
            "orchestratorAddress mismatch")  # fmt: skip
    # A replica with the same key takes the state (the webhook signer holds the same wallet).
    replica = stack.guarded.pay(body(info, type="fixed", app="a", ManifestID="x", state=state))
    assert replica.status_code == 200, replica.text
    assert decoded_state(replica)["SequenceNumber"] == 1


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ("token", 480, "refresh session for remote signer"),
        ("params", 480, "refresh session for remote signer"),
        ("no-token", 400, "remote signer could not check whether to refresh session: missing auth token"),
        ("no-price", 400, "missing or zero priceInfo"),
        ("zero-price", 400, "missing or zero priceInfo"),
        ("zero-pixels", 400, "missing or zero priceInfo"),
        ("no-params", 400, "missing ticketParams in OrchestratorInfo"),
        ("huge-ev", 400, "remote signer could not check whether to refresh session: ticket EV"),
    ],
)
def test_stale_or_incomplete_orchestrator_info_is_refused(stack: Stack, change: str, status: int, words: str) -> None:
    info = stack.info()
    if change == "token":
        info.auth_token.expiration = int(time.time()) + 60  # in its last 10 %
    elif change == "params":
        info.ticket_params.expiration_block = (1).to_bytes(1, "big")
    elif change == "no-token":
        info.ClearField("auth_token")
    elif change == "no-price":
        info.ClearField("price_info")
    elif change == "zero-price":
        info.price_info.pricePerUnit = 0
    elif change == "zero-pixels":
        info.price_info.pixelsPerUnit = 0
    elif change == "no-params":
        info.ClearField("ticket_params")
    elif change == "huge-ev":
        info.ticket_params.face_value = (10**16).to_bytes(8, "big")
        info.ticket_params.win_prob = (MAX_WIN_PROB // 2).to_bytes(32, "big")
    answer = stack.signer.pay(body(info, inPixels=100))
    refused(answer, status, words)
    if status == 480:
        assert answer.headers["Livepeer-Orchestrator-URL"] == info.transcoder


@pytest.mark.parametrize(
    ("fields", "status", "words"),
    [
        ({"type": "bogus"}, 400, "invalid job type"),
        ({"inPixels": 0}, 400, "missing billable unit or job type"),
        ({"inPixels": 101 * TICKET_EV // PRICE}, 400, "numTickets 101 exceeds maximum of 100"),
        ({"inPixels": 1, "capabilities": b64(b"\xff\xff\xff")}, 400, "cannot parse invalid wire-format data"),
        ({"type": "fixed", "maxPrice": {"price": 999, "currency": "wei", "unit": "fixed"}}, 481,
         "orchestrator price 1000.000 exceeds request maxPrice ceiling 999.000"),
        ({"type": "fixed", "maxPrice": {"price": "1000", "currency": " WEI ", "unit": "fixed"}}, 200, ""),
        ({"inPixels": 1, "maxPrice": {"price": 2000, "currency": "wei", "unit": "fixed"}}, 400,
         "maxPrice requires payment type live, lv2v, or fixed"),
        ({"type": "fixed", "maxPrice": {"price": 2000, "currency": "usd", "unit": "fixed"}}, 400,
         "maxPrice.currency must be wei"),
        ({"type": "live", "maxPrice": {"price": 2000, "currency": "wei", "unit": "fixed"}}, 400,
         "maxPrice.unit must be seconds for payment type live"),
        ({"type": "fixed", "maxPrice": {"price": "wat", "currency": "wei", "unit": "fixed"}}, 400,
         "maxPrice.price must be a positive decimal"),
        ({"type": "fixed", "maxPrice": {"price": -1, "currency": "wei", "unit": "fixed"}}, 400,
         "maxPrice.price must be a positive decimal"),
        ({"type": "fixed", "maxPrice": {"price": 0, "currency": "wei", "unit": "fixed"}}, 400,
         "maxPrice.price must be a positive decimal"),
        ({"type": "fixed", "maxPrice": {"price": 1, "unit": "fixed"}}, 400, "maxPrice.currency must be wei"),
    ],
)  # fmt: skip
def test_request_checks_and_ceilings(stack: Stack, fields: dict[str, Any], status: int, words: str) -> None:
    answer = stack.signer.pay(body(stack.info(), **fields))
    if status == 200:
        assert answer.status_code == 200, answer.text
    else:
        refused(answer, status, words)


def test_a_decimal_max_price_is_compared_exactly(stack: Stack) -> None:
    info = stack.info()
    info.price_info.pricePerUnit, info.price_info.pixelsPerUnit = 506, 5  # 101.2 wei a second
    ceiling = {"price": 101.2, "currency": "wei", "unit": "seconds"}
    at = stack.signer.pay(body(info, type="live", maxPrice=ceiling))
    assert at.status_code == 200, at.text  # 101.2 is 506/5 exactly, and equality passes
    info.price_info.pricePerUnit = 507
    refused(stack.signer.pay(body(info, type="live", maxPrice=ceiling)), 481,
            "orchestrator price 101.400 exceeds request maxPrice ceiling 101.200")  # fmt: skip


def test_per_capability_maximums_apply_to_the_models_they_name(stack: Stack) -> None:
    info = stack.info()
    info.price_info.pricePerUnit = 300  # within the global 5,000, above capped-low's 200
    low = b64(t2i_caps("capped-low").SerializeToString())
    refused(stack.signer.pay(body(info, type="fixed", capabilities=low)), 481,
            "orchestrator price 300.000 exceeds configured maximum price ceiling 200.000")  # fmt: skip
    info.price_info.pricePerUnit = MAX_PRICE + 1000  # above the global maximum, within capped-high's 50,000
    high = b64(t2i_caps("capped-high").SerializeToString())
    answer = stack.signer.pay(body(info, type="fixed", capabilities=high))
    assert answer.status_code == 200, answer.text
    other = b64(t2i_caps().SerializeToString())  # a model with no maximum of its own: the global one
    for fields in ({}, {"capabilities": other}):
        refused(stack.signer.pay(body(info, type="fixed", **fields)), 481,
                "orchestrator price 6000.000 exceeds configured maximum price ceiling 5000.000")  # fmt: skip


def test_a_state_signed_by_the_signer_must_still_be_a_state(stack: Stack) -> None:
    info = stack.info()
    junk = SignedState(b"not-json", sign(stack.signer_key, b"not-json")).to_json()
    refused(stack.signer.pay(body(info, inPixels=100, ManifestID="m", state=junk)), 400, "invalid state")
    bad_sig = {"State": b64(b'{"StateID":"state"}'), "Sig": b64(b"bad")}
    refused(stack.signer.pay(body(info, inPixels=100, ManifestID="m", state=bad_sig)), 400, "invalid sig")


def test_malformed_bodies_are_refused_with_gos_words(stack: Stack) -> None:
    url = stack.signer.url + "/generate-live-payment"
    refused(requests.post(url, data=b"{nope", timeout=10), 400, "invalid character")
    refused(requests.post(url, json={}, timeout=10), 400, "missing orchestrator")
    refused(requests.post(url, json={"orchestrator": b64(b"\xff\xfe not protobuf")}, timeout=10), 400, "proto:")
    refused(requests.post(url, json={"orchestrator": "%%%"}, timeout=10), 400, "illegal base64 data")


def test_the_configured_and_initial_price_ceilings_refuse_with_481(stack: Stack) -> None:
    info = stack.info()
    info.price_info.pricePerUnit = MAX_PRICE + 1
    refused(stack.signer.pay(body(info, type="fixed")), 481,
            "orchestrator price 5001.000 exceeds configured maximum price ceiling 5000.000")  # fmt: skip
    info.price_info.pricePerUnit = 100
    first = stack.signer.pay(body(info, type="fixed"))
    assert first.status_code == 200, first.text
    info.price_info.pricePerUnit = 150  # the session started at 100
    refused(stack.signer.pay(body(info, type="fixed", ManifestID="m", state=first.json()["state"])), 481,
            "orchestrator price 150.000 exceeds initial session price ceiling 100.000")  # fmt: skip
    # The guarded signer's maximum is higher: the same price passes there, and so does a price equal to it.
    info.price_info.pricePerUnit = MAX_PRICE + 1
    assert stack.guarded.pay(body(info, type="fixed")).status_code == 200
    info.price_info.pricePerUnit = GUARDED_MAX
    assert stack.guarded.pay(body(info, type="fixed")).status_code == 200


# --- the auth webhook -------------------------------------------------------------------------------------------


def test_the_webhook_sees_each_payment_and_may_refuse_it(stack: Stack) -> None:
    hook, info = stack.webhook, stack.info()
    ok = stack.guarded.pay(body(info, type="fixed", app="a"), **{"X-Case": "ok", "X-Request-Id": "r1"})
    assert ok.status_code == 200, ok.text
    (call,) = hook.for_case("ok")
    assert call["headers"]["X-Request-Id"] == ["r1"]
    assert call["received_headers"]["Authorization"] == "Bearer hook-secret"
    assert call["received_headers"]["X-Signer"] == "b"
    assert call["received_headers"]["Content-Type"] == "application/json"
    assert call["state"]["App"] == "a" and call["state"]["PMSessionID"].startswith("0x")
    hook.answers.update({
        "deny": {"status": 403, "reason": "denied"},
        "busy": {"status": 429},
        "broken": (401, {"status": 200}),
        "no-status": {"reason": "?"},
        "cheap": {"status": 200, "maxPrice": {"price": "0.5", "currency": "wei", "unit": "fixed"}},
        "usd": {"status": 200, "maxPrice": {"price": 1, "currency": "usd", "unit": "fixed"}},
    })  # fmt: skip
    refused(stack.guarded.pay(body(info, type="fixed"), **{"X-Case": "deny"}), 403, "denied")
    refused(stack.guarded.pay(body(info, type="fixed"), **{"X-Case": "busy"}), 429,
            "signer auth rejected request with status 429")  # fmt: skip
    refused(stack.guarded.pay(body(info, type="fixed"), **{"X-Case": "broken"}), 500, "Internal Server Error")
    refused(stack.guarded.pay(body(info, type="fixed"), **{"X-Case": "no-status"}), 500, "Internal Server Error")
    refused(stack.guarded.pay(body(info, type="fixed"), **{"X-Case": "cheap"}), 481,
            "orchestrator price 1000.000 exceeds auth webhook maxPrice ceiling 0.500")  # fmt: skip
    refused(stack.guarded.pay(body(info, type="fixed"), **{"X-Case": "usd"}), 502,
            "signer auth invalid maxPrice: maxPrice.currency must be wei")  # fmt: skip
    # A request ceiling below the price refuses before the webhook is asked.
    before = len(hook.calls)
    low = {"price": 1, "currency": "wei", "unit": "fixed"}
    refused(stack.guarded.pay(body(info, type="fixed", maxPrice=low), **{"X-Case": "ok"}), 481, "request maxPrice")
    assert len(hook.calls) == before


def test_a_cached_authorization_skips_the_webhook_and_pins_the_auth_id(stack: Stack) -> None:
    hook, info = stack.webhook, stack.info()
    hook.answers["cached"] = {"status": 200, "expiry": int(time.time()) + 600, "auth_id": "user-1"}
    first = stack.guarded.pay(body(info, inPixels=2000), **{"X-Case": "cached"})  # every call needs tickets
    assert first.status_code == 200, first.text
    state = decoded_state(first)
    assert state["AuthID"] == "user-1" and state["AuthExpiry"] > time.time()
    again = stack.guarded.pay(body(info, inPixels=2000, ManifestID="m", state=first.json()["state"]),
                              **{"X-Case": "cached", "Signer-Auth-Id": "user-1"})  # fmt: skip
    assert again.status_code == 200, again.text
    assert len(hook.for_case("cached")) == 1  # the second call was authorised by the state
    other = stack.guarded.pay(body(info, inPixels=2000, ManifestID="m", state=again.json()["state"]),
                              **{"X-Case": "cached", "Signer-Auth-Id": "someone-else"})  # fmt: skip
    refused(other, 500, "Internal Server Error")
    hook.answers["expired"] = {"status": 200, "expiry": int(time.time()) - 1}
    past = stack.guarded.pay(body(info, inPixels=2000), **{"X-Case": "expired"})
    stack.guarded.pay(body(info, inPixels=2000, ManifestID="m", state=past.json()["state"]), **{"X-Case": "expired"})
    assert len(hook.for_case("expired")) == 2


def test_the_auth_id_and_the_webhook_ceiling_among_the_others(stack: Stack) -> None:
    hook, info = stack.webhook, stack.info()
    fixed = {"currency": "wei", "unit": "fixed"}
    hook.answers.update({
        "plain": {"status": 200},
        "named": {"status": 200, "auth_id": "from-webhook"},
        "renamed": {"status": 200, "auth_id": "someone-else"},
        "at-price": {"status": 200, "maxPrice": {"price": PRICE, **fixed}},
        "below-request": {"status": 200, "maxPrice": {"price": 500, **fixed}},
        "generous": {"status": 200, "maxPrice": {"price": 10**9, **fixed}},
    })  # fmt: skip
    # The client's Signer-Auth-Id is pinned when the webhook names no one; the webhook's own id wins over it.
    fallback = stack.guarded.pay(body(info, type="fixed"), **{"X-Case": "plain", "Signer-Auth-Id": "from-header"})
    assert fallback.status_code == 200, fallback.text
    assert decoded_state(fallback)["AuthID"] == "from-header"
    named = stack.guarded.pay(body(info, type="fixed"), **{"X-Case": "named", "Signer-Auth-Id": "from-header"})
    assert named.status_code == 200, named.text
    assert decoded_state(named)["AuthID"] == "from-webhook"
    # The webhook naming someone else for a state pinned to another id: the signer fails closed.
    renamed = stack.guarded.pay(body(info, type="fixed", ManifestID="m", state=named.json()["state"]),
                                **{"X-Case": "renamed"})  # fmt: skip
    refused(renamed, 500, "Internal Server Error")

    # The webhook's ceiling: equality passes, and it refuses when it is the lowest.
    assert stack.guarded.pay(body(info, type="fixed"), **{"X-Case": "at-price"}).status_code == 200
    request_max = {"price": 2000, **fixed}
    refused(stack.guarded.pay(body(info, type="fixed", maxPrice=request_max), **{"X-Case": "below-request"}), 481,
            "orchestrator price 1000.000 exceeds auth webhook maxPrice ceiling 500.000")  # fmt: skip
    # The configured and the initial price refuse when they are the lowest, before the webhook is asked.
    asked = len(hook.calls)
    dear = OrchestratorInfo()
    dear.CopyFrom(info)
    dear.price_info.pricePerUnit = GUARDED_MAX + 1
    refused(stack.guarded.pay(body(dear, type="fixed"), **{"X-Case": "generous"}), 481,
            "orchestrator price 20001.000 exceeds configured maximum price ceiling 20000.000")  # fmt: skip
    dear.price_info.pricePerUnit = 100
    opened = stack.guarded.pay(body(dear, type="fixed"), **{"X-Case": "generous"})
    assert opened.status_code == 200, opened.text
    dear.price_info.pricePerUnit = 150
    refused(stack.guarded.pay(body(dear, type="fixed", ManifestID="m", state=opened.json()["state"]),
                              **{"X-Case": "generous"}), 481,
            "orchestrator price 150.000 exceeds initial session price ceiling 100.000")  # fmt: skip
    assert len(hook.calls) == asked + 1  # only the opening payment was put to the webhook


# --- discovery ----------------------------------------------------------------------------------------------------


def test_discovery_lists_the_orchestrator_within_the_price_ceiling(stack: Stack) -> None:
    answer = requests.get(stack.signer.url + "/discover-orchestrators", timeout=30)
    assert answer.status_code == 200, answer.text
    (entry,) = answer.json()
    assert entry["address"] == stack.orchestrator.base_url and entry["score"] == 1
    assert f"text-to-image/{T2I}" in entry["capabilities"]
    assert set(entry) <= {"address", "score", "capabilities", "runners"}
    cap = f"text-to-image/{T2I}"
    filtered = requests.get(stack.signer.url + "/discover-orchestrators", params={"caps": ["x", cap]}, timeout=30)
    assert len(filtered.json()) == 1
    none = requests.get(stack.signer.url + "/discover-orchestrators", params={"caps": "x"}, timeout=30)
    assert none.json() == []
    # Without -remoteDiscovery the route does not exist.
    assert requests.get(stack.guarded.url + "/discover-orchestrators", timeout=10).status_code == 404


# --- start-up -----------------------------------------------------------------------------------------------------


def test_start_up_refusals(stack: Stack, tmp_path: Path) -> None:
    flags = [*chain_flags(stack.chain), "-dataDir", str(tmp_path)]
    public = run_cli("signer", *flags, "-httpAddr", f"0.0.0.0:{free_port()}")
    assert public.returncode == 2
    assert "Refusing to start: remote signer on public -httpAddr" in public.stderr
    assert "Traceback" not in public.stderr + public.stdout
    offchain = run_cli("livepeer", "-remoteSigner", "-network", "offchain")
    assert offchain.returncode == 2, offchain.stderr
    assert "Remote signer mode requires on-chain network" in offchain.stderr
    discovery = run_cli("signer", *flags, "-remoteDiscovery")
    assert "RemoteDiscovery is set but no orchestrator pool could be configured" in discovery.stderr
