"""Remote AI workers' jobs paid on a real EVM: anvil with the project's contracts, an `lpnode orchestrator` on chain
with no runners of its own, one `lpnode worker` attached to it serving tiny text-to-image and audio-to-text models,
and a paying `lpnode gateway`.

The orchestrator is paid; the worker takes no part in payments. A paid job a worker serves debits the gateway's
balance as a local runner's would: pixels for text-to-image, ``int(seconds) × 1000`` units for audio-to-text (the
orchestrator measures the upload, as go-livepeer does; a worker reports no length), and both sides' books agree.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import signal
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import requests

from lpnode.payments.devchain import DevChain, start_devchain
from lpnode.protocol.capabilities import Capability
from paid_nodes import ETH, chain_flags, keystore
from procs import GatewayProcess, OrchestratorProcess, WorkerProcess, wait_gone

T2I = "lpnode/tiny-text-to-image"
A2T = "lpnode/tiny-audio-to-text"
T2I_PRICE = 1000  # wei per pixel
A2T_PRICE = 1000  # wei per unit (a millisecond of audio)
SECRET = "paid-worker-secret"


@dataclass
class Stack:
    chain: DevChain
    orchestrator: OrchestratorProcess
    worker: WorkerProcess
    gateway: GatewayProcess
    gateway_address: str


def worker_models(orch: OrchestratorProcess) -> set[str]:
    workers: list[dict[str, Any]] = orch.admin_get("/status").json()["workers"]
    return {str(m.get("model_id", m)) for w in workers for m in w["models"]} if workers else set()


@pytest.fixture(scope="module")
def stack(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("paid-worker")
    loop = asyncio.new_event_loop()
    chain = loop.run_until_complete(start_devchain(round_length=200))
    orchestrator: OrchestratorProcess | None = None
    worker: WorkerProcess | None = None
    gateway: GatewayProcess | None = None
    try:
        orch_account, gateway_account = chain.accounts[1], chain.accounts[2]
        loop.run_until_complete(chain.activate(orch_account.address))
        loop.run_until_complete(chain.fund_sender(gateway_account.key, ETH, ETH))
        flags = chain_flags(chain)
        # No runners of its own: as go-livepeer's orchestrator run with -aiWorker=false, its aiModels.json only
        # prices what its workers serve.
        prices = [
            {"pipeline": "text-to-image", "model_id": T2I, "price_per_unit": T2I_PRICE},
            {"pipeline": "audio-to-text", "model_id": A2T, "price_per_unit": A2T_PRICE},
        ]
        (tmp / "aiModels.json").write_text(json.dumps(prices))
        wallet = keystore(tmp / "orch-wallet", orch_account.key)
        orchestrator = OrchestratorProcess(
            tmp / "aiModels.json", models_dir, tmp / "orchestrator", *flags, "--orch-secret", SECRET,
            "-aiWorker=false",
            "-ethKeystorePath", str(wallet), "-ethPassword", str(wallet.parent / "password"), plain=True,
        )  # fmt: skip
        orchestrator.wait_ready()
        models = [
            {"pipeline": "text-to-image", "model_id": T2I, "warm": True, "price_per_unit": T2I_PRICE},
            {"pipeline": "audio-to-text", "model_id": A2T, "warm": True, "price_per_unit": A2T_PRICE},
        ]
        (tmp / "worker.json").write_text(json.dumps(models))
        worker = WorkerProcess(orchestrator.base_url, SECRET, tmp / "worker.json", models_dir, tmp / "worker")
        deadline = time.monotonic() + 120
        node = orchestrator
        while time.monotonic() < deadline and not {T2I, A2T} <= worker_models(node):
            time.sleep(0.3)
        wallet = keystore(tmp / "gateway-wallet", gateway_account.key)
        gateway = GatewayProcess(
            tmp / "gateway", "-orchAddr", orchestrator.base_url, *flags,
            "-ethKeystorePath", str(wallet), "-ethPassword", str(wallet.parent / "password"),
        )  # fmt: skip
        yield Stack(chain, orchestrator, worker, gateway, gateway_account.checksum_address)
    finally:
        if gateway is not None:
            gateway.stop()
        if worker is not None:
            pids = worker.runner_pids()
            assert worker.stop() in (0, -signal.SIGKILL), worker.log()
            assert wait_gone(pids) == [], worker.log()
        if orchestrator is not None:
            assert orchestrator.stop() == 0, orchestrator.log()
        loop.run_until_complete(chain.close())
        loop.close()


def orchestrator_balance(stack: Stack, manifest: str) -> Fraction | None:
    balances = stack.orchestrator.admin_get("/status").json()["payments"]["balances"]
    mine = [b for b in balances if b["sender"] == stack.gateway_address and b["manifest"] == manifest]
    return Fraction(mine[0]["balance"]) if mine else None


def gateway_credit(stack: Stack, manifest: str) -> Fraction | None:
    payments = requests.get(stack.gateway.admin_url + "/status", timeout=10).json()["payments"]
    credits = [c for c in payments["credits"] if c["manifest"] == manifest]
    return Fraction(credits[0]["credit_wei"]) if credits else None


def remote_jobs(stack: Stack) -> int:
    return sum(int(w.get("jobs_done", 0)) for w in stack.orchestrator.admin_get("/status").json()["workers"])


def agree(stack: Stack, manifest: str) -> Fraction:
    theirs, ours = orchestrator_balance(stack, manifest), gateway_credit(stack, manifest)
    assert theirs is not None and ours is not None and ours >= 0
    assert abs(theirs - ours) < 1, (float(theirs), float(ours))
    return theirs


def wav_file(seconds: float, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x00\x00" * round(seconds * rate))
    return buffer.getvalue()


def test_a_text_to_image_job_served_by_a_worker_is_paid_to_the_orchestrator(stack: Stack) -> None:
    manifest = f"{int(Capability.TEXT_TO_IMAGE)}_{T2I}"
    done = remote_jobs(stack)
    balances = [Fraction(0)]
    for _ in range(3):
        body = {"prompt": "a lighthouse", "model_id": T2I, "width": 64, "height": 64, "num_inference_steps": 1}
        answer = requests.post(stack.gateway.base_url + "/text-to-image", json=body, timeout=120)
        assert answer.status_code == 200, answer.text
        balances.append(agree(stack, manifest))
    assert remote_jobs(stack) == done + 3
    # As in go-livepeer, a job tops the credit up to at least one ticket's EV: the first two jobs send a ticket each,
    # which leaves enough credit for the third, which is only debited: 64 × 64 pixels at the price.
    (session,) = [
        b for b in stack.orchestrator.admin_get("/status").json()["payments"]["balances"] if b["manifest"] == manifest
    ]
    price = Fraction(session["fixed_price"]) if session["fixed_price"] else Fraction(T2I_PRICE)
    assert balances[2] - balances[3] == 64 * 64 * price, ([float(b) for b in balances], float(price))


def test_an_audio_job_served_by_a_worker_is_paid_by_whole_seconds(stack: Stack) -> None:
    manifest = f"{int(Capability.AUDIO_TO_TEXT)}_{A2T}"
    done = remote_jobs(stack)
    balances = [Fraction(0)]
    for seconds in (2.5, 2.9, 3.2):
        files = {"audio": ("speech.wav", wav_file(seconds), "audio/wav")}
        answer = requests.post(
            stack.gateway.base_url + "/audio-to-text", files=files, data={"model_id": A2T}, timeout=120
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["text"] is not None
        balances.append(agree(stack, manifest))
    assert remote_jobs(stack) == done + 3
    changes = [after - before for before, after in itertools.pairwise(balances)]
    assert changes[0] == changes[1], [float(c) for c in changes]  # 2.5 s and 2.9 s: 2000 units each
    (session,) = [
        b for b in stack.orchestrator.admin_get("/status").json()["payments"]["balances"] if b["manifest"] == manifest
    ]
    price = Fraction(session["fixed_price"]) if session["fixed_price"] else Fraction(A2T_PRICE)
    assert changes[2] == -3000 * price, ([float(c) for c in changes], float(price))  # 3.2 s: 3000 units
