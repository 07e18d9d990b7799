"""`lpnode up --network devchain` as a user meets it: the whole stack paying with real tickets on a local chain.

One `lpnode up` for the module (anvil with the project's Livepeer contracts, an orchestrator and a gateway with
keystore wallets, the gateway's deposit funded). Asserted from what a user can see: the SDK and curl answers,
``Livepeer-Balance``, both roles' admin ``/status``, ``lpnode usage``, ``lpnode tickets``, ``lpnode deposit
show`` and the contracts read with web3 at the chain URL the banner prints.

- every batch pipeline and an LLM stream are paid: for each model, the orchestrator's balance for the gateway is
  the gateway's own credit, and it is a whole number of tickets' EV less the fees metered (price × units);
- a BYOC job is paid and answered with its balance;
- winning tickets are redeemed: the orchestrator's fees on chain grow, and the gateway's deposit falls, by
  exactly the face values redeemed;
- a winning ticket held by the gas cap survives ``kill -9`` of the orchestrator and is redeemed once ``up`` has
  restarted it and the gas price falls. The chain's gas price is the knob: anvil's next-block base fee is held
  above the dev stack's ``-maxGasPrice`` and then let go, as gas on a real chain rises and falls.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import signal
import struct
import subprocess
import textwrap
import threading
import time
import wave
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import openai
import pytest
import requests
from livepeer_ai import Livepeer
from PIL import Image
from web3 import Web3

from lpnode.payments.devchain import artifact
from lpnode.pipelines import BATCH_PIPELINES
from lpnode.protocol.capabilities import capability_for_pipeline
from lpnode.up_chain import MAX_GAS_PRICE, TICKET_EV
from procs import LPNODE, ChildProcess, child_env, free_port, run_cli, wait_gone
from up_stack import Stack, pids_under

BYOC_PRICE = 1000  # wei per second
SMALL: dict[str, Any] = {"width": 64, "height": 64, "num_inference_steps": 1}
CONTAINER = """
from lpnode.byoc.kit import ByocApp

app = ByocApp("echo")

@app.job()
def echo(inputs):
    return {"echo": inputs}
"""


@dataclass
class PaidStack:
    node: Stack
    chain_url: str
    controller: str
    gateway: str
    orchestrator: str
    w3: Web3
    fees_at_start: int
    deposit_at_start: int

    @property
    def orch_data(self) -> Path:
        return self.node.data_dir / "orchestrator"

    def contract(self, name: str) -> Any:
        controller = self.w3.eth.contract(
            address=Web3.to_checksum_address(self.controller), abi=artifact("Controller")["abi"]
        )
        address = controller.functions.getContract(Web3.keccak(text=name)).call()
        return self.w3.eth.contract(address=address, abi=artifact(name)["abi"])

    def pending_fees(self) -> int:
        """``BondingManager.pendingFees(orchestrator, currentRound)``: the orchestrator's fees on chain."""
        current = self.contract("RoundsManager").functions.currentRound().call()
        return int(self.contract("BondingManager").functions.pendingFees(self.orchestrator, current).call())

    def deposit(self) -> int:
        """The gateway's deposit as ``lpnode deposit show`` prints it."""
        shown = run_cli(
            "deposit", "show", "--json", "--network", "devchain", "--eth-url", self.chain_url,
            "--eth-controller", self.controller,
            "--eth-keystore-path", str(self.node.data_dir / "gateway" / "keystore"),
            "--eth-password", str(self.node.data_dir / "devchain-password"),
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        state = json.loads(shown.stdout)
        assert state["account"] == self.gateway
        return int(state["deposit_wei"])

    def tickets(self) -> dict[str, Any]:
        """``lpnode tickets --json`` for the orchestrator's data dir."""
        shown = run_cli("tickets", "--json", "--data-dir", str(self.orch_data))
        assert shown.returncode == 0, shown.stderr
        stats: dict[str, Any] = json.loads(shown.stdout)
        return stats

    def orch_payments(self) -> dict[str, Any]:
        payments: dict[str, Any] = requests.get(self.node.orch_admin_url + "/status", timeout=10).json()["payments"]
        return payments

    def gateway_payments(self) -> dict[str, Any]:
        payments: dict[str, Any] = requests.get(self.node.admin_url + "/status", timeout=10).json()["payments"]
        return payments

    def set_base_fee(self, wei: int) -> None:
        answer = self.w3.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(wei)])  # type: ignore[arg-type]
        assert "error" not in answer, answer


@pytest.fixture(scope="module")
def paid(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaidStack]:
    data = tmp_path_factory.mktemp("paid-up")
    (data / "models").symlink_to(models_dir, target_is_directory=True)
    node = Stack(data, "--network", "devchain")
    try:
        node.curl = node.wait_ready()
        log = node.log()
        chain = re.search(r"chain\s+(http://\S+)\s+\(dev chain, id \d+; -ethController (0x[0-9a-fA-F]{40})\)", log)
        paying = re.search(r"paying\s+gateway (0x[0-9a-fA-F]{40}) -> orchestrator (0x[0-9a-fA-F]{40})", log)
        assert chain and paying, log
        w3 = Web3(Web3.HTTPProvider(chain.group(1), request_kwargs={"timeout": 10}))
        stack = PaidStack(node, chain.group(1), chain.group(2), paying.group(1), paying.group(2), w3, 0, 0)
        stack.fees_at_start, stack.deposit_at_start = stack.pending_fees(), stack.deposit()
        yield stack
    finally:
        processes = pids_under(node.proc.pid)
        assert node.stop() == 0, node.log()
        assert wait_gone(processes) == [], "lpnode up left processes behind"
        assert "Traceback" not in node.log()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.3)


def png(size: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (30, 140, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def wav(seconds: float = 1.0, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        samples = (int(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(int(seconds * rate)))
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return buffer.getvalue()


def text_to_image(paid: PaidStack) -> None:
    body = {"prompt": "a lighthouse", "model_id": "lpnode/tiny-text-to-image", **SMALL}
    answer = requests.post(paid.node.base_url + "/text-to-image", json=body, timeout=120)
    assert answer.status_code == 200, answer.text


def every_batch_pipeline(sdk: Livepeer) -> dict[str, Callable[[], object]]:
    """One SDK call per batch pipeline (the tiny models' inputs kept small)."""
    image = {"file_name": "in.png", "content": png()}
    calls: dict[str, Callable[[], object]] = {
        "text-to-image": lambda: sdk.generate.text_to_image(request={"prompt": "a lighthouse", **SMALL}),
        "image-to-image": lambda: sdk.generate.image_to_image(
            request={"prompt": "x", "image": image, "num_inference_steps": 2}
        ),
        "image-to-video": lambda: sdk.generate.image_to_video(request={"image": image, **SMALL}),
        "upscale": lambda: sdk.generate.upscale(
            request={"prompt": "x", "image": {"file_name": "in.png", "content": png(32)}, "num_inference_steps": 2}
        ),
        "audio-to-text": lambda: sdk.generate.audio_to_text(
            request={"audio": {"file_name": "a.wav", "content": wav()}}
        ),
        "segment-anything-2": lambda: sdk.generate.segment_anything2(
            request={"image": image, "point_coords": "[[10, 20]]", "point_labels": "[1]"}
        ),
        "llm": lambda: sdk.generate.llm(request={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}),
        "image-to-text": lambda: sdk.generate.image_to_text(request={"image": image}),
        "text-to-speech": lambda: sdk.generate.text_to_speech(request={"text": "Hello there."}),
    }
    assert set(calls) == set(BATCH_PIPELINES)
    return calls


def usage_by_pipeline(
    paid: PaidStack, complete: Callable[[dict[str, dict[str, Any]]], bool] = lambda rows: True
) -> dict[str, dict[str, Any]]:
    """``lpnode usage --by pipeline --json`` of the gateway's data dir, once ``complete`` says every request the
    test made is in it (the gateway records a request after its answer is sent, and writes records a moment later)."""
    deadline = time.monotonic() + 15
    while True:
        shown = run_cli("usage", "--by", "pipeline", "--json", "--data-dir", str(paid.node.data_dir / "gateway"))
        assert shown.returncode == 0, shown.stderr
        rows = {row["pipeline"]: row for row in json.loads(shown.stdout)}
        if complete(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_every_batch_pipeline_and_an_llm_stream_are_paid_and_both_sides_agree(paid: PaidStack) -> None:
    with Livepeer(http_bearer="unused", server_url=paid.node.base_url) as sdk:
        calls = every_batch_pipeline(sdk)
        # Cold runners start on first use; starting them side by side keeps the module short.
        with ThreadPoolExecutor(4) as pool:
            for future in [pool.submit(call) for call in calls.values()]:
                future.result()
        calls["text-to-image"]()  # a second job on a session that is now in credit
    client = openai.OpenAI(base_url=paid.node.base_url + "/v1", api_key="unused")
    stream = client.chat.completions.create(
        model="lpnode/tiny-llm", messages=[{"role": "user", "content": "hello"}], max_tokens=6, stream=True
    )
    assert any(chunk.choices and chunk.choices[0].finish_reason for chunk in stream)

    made = len(BATCH_PIPELINES) + 2  # each pipeline once, a second text-to-image, the llm stream
    usage = usage_by_pipeline(paid, lambda rows: sum(r["requests"] for r in rows.values()) >= made)
    orch = paid.orch_payments()
    gateway = paid.gateway_payments()
    balances = {b["manifest"]: b for b in orch["balances"] if b["sender"] == paid.gateway}
    credits = {c["manifest"]: c for c in gateway["credits"] if c["recipient"] == paid.orchestrator}
    tickets = 0
    for pipeline in BATCH_PIPELINES:
        row = usage[pipeline]
        assert row["served"] == row["requests"] and row["units"] > 0, row
        manifest = f"{int(capability_for_pipeline(pipeline))}_lpnode/tiny-{pipeline}"
        balance, price = Fraction(balances[manifest]["balance"]), Fraction(balances[manifest]["fixed_price"])
        fee = Fraction(Decimal(row["spend_wei"]))
        # The fee metered is the units metered at the orchestrator's price for the model, which follows the gas
        # price a little from one quote to the next (each job pays, and is debited, at the price it was quoted).
        assert abs(fee / row["units"] - price) <= price / 100, (pipeline, price, row)
        # Both sides hold the same credit: whole tickets' EV less the fees (shown rounded down to a wei).
        assert Fraction(credits[manifest]["credit_wei"]) == balance, (pipeline, credits[manifest], balance)
        paid_for = balance + fee
        count = round(paid_for / TICKET_EV)
        assert count >= 1 and 0 <= count * TICKET_EV - paid_for < 1, (pipeline, balance, fee)
        tickets += count
    (sent,) = gateway["orchestrators"]
    assert sent["tickets"] == tickets and sent["failures"] == 0, sent
    assert int(orch["credited_wei"]) == tickets * TICKET_EV and orch["refused"] == {}
    assert abs(int(orch["debited_wei"]) - sum(Decimal(usage[p]["spend_wei"]) for p in BATCH_PIPELINES)) <= 10


class ContainerProcess(ChildProcess):
    """A BYOC kit container answering ``echo`` jobs."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "container.py").write_text(textwrap.dedent(CONTAINER))
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log_path = directory / "container.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*LPNODE, "byoc", "serve", "container:app", "--port", self.url.rsplit(":", 1)[1]],
            cwd=directory, stdout=self._log, stderr=subprocess.STDOUT, env=child_env(),
        )  # fmt: skip

        def healthy() -> bool:
            assert self.proc.poll() is None, self.log()
            try:
                return requests.get(self.url + "/health", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for("the container is healthy", healthy)


def test_a_byoc_job_is_paid_and_answered_with_its_balance(paid: PaidStack, tmp_path: Path) -> None:
    import base64

    container = ContainerProcess(tmp_path / "container")
    try:
        registered = run_cli(
            "byoc", "register", "--orchestrator", paid.node.orch_url,
            "--secret", str(paid.node.data_dir / "orch-secret"), "--name", "echo", "--url", container.url,
            "--capacity", "2", "--price-per-unit", str(BYOC_PRICE),
        )  # fmt: skip
        assert registered.returncode == 0 and "healthy" in registered.stdout, registered.stderr
        job = {"request": "{}", "parameters": "", "capability": "echo", "timeout_seconds": 30}
        header = base64.b64encode(json.dumps(job).encode()).decode()

        def call() -> requests.Response:
            return requests.post(
                paid.node.base_url + "/process/request/echo", json={"n": 1}, headers={"Livepeer": header}, timeout=60
            )

        # The gateway learns of the capability at its next look at the orchestrator.
        wait_for("the gateway routes echo", lambda: call().status_code == 200)
        answer = call()
        assert answer.json() == {"echo": {"n": 1}}
        balance = int(answer.headers["Livepeer-Balance"])
        charged = TICKET_EV - balance  # one ticket paid for every job so far, charged by the whole second
        assert charged > 0 and charged % BYOC_PRICE == 0, balance
        (echo,) = [b for b in paid.orch_payments()["balances"] if b["manifest"] == "echo"]
        assert int(echo["balance"]) == balance and echo["sender"] == paid.gateway
        spent = usage_by_pipeline(paid, lambda rows: Decimal(rows.get("echo", {}).get("spend_wei") or 0) >= charged)
        row = spent["echo"]
        assert Decimal(row["spend_wei"]) == row["units"] * BYOC_PRICE == charged
    finally:
        container.stop()


def test_winning_tickets_are_redeemed_on_chain_and_paid_from_the_deposit(paid: PaidStack) -> None:
    for _ in range(200):  # about one ticket in four wins; each ticket pays for a couple of these jobs
        if paid.orch_payments()["tickets"]["won"]:
            break
        text_to_image(paid)
    wait_for("every winning ticket is redeemed", lambda: paid.orch_payments()["tickets"]["queued"] == 0)
    tickets = paid.tickets()
    assert tickets["redeemed"] >= 1 and tickets["failed"] == tickets["expired"] == 0, tickets
    assert tickets["received"] >= tickets["won"] == tickets["redeemed"]
    earned = int(tickets["earned_wei"])
    assert {o["status"] for o in tickets["recent"]} == {"redeemed"}
    assert paid.pending_fees() - paid.fees_at_start == earned
    assert paid.deposit_at_start - paid.deposit() == earned


def test_a_held_winning_ticket_survives_kill_9_and_is_redeemed_after_the_restart(paid: PaidStack) -> None:
    before = paid.tickets()
    high = threading.Event()

    def hold_gas_high() -> None:
        # Each empty block lowers the base fee by an eighth: set it again for every block.
        while not high.wait(0.2):
            paid.set_base_fee(2 * MAX_GAS_PRICE)

    holder = threading.Thread(target=hold_gas_high, daemon=True)
    holder.start()
    try:
        wait_for(
            "the orchestrator sees gas above its cap",
            lambda: paid.orch_payments()["chain"]["gas_price"] > MAX_GAS_PRICE,
        )
        for _ in range(200):
            if paid.orch_payments()["tickets"]["won"] > before["won"]:
                break
            text_to_image(paid)
        held = paid.orch_payments()["tickets"]
        assert held["queued"] >= 1 and "above -maxGasPrice" in held["holding"], held

        killed = paid.node.orchestrator_pid()
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        wait_for("the old orchestrator is gone", lambda: paid.node.orchestrator_pid() != killed, timeout=30)
        after_kill = paid.tickets()
        assert (after_kill["won"], after_kill["queued"]) == (held["won"], held["queued"]), after_kill

        def serving_again() -> bool:
            cert = paid.orch_data / "tls" / "cert.pem"
            try:
                return requests.get(paid.node.orch_url + "/healthz", timeout=2, verify=str(cert)).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for("up restarts the orchestrator", serving_again, timeout=120)
        wait_for(
            "the restarted orchestrator watches the chain",
            lambda: paid.orch_payments()["chain"]["gas_price"] > MAX_GAS_PRICE,
        )
        still = paid.orch_payments()["tickets"]
        assert still["queued"] == held["queued"] and "above -maxGasPrice" in still["holding"], still
    finally:
        high.set()
        holder.join()
    paid.set_base_fee(0)  # the dev chain's gas is free again
    wait_for("the held tickets are redeemed", lambda: paid.orch_payments()["tickets"]["queued"] == 0, timeout=60)
    tickets = paid.tickets()
    assert tickets["redeemed"] == held["won"] and tickets["failed"] == tickets["expired"] == 0, tickets
    earned = int(tickets["earned_wei"])
    assert earned > int(before["earned_wei"])
    assert paid.pending_fees() - paid.fees_at_start == earned
    assert paid.deposit_at_start - paid.deposit() == earned
    # Once it serves again, the gateway pays the new orchestrator process (its ticket params are new) and the
    # caller does not notice.
    text_to_image(paid)
