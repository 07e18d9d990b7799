"""Live video and audio-to-text paid on a real EVM: anvil with the project's contracts, one `lpnode orchestrator`
on chain serving `noop` live runners and a tiny audio-to-text model at a price, and two paying `lpnode gateway`
processes, each with its own funded wallet, all paying every second (`-livePaymentInterval 1s`).

A stream through the first gateway is paid: its start pays a minute up front, credited to the stream's manifest id
on the orchestrator, then `POST /payment` every second for the seconds gone by while the orchestrator debits
27,648,000 units a second at the stream's price; the two sides' books agree within a payment interval.

The second gateway starts a stream and then unlocks its deposit, so it can pay no more: the orchestrator serves the
minute paid for, then stops the stream when its balance goes below zero, telling the gateway why in an event; the
gateway cannot pay for a new start and ends the stream with a status saying so; nothing is left running.

An audio-to-text job is paid by ``int(seconds) × 1000`` units on both sides.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import subprocess
import time
import wave
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
from test_live_path import PARAMS, write_clip

from lpnode.payments.devchain import DevChain, start_devchain
from lpnode.protocol.capabilities import Capability
from paid_nodes import ETH, chain_flags, keystore
from procs import LPNODE, GatewayProcess, OrchestratorProcess, child_env

LIVE_PRICE = 100  # wei per unit: 27,648,000 units a second of live video
A2T = "lpnode/tiny-audio-to-text"
A2T_PRICE = 1000  # wei per unit: 1000 units a second of audio
UNITS_PER_SECOND = 1280 * 720 * 30
SECOND = UNITS_PER_SECOND * LIVE_PRICE  # wei per second of live video
INTERVAL = ["-livePaymentInterval", "1s"]
T = TypeVar("T")


@dataclass
class Paying:
    gateway: GatewayProcess
    address: str
    key: bytes


@dataclass
class Stack:
    chain: DevChain
    loop: asyncio.AbstractEventLoop
    orchestrator: OrchestratorProcess
    payer: Paying
    """Pays for everything it starts."""
    quitter: Paying
    """Unlocks its deposit once its stream runs: it can pay no more."""
    unpaid: subprocess.Popen[str]
    """`lpnode live play` of the quitter's stream (long enough to outlast its prepaid minute)."""
    unpaid_started: float

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except (requests.RequestException, KeyError, ValueError, IndexError):
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def play(gateway: GatewayProcess, clip: Path, stream: str) -> subprocess.Popen[str]:
    args = [*LPNODE, "live", "play", str(clip), "--pipeline", "noop", "--params", json.dumps(PARAMS)]
    args += ["--gateway", gateway.base_url, "--stream", stream, "--output", str(clip.with_name(f"{stream}-out.ts"))]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env())


def stream_status(gateway: GatewayProcess, stream: str) -> dict[str, Any]:
    answer = requests.get(f"{gateway.base_url}/live/video-to-video/{stream}/status", timeout=10)
    answer.raise_for_status()
    status: dict[str, Any] = answer.json()["gateway_status"]
    return status


def live_runners_idle(orch: OrchestratorProcess) -> bool:
    (model,) = [m for m in orch.status() if m["pipeline"] == "live-video-to-video"]
    return bool(model["runners"]) and all(r["state"] == "IDLE" for r in model["runners"])


@pytest.fixture(scope="module")
def stack(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("paid-live")
    clip = tmp / "long.mp4"
    write_clip(clip, 100.0)
    loop = asyncio.new_event_loop()
    # An unlock takes one round: an unlocking sender is refused from the moment it asks (go-livepeer's rule).
    chain = loop.run_until_complete(start_devchain(round_length=200, unlock_period=1))
    orchestrator: OrchestratorProcess | None = None
    gateways: list[GatewayProcess] = []
    unpaid: subprocess.Popen[str] | None = None
    try:
        orch_account = chain.accounts[1]
        loop.run_until_complete(chain.activate(orch_account.address))
        flags = chain_flags(chain)
        models = [
            {"pipeline": "live-video-to-video", "model_id": "noop", "warm": True, "capacity": 2,
             "price_per_unit": LIVE_PRICE},
            {"pipeline": "audio-to-text", "model_id": A2T, "warm": True, "price_per_unit": A2T_PRICE},
        ]  # fmt: skip
        (tmp / "aiModels.json").write_text(json.dumps(models))
        wallet = keystore(tmp / "orch-wallet", orch_account.key)
        orchestrator = OrchestratorProcess(
            tmp / "aiModels.json", models_dir, tmp / "orchestrator", *flags, *INTERVAL,
            "-ethKeystorePath", str(wallet), "-ethPassword", str(wallet.parent / "password"), plain=True,
        )  # fmt: skip
        orchestrator.wait_ready()
        paying: list[Paying] = []
        for index in (2, 3):
            account = chain.accounts[index]
            loop.run_until_complete(chain.fund_sender(account.key, ETH, ETH))
            wallet = keystore(tmp / f"gateway-wallet-{index}", account.key)
            gateway = GatewayProcess(
                tmp / f"gateway-{index}", "-orchAddr", orchestrator.base_url, *flags, *INTERVAL,
                "-ethKeystorePath", str(wallet), "-ethPassword", str(wallet.parent / "password"),
            )  # fmt: skip
            gateways.append(gateway)
            paying.append(Paying(gateway, account.checksum_address, account.key))
        node = orchestrator
        wait_for(lambda: live_runners_idle(node), 120, "the live runners")
        quitter = paying[1]
        started = time.monotonic()
        unpaid = play(quitter.gateway, clip, "unpaid")
        wait_for(lambda: stream_status(quitter.gateway, "unpaid")["output_segments"] >= 1, 60, "the unpaid output")
        loop.run_until_complete(chain.transact("TicketBroker", "unlock", key=quitter.key))
        yield Stack(chain, loop, orchestrator, paying[0], quitter, unpaid, started)
    finally:
        if unpaid is not None and unpaid.poll() is None:
            unpaid.kill()
            unpaid.communicate(timeout=10)
        for gateway in gateways:
            gateway.stop()
        if orchestrator is not None:
            assert orchestrator.stop() == 0, orchestrator.log()
        loop.run_until_complete(chain.close())
        loop.close()


def orchestrator_payments(stack: Stack) -> dict[str, Any]:
    payments: dict[str, Any] = stack.orchestrator.admin_get("/status").json()["payments"]
    return payments


def orchestrator_balance(stack: Stack, paying: Paying, manifest: str) -> Fraction | None:
    balances = orchestrator_payments(stack)["balances"]
    mine = [b for b in balances if b["sender"] == paying.address and b["manifest"] == manifest]
    return Fraction(mine[0]["balance"]) if mine else None


def gateway_credit(paying: Paying, manifest: str) -> Fraction | None:
    payments = requests.get(paying.gateway.admin_url + "/status", timeout=10).json()["payments"]
    credits = [c for c in payments["credits"] if c["manifest"] == manifest]
    return Fraction(credits[0]["credit_wei"]) if credits else None


def wav_file(seconds: float, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x00\x00" * round(seconds * rate))
    return buffer.getvalue()


def test_a_paid_stream_is_credited_by_its_start_then_paid_and_debited_every_interval(
    stack: Stack, tmp_path: Path
) -> None:
    clip = tmp_path / "clip.mp4"
    write_clip(clip, 12.0)
    gateway = stack.payer.gateway
    debited_before = int(orchestrator_payments(stack)["debited_wei"])
    proc = play(gateway, clip, "paid")
    try:
        status = wait_for(lambda: (s := stream_status(gateway, "paid"))["output_segments"] >= 1 and s, 60, "output")
        mid = status["manifest_id"]
        # The start's tickets (a minute up front, at least) are the stream's balance on the orchestrator.
        start = wait_for(lambda: orchestrator_balance(stack, stack.payer, mid), 10, "the start's credit")
        assert start >= 60 * SECOND - 10 * SECOND, float(start)
        began = time.monotonic()
        wait_for(lambda: stream_status(gateway, "paid")["payments"]["paid_seconds"] >= 5, 20, "5 s paid")
        seconds = time.monotonic() - began
        payments = stream_status(gateway, "paid")["payments"]
        assert payments["failures"] == 0, payments
        # Both books, read back to back: they differ by what one side counted and the other not yet, at most
        # one payment interval plus the orchestrator's one-second check.
        theirs, ours = orchestrator_balance(stack, stack.payer, mid), gateway_credit(stack.payer, mid)
        assert theirs is not None and ours is not None
        print(f"after {seconds:.1f}s: orchestrator {float(theirs):.4g} wei, gateway {float(ours):.4g} wei")
        assert abs(theirs - ours) <= 2 * SECOND, (float(theirs), float(ours), SECOND)
        # The credit stays about a minute ahead, as go-livepeer's start payment leaves it.
        assert 55 * SECOND <= ours <= 65 * SECOND + 8_000_000_000, float(ours)
        debited = int(orchestrator_payments(stack)["debited_wei"]) - debited_before
        assert 4 * SECOND <= debited <= (seconds + 12) * SECOND, (debited, seconds)
    finally:
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in out, out
    final = stream_status(gateway, "paid")
    assert final["state"] == "ended" and final["payments"]["paid_seconds"] >= 8, final


def test_audio_to_text_is_paid_by_whole_seconds_on_both_sides(stack: Stack) -> None:
    manifest = f"{int(Capability.AUDIO_TO_TEXT)}_{A2T}"
    balances = [Fraction(0)]
    for seconds in (2.5, 2.9, 3.2):
        files = {"audio": ("speech.wav", wav_file(seconds, rate=16000), "audio/wav")}  # over 64 KiB: one read

        answer = requests.post(
            stack.payer.gateway.base_url + "/audio-to-text", files=files, data={"model_id": A2T}, timeout=120
        )
        assert answer.status_code == 200, answer.text
        theirs, ours = orchestrator_balance(stack, stack.payer, manifest), gateway_credit(stack.payer, manifest)
        assert theirs is not None and ours is not None and ours >= 0
        assert abs(theirs - ours) < 1, (float(theirs), float(ours))
        balances.append(theirs)
    # The first two jobs each bring one ticket (the same EV) and are debited alike: 2.5 s and 2.9 s are both 2000
    # units. The third is covered by the credit left: it is only debited, 3000 units for 3.2 s.
    changes = [after - before for before, after in itertools.pairwise(balances)]
    assert changes[0] == changes[1], [float(c) for c in changes]
    (session,) = [b for b in orchestrator_payments(stack)["balances"] if b["manifest"] == manifest]
    price = Fraction(session["fixed_price"]) if session["fixed_price"] else Fraction(A2T_PRICE)
    assert changes[2] == -3000 * price, ([float(c) for c in changes], float(price))


def test_a_stream_whose_payments_stop_is_stopped_by_the_orchestrator(stack: Stack) -> None:
    gateway = stack.quitter.gateway
    mid = stream_status(gateway, "unpaid")["manifest_id"]
    # The minute paid up front is served; then the balance runs out and the orchestrator ends the stream.
    left = 75 - (time.monotonic() - stack.unpaid_started)
    final = wait_for(lambda: (s := stream_status(gateway, "unpaid"))["state"] in ("ended", "failed") and s,
                     max(left, 10), "the unpaid stream to end")  # fmt: skip
    served = time.monotonic() - stack.unpaid_started
    assert served >= 55, f"stopped after {served:.0f}s although a minute was paid"
    errors = " | ".join(e["message"] for e in final["errors"])
    assert "orchestrator: the orchestrator stopped the stream: insufficient balance" in errors, final
    assert final["payments"]["failures"] > 0 and "unlocking" in final["payments"]["last_problem"], final
    assert final["state"] == "failed" and "unlocking" in final["ended_by"], final
    # The orchestrator never served it unpaid: its balance is below zero by at most one check's worth.
    balance = orchestrator_balance(stack, stack.quitter, mid)
    assert balance is not None and -3 * SECOND <= balance < 0, float(balance or 0)
    # Nothing is left running: the stream is gone and its runner is free again.
    wait_for(lambda: stack.orchestrator.get("/status").json()["live"] == [], 20, "the stream to be gone")
    wait_for(lambda: live_runners_idle(stack.orchestrator), 30, "the runner to be free")
    ended = [line for line in stack.orchestrator.log().splitlines() if "live stream ended" in line and mid in line]
    assert ended and 'reason="insufficient balance"' in ended[0], ended
    out, _ = stack.unpaid.communicate(timeout=30)
    assert "Traceback" not in out, out
    print(out)
