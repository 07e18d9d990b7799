"""The ``livepeer-gateway`` SDK 1.0 (its own Python >= 3.12 venv) and ``lpnode gateway -remoteSignerUrl`` paying an
on-chain ``lpnode orchestrator`` through one ``lpnode signer``, and every party's figures agreeing afterwards.

Real processes on loopback: anvil with the project's contracts and a stand-in ETH/USD feed (Arbitrum's Chainlink
feed cannot run here), an orchestrator over TLS (the SDK's ``GetOrchestrator`` is gRPC over TLS) with a warm live
``noop`` pipeline priced per pixel, a metered runner app priced per hour, and a tiny text-to-image runner
registered as a single-shot app at a fixed price; a signer holding the payer's deposit; a gateway holding no key.

What a user sees:
- the SDK's ``start_lv2v`` starts a live stream paid through the signer and keeps paying while frames flow;
- the SDK's ``reserve_session`` keeps a metered session (debited every second) paid past its opening credit;
- ``POST /text-to-image`` on the gateway is served by the single-shot app and paid through the signer;
- afterwards the tickets the signer signed, the tickets the clients delivered, the orchestrator's credits,
  balances, runner-app figures and redemption queue (``/status`` and ``lpnode tickets``), the TicketBroker's
  ``WinningTicketRedeemed`` events, the payer's deposit and the orchestrator's ``pendingFees`` all agree.

Where the figures are exact and where they are bounded: every ticket of one orchestrator's params has the same
expected value (a fraction of a wei: face value × win probability / 2²⁵⁶), so credits are exactly tickets × EV
(shown rounded down to a wei); redemptions move exactly the face values. BondingManager shares fees through
fixed-point fee factors that may lose up to 1 wei per redemption when delegators take a share; the dev chain's
orchestrator keeps all its fees (fee share 0), so there ``pendingFees`` grows by exactly the face values. The
signer and the orchestrator bill a metered session by separate clocks (the signer bills 10 s up front, then whole
seconds since its last bill; the orchestrator meters every second), so their views of its credit differ by at
most that opening plus a second a payment.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import requests
from test_runner_app_payments import AppProcess, deploy_feed, until
from test_signer_clients import SignerProcess
from web3 import Web3

from lpnode.payments.devchain import DevChain, artifact, start_devchain
from lpnode.payments.ticket import MAX_WIN_PROB
from lpnode.protocol.lp_rpc_pb2 import OrchestratorInfo
from paid_nodes import ETH, chain_flags, wallet_flags
from procs import GatewayProcess, OrchestratorProcess, RunnerProcess, run_cli

SECRET = "signer-sdk-secret"
TICKET_EV = 10**12
MAX_FACE_VALUE = 2 * TICKET_EV  # each ticket wins with probability ~1/2: winners are redeemed during the test
LIVE_PRICE = 5000  # wei a pixel: 138,240,000,000 wei a second of 720p30 live video
METERED_USD_HOUR = 1  # 1 USD an hour at 2,000 USD an ETH: 138,888,888,888 wei a second
FIXED_USD = "0.001"  # 5e11 wei a call
PER_SECOND = int(Fraction(METERED_USD_HOUR, 3600) * Fraction(ETH, 2000))
FIXED_WEI = int(Fraction(FIXED_USD) * Fraction(ETH, 2000))


@dataclass
class Stack:
    chain: DevChain
    orchestrator: OrchestratorProcess
    signer: SignerProcess
    gateway: GatewayProcess
    orch_address: str
    payer_address: str
    payer_key: bytes
    deposit_at_start: int
    fees_at_start: int
    tmp: Path

    def contract(self, name: str) -> Any:
        w3 = self.chain.w3
        controller = w3.eth.contract(address=Web3.to_checksum_address(self.chain.controller),
                                     abi=artifact("Controller")["abi"])  # fmt: skip
        address = controller.functions.getContract(Web3.keccak(text=name)).call()
        return w3.eth.contract(address=address, abi=artifact(name)["abi"])

    def deposit(self) -> int:
        info = self.contract("TicketBroker").functions.getSenderInfo(self.payer_address).call()
        return int(info[0][0])

    def pending_fees(self) -> int:
        current = self.contract("RoundsManager").functions.currentRound().call()
        return int(self.contract("BondingManager").functions.pendingFees(self.orch_address, current).call())

    def payments(self) -> dict[str, Any]:
        found: dict[str, Any] = self.orchestrator.admin_get("/status").json()["payments"]
        return found


@pytest.fixture(scope="module")
def stack(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("signer-sdk")
    loop = asyncio.new_event_loop()
    chain = loop.run_until_complete(start_devchain(round_length=50, base_fee=0))  # no gas: small face values
    started: list[Any] = []
    try:
        feed = loop.run_until_complete(asyncio.to_thread(deploy_feed, chain))
        orch, payer = chain.accounts[1], chain.accounts[2]
        loop.run_until_complete(chain.activate(orch.address))
        loop.run_until_complete(chain.fund_sender(payer.key, ETH, ETH))
        app = AppProcess(tmp)
        started.append(app)
        runners = [{"label": "metered", "app": "demo/metered", "runner_url": app.url, "health_url": "/health",
                    "price_info": {"price": METERED_USD_HOUR, "unit": "hour"}}]  # fmt: skip
        (tmp / "runners.json").write_text(json.dumps({"runners": runners}))
        models = [{"pipeline": "live-video-to-video", "model_id": "noop", "warm": True, "price_per_unit": LIVE_PRICE}]
        (tmp / "aiModels.json").write_text(json.dumps(models))
        orchestrator = OrchestratorProcess(
            tmp / "aiModels.json", models_dir, tmp / "orch", *chain_flags(chain),
            *wallet_flags(tmp / "orch-wallet", orch.key), "-priceFeedAddr", feed, "-ticketEV", str(TICKET_EV),
            "-maxFaceValue", str(MAX_FACE_VALUE), "-livePaymentInterval", "1s", f"-orchSecret={SECRET}",
            "-useLiveRunners", f"-liveRunnerConfig={tmp / 'runners.json'}",
        )  # fmt: skip
        started.append(orchestrator)
        orchestrator.wait_ready()
        image_app = RunnerProcess(
            ["--pipeline", "text-to-image", "--model-id", "lpnode/tiny-text-to-image", "--models-dir",
             str(models_dir), "--safety-checker", "lpnode/tiny-safety-checker", "--live-runner-orch",
             orchestrator.base_url, "--orch-secret", SECRET, "--app-price", f"{FIXED_USD}/fixed"],
            tmp / "image-app.log",
        )  # fmt: skip
        started.append(image_app)
        signer = SignerProcess(tmp / "signer", chain, payer.key)
        started.append(signer)
        gateway = GatewayProcess(tmp / "gateway", "-orchAddr", orchestrator.base_url, "-remoteSignerUrl", signer.url)
        started.append(gateway)
        stack = Stack(chain, orchestrator, signer, gateway, orch.checksum_address, payer.checksum_address, payer.key,
                      0, 0, tmp)  # fmt: skip
        stack.deposit_at_start, stack.fees_at_start = stack.deposit(), stack.pending_fees()

        def image_app_listed() -> bool:
            assert image_app.proc.poll() is None, image_app.log()
            apps = orchestrator.get("/discovery", timeout=10).json()
            return any(r["app"].startswith("text-to-image/") for e in apps for r in e.get("runners", []))

        until(image_app_listed, 120, "the text-to-image app is listed")
        yield stack
    finally:
        for process in reversed(started):
            process.stop()
        loop.run_until_complete(chain.close())
        loop.close()


SDK_SCRIPT = textwrap.dedent(
    """
    import asyncio, base64, json, ssl, sys, time
    from fractions import Fraction
    import av
    from livepeer_gateway import lp_rpc_pb2, reserve_session
    from livepeer_gateway.lv2v import StartJobRequest, start_lv2v
    from livepeer_gateway.media_publish import MediaPublishConfig, VideoOutputConfig
    from livepeer_gateway.remote_signer import LivePaymentSession, PaymentSession
    from urllib.request import urlopen

    ORCH, SIGNER, ADMIN = sys.argv[1], sys.argv[2], sys.argv[3]
    delivered = {}  # manifest id -> tickets the SDK handed the orchestrator (payments it answered 200)
    states = {}  # manifest id -> the signer's last state (its view of the credit left)
    opening = {}  # manifest id -> tickets of the payment a reservation was sent with
    sent = asyncio.Event()

    def tally(payment):
        decoded = lp_rpc_pb2.Payment()
        decoded.ParseFromString(base64.b64decode(payment))
        return len(decoded.ticket_sender_params)

    # Count what the SDK delivers: its own payment methods, wrapped, unchanged.
    live_get, live_send = PaymentSession.get_payment, PaymentSession.send_payment
    def get_payment(self):
        answer = live_get(self)
        self._last_tickets = tally(answer.payment)
        return answer
    def send_payment(self):
        live_send(self)
        delivered[self._manifest_id] = delivered.get(self._manifest_id, 0) + self._last_tickets
    PaymentSession.get_payment, PaymentSession.send_payment = get_payment, send_payment

    runner_get, runner_send = LivePaymentSession.get_payment, LivePaymentSession.send_payment
    async def runner_get_payment(self):
        first = self._state is None
        answer = await runner_get(self)
        self._last_tickets = tally(answer.payment)
        if first:  # the payment sent with the reservation itself
            opening[self._challenge.manifest_id] = self._last_tickets
        return answer
    async def runner_send_payment(self):
        await runner_send(self)
        key = self._challenge.manifest_id
        delivered[key] = delivered.get(key, 0) + self._last_tickets
        states[key] = self._state
        sent.set()
    LivePaymentSession.get_payment, LivePaymentSession.send_payment = runner_get_payment, runner_send_payment

    def admin_status():
        with urlopen(ADMIN + "/status", timeout=10) as answer:
            return json.load(answer)

    async def live():
        job = start_lv2v(ORCH, StartJobRequest(model_id="noop"), signer_url=SIGNER)
        # The start's payment went with the request: count it as delivered once the orchestrator took it.
        delivered[job.manifest_id] = delivered.get(job.manifest_id, 0) + job.payment_session._last_tickets
        started_state = json.loads(base64.b64decode(job.payment_session._state["State"]))
        media = job.start_media(MediaPublishConfig(tracks=[VideoOutputConfig(fps=15, keyframe_interval_s=1.0)]))
        output = job.media_output()
        segments = 0

        async def read_output():
            nonlocal segments
            async for _ in output.segments():
                segments += 1

        reader = asyncio.create_task(read_output())
        plane = bytes(range(256)) * 64
        started = time.monotonic()
        i = 0
        while time.monotonic() - started < 14:
            frame = av.VideoFrame(128, 128, "yuv420p")
            for p in frame.planes:
                p.update((plane[i % 256:] + plane)[: p.buffer_size])
            frame.pts, frame.time_base = i, Fraction(1, 15)
            await media.write_frame(frame)
            i += 1
            await asyncio.sleep(1 / 15)
        payments_before_close = dict(delivered)
        await job.close()
        reader.cancel()
        return {"manifest_id": job.manifest_id, "frames": i, "segments": segments, "opening_state": started_state,
                "delivered": payments_before_close.get(job.manifest_id, 0)}

    async def metered():
        session = await reserve_session(orchestrators=[ORCH], app="demo/metered", signer_url=SIGNER, timeout=30)
        reserved = time.monotonic()
        delivered[session.session_id] = delivered.get(session.session_id, 0) + opening[session.session_id]
        # Past the signer's 10 s opening and many 1 s metering intervals: unpaid, it would be released by now.
        await asyncio.sleep(13)
        sent.clear()
        await asyncio.wait_for(sent.wait(), 10)  # stop right after a payment arrived, none in flight
        await session.stop_payments()
        status = admin_status()
        alive = urlopen_status(session.app_url + "/still-here")
        released = session.released  # before closing it, which releases it
        await session.aclose()
        return {"session_id": session.session_id, "held_seconds": time.monotonic() - reserved,
                "released": released, "status": status, "alive": alive,
                "signer_state": json.loads(base64.b64decode(states[session.session_id]["State"]))}

    def urlopen_status(url):
        with urlopen(url, timeout=10, context=ssl._create_unverified_context()) as answer:
            return answer.status

    async def main():
        streamed, kept = await asyncio.gather(live(), metered())
        print(json.dumps({"live": streamed, "metered": kept, "delivered": delivered}))

    asyncio.run(main())
    """
)


def run_sdk(stack: Stack) -> dict[str, Any]:
    from sdk import sdk_python

    python = sdk_python()
    script = stack.tmp / "sdk_paying.py"
    script.write_text(SDK_SCRIPT)
    done = subprocess.run(
        [str(python), str(script), stack.orchestrator.base_url, stack.signer.url, stack.orchestrator.admin_url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def ticket_ev(params_b64: str) -> Fraction:
    """The expected value of one ticket of an ``OrchestratorInfo``'s ticket params (wei, exact)."""
    info = OrchestratorInfo.FromString(base64.b64decode(params_b64))
    params = info.ticket_params
    return Fraction(int.from_bytes(params.face_value, "big") * int.from_bytes(params.win_prob, "big"), MAX_WIN_PROB)


def signer_metrics(stack: Stack) -> dict[str, float]:
    text = requests.get(stack.signer.url + "/metrics", timeout=10).text
    found = {}
    for line in text.splitlines():
        if line.startswith("lpnode_signer_") and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


@pytest.fixture(scope="module")
def sdk_run(stack: Stack) -> dict[str, Any]:
    """The SDK script's report: a live stream and a metered session run at once, both paid through the signer."""
    return run_sdk(stack)


@pytest.fixture(scope="module")
def batch(stack: Stack) -> dict[str, Any]:
    """One ``POST /text-to-image`` on the gateway (served by the single-shot app), and the orchestrator's
    balances for the signer's address before and after it."""
    before = {b["manifest"] for b in stack.payments()["balances"]}
    body = {"prompt": "a lighthouse", "width": 64, "height": 64, "num_inference_steps": 2}
    answer = requests.post(stack.gateway.base_url + "/text-to-image", json=body, timeout=120)
    after = [b for b in stack.payments()["balances"] if b["manifest"] not in before]
    return {"status": answer.status_code, "body": answer.json(), "new_balances": after}


def challenge_params(stack: Stack) -> str:
    """The ``payment_params`` of a 402 challenge for the signer's address (nothing is reserved by asking)."""
    routes = {r["label"]: r["route"] for r in stack.orchestrator.admin_get("/status").json()["runner_apps"]}
    answer = stack.orchestrator.post(f"/apps/{routes['metered']}/session",
                                     headers={"Livepeer-Payer-Address": stack.payer_address})  # fmt: skip
    assert answer.status_code == 402, answer.text
    params: str = answer.json()["payment_params"]
    return params


def test_the_sdk_streams_live_video_paid_through_the_signer(stack: Stack, sdk_run: dict[str, Any]) -> None:
    live = sdk_run["live"]
    assert live["segments"] >= 3, live  # the noop pipeline's output came back while the SDK published
    # The start paid the signer's opening minute of 720p30 at the stream's price, in tickets of one EV each.
    opening = live["opening_state"]
    assert opening["Type"] == "lv2v" and opening["InitialPricePerUnit"] == LIVE_PRICE, opening
    ev = ticket_ev(challenge_params(stack))
    fee = 60 * 1280 * 720 * 30 * LIVE_PRICE
    tickets = math.ceil(Fraction(fee) / ev)
    assert Fraction(opening["Balance"]) == tickets * ev - fee
    # The SDK kept paying while frames flowed: its first follow-up (5 s in) finds the credit below one ticket's EV,
    # so the signer signs more, and the orchestrator took them (the SDK counts only payments answered 200).
    assert live["delivered"] > tickets, live


def test_the_sdk_keeps_a_metered_session_paid_through_the_signer(stack: Stack, sdk_run: dict[str, Any]) -> None:
    kept = sdk_run["metered"]
    # Held past the signer's 10 s opening credit and a dozen 1 s metering intervals, and still served.
    assert kept["held_seconds"] > 13 and kept["alive"] == 200 and not kept["released"], kept
    apps = kept["status"]["payments"]["runner_apps"]
    assert int(apps["metered_wei"]) >= 12 * PER_SECOND, apps
    assert apps["paid_sessions"] >= 1 and apps["released_unpaid"] == 0, apps


def test_a_batch_job_is_served_by_a_single_shot_app_paid_through_the_signer(
    stack: Stack, batch: dict[str, Any]
) -> None:
    assert batch["status"] == 200, batch["body"]
    assert batch["body"]["images"][0]["url"].startswith(stack.gateway.base_url + "/stream/")
    (paid,) = [b for b in batch["new_balances"] if b["sender"] == stack.payer_address]
    # One ticket from the signer, the fixed price taken exactly once.
    ev = ticket_ev(challenge_params(stack))
    assert int(paid["balance"]) == math.floor(ev - FIXED_WEI), (paid, ev)
    signer = requests.get(stack.gateway.admin_url + "/status", timeout=10).json()["payments"]
    assert signer["remote_signer"] == stack.signer.url


def test_the_orchestrator_status_shows_what_runner_apps_were_paid(stack: Stack, batch: dict[str, Any]) -> None:
    admin = stack.payments()["runner_apps"]
    assert int(admin["fixed_wei"]) >= FIXED_WEI and admin["sessions_paid"] >= 1, admin
    public = stack.orchestrator.get("/status").json()["payments"]["runner_apps"]
    assert public == admin


def test_signer_orchestrator_and_chain_agree(stack: Stack, sdk_run: dict[str, Any], batch: dict[str, Any]) -> None:
    ev = ticket_ev(challenge_params(stack))
    # Every winning ticket redeemed: the queue drains.
    until(lambda: stack.payments()["tickets"]["queued"] == 0, 60, "the redemption queue drains")
    payments = stack.payments()
    tickets = payments["tickets"]
    signed = signer_metrics(stack)

    # The tickets the signer signed are the tickets the orchestrator received, and the SDK delivered its share.
    received = tickets["received"]
    assert signed["lpnode_signer_tickets_total"] == received, (signed, tickets)
    delivered = sum(sdk_run["delivered"].values())
    assert 0 < delivered < received, (delivered, received)  # the rest: the gateway's batch job
    # Each ticket is worth exactly one EV to both: the orchestrator's credit, the signer's EV total.
    assert int(payments["credited_wei"]) == math.floor(received * ev)
    assert signed["lpnode_signer_ticket_ev_wei_total"] == float(received * ev)
    assert payments["refused"] == {}, payments["refused"]

    # The metered session, seen at one instant by the orchestrator (credit − metered debits) and by the signer
    # (credit − what it billed: 10 s up front, then whole seconds since its last bill).
    kept = sdk_run["metered"]
    sid = kept["session_id"]
    snapshot = kept["status"]["payments"]
    (balance,) = [b for b in snapshot["balances"] if b["manifest"] == sid]
    metered = int(snapshot["runner_apps"]["metered_wei"])
    credit = sdk_run["delivered"][sid] * ev
    assert int(balance["balance"]) in (math.floor(credit - metered), math.floor(credit - metered) - 1), balance
    signer_view = Fraction(kept["signer_state"]["Balance"])
    assert signer_view >= credit - (kept["held_seconds"] + 10 + 1 + sdk_run["delivered"][sid]) * PER_SECOND
    assert 0 <= int(balance["balance"]) - signer_view <= (10 + 2 + sdk_run["delivered"][sid]) * PER_SECOND

    # On chain: each won ticket redeemed once, from the payer's deposit, into the orchestrator's fees.
    assert tickets["won"] == tickets["redeemed"] >= 1 and tickets["failed"] == tickets["expired"] == 0, tickets
    broker = stack.contract("TicketBroker")
    events = broker.events.WinningTicketRedeemed().get_logs(
        from_block=0, argument_filters={"sender": stack.payer_address, "recipient": stack.orch_address}
    )
    assert len(events) == tickets["redeemed"]
    face_values = sum(int(e["args"]["faceValue"]) for e in events)
    assert face_values == int(tickets["earned_wei"])
    assert stack.deposit_at_start - stack.deposit() == face_values
    # Fee share 0 on the dev chain's orchestrator: no fee factor rounding, the fees grow by the face values exactly.
    assert stack.pending_fees() - stack.fees_at_start == face_values

    # `lpnode tickets` reads the same queue; the received count reaches the file on the redeemer's next pass.
    def queue_file() -> dict[str, Any]:
        shown = run_cli("tickets", "--data-dir", str(stack.orchestrator.data_dir), "--json")
        assert shown.returncode == 0, shown.stderr
        return dict(json.loads(shown.stdout))

    until(lambda: queue_file()["received"] == received, 20, "`lpnode tickets` counts every ticket received")
    queue = queue_file()
    assert (queue["received"], queue["redeemed"], int(queue["earned_wei"])) == (received, tickets["redeemed"],
                                                                                 face_values)  # fmt: skip

    for path in (stack.signer.log_path, stack.gateway.log_path, stack.orchestrator.log_path):
        log = path.read_text()
        assert stack.payer_key.hex() not in log and "Traceback" not in log, path
