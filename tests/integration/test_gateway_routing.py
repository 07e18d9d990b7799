"""A gateway in front of two orchestrators serving the same model: load spreads over both, a killed
orchestrator costs no request, a price cap sends everything to the cheaper one, and a model nobody
serves is refused at once.

Both orchestrators relay to one shared runner (an external `url` entry each), so the test pays for one
model, not two; what differs between them is their price and whether they are alive.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import procs
from procs import OrchestratorProcess, RunnerProcess

T2I = "lpnode/tiny-text-to-image"
BODY = {"prompt": "x", "model_id": T2I, "width": 64, "height": 64, "num_inference_steps": 2}


class GatewayProcess(procs.GatewayProcess):
    def post(self, **body: object) -> requests.Response:
        return requests.post(self.base_url + "/text-to-image", json=BODY | body, timeout=120)


@pytest.fixture(scope="module")
def runner(start_runner) -> RunnerProcess:  # type: ignore[no-untyped-def]
    node: RunnerProcess = start_runner("text-to-image", T2I, "--max-in-flight", "2", "--max-queue", "32")
    node.wait_status({"IDLE"})
    return node


def orchestrator(runner: RunnerProcess, models_dir: Path, data_dir: Path, price: int) -> OrchestratorProcess:
    data_dir.mkdir(parents=True)
    entry = {
        "pipeline": "text-to-image",
        "model_id": T2I,
        "url": runner.base_url,
        "capacity": 4,
        "price_per_unit": price,
    }
    (data_dir / "aiModels.json").write_text(json.dumps([entry]))
    node = OrchestratorProcess(data_dir / "aiModels.json", models_dir, data_dir / "data")
    node.wait_ready()
    return node


@pytest.fixture
def pair(runner: RunnerProcess, models_dir: Path, tmp_path: Path) -> Iterator[tuple[OrchestratorProcess, ...]]:
    nodes = (
        orchestrator(runner, models_dir, tmp_path / "cheap", price=10),
        orchestrator(runner, models_dir, tmp_path / "dear", price=100),
    )
    try:
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def jobs_per_orchestrator(gateway: GatewayProcess) -> dict[str, int]:
    text = requests.get(gateway.base_url + "/metrics", timeout=10).text
    counts: dict[str, int] = {}
    for url, status, value in re.findall(
        r'lpnode_gateway_orchestrator_jobs_total\{orchestrator="([^"]+)",status="(\d+)"\} ([0-9.]+)', text
    ):
        if status == "200":
            counts[url] = counts.get(url, 0) + int(float(value))
    return counts


def test_load_spreads_and_a_killed_orchestrator_costs_no_request(
    pair: tuple[OrchestratorProcess, ...], tmp_path: Path
) -> None:
    cheap, dear = pair
    gateway = GatewayProcess(tmp_path / "gw", "--orch-addr", f"{cheap.base_url},{dear.base_url}")
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            first = [r.status_code for r in pool.map(lambda _: gateway.post(), range(12))]
        assert first == [200] * 12
        spread = jobs_per_orchestrator(gateway)
        assert set(spread) == {cheap.base_url, dear.base_url}, spread
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            running = [pool.submit(gateway.post, num_inference_steps=30) for _ in range(12)]
            time.sleep(1.0)
            dear.proc.send_signal(signal.SIGKILL)
            statuses = [f.result().status_code for f in running]
        assert statuses == [200] * 12, statuses
        after = requests.get(gateway.admin_url + "/status", timeout=10).json()["orchestrators"]
        assert {o["url"]: o["ready"] for o in after}[dear.base_url] is False
    finally:
        gateway.stop()


def test_a_price_cap_routes_everything_to_the_cheaper_orchestrator(
    pair: tuple[OrchestratorProcess, ...], tmp_path: Path
) -> None:
    cheap, dear = pair
    caps = {"capabilities_prices": [{"pipeline": "text-to-image", "model_id": T2I, "price_per_unit": 50}]}
    gateway = GatewayProcess(
        tmp_path / "gw", "-orchAddr", f"{dear.base_url},{cheap.base_url}", "-maxPricePerCapability", json.dumps(caps)
    )
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            assert [r.status_code for r in pool.map(lambda _: gateway.post(), range(8))] == [200] * 8
        assert jobs_per_orchestrator(gateway) == {cheap.base_url: 8}
        started = time.monotonic()
        refused = gateway.post(model_id="org/absent")
        assert refused.status_code == 503 and time.monotonic() - started < 10
        network = requests.get(gateway.admin_url + "/getNetworkCapabilities", timeout=10).json()
        assert sorted(o["orch_uri"] for o in network["orchestrators"]) == sorted([cheap.base_url, dear.base_url])
    finally:
        gateway.stop()


class SilentOrchestrator(procs.ChildProcess):
    """``tests/peers/silent_orchestrator.py``: advertises the model, accepts jobs, never answers them."""

    def __init__(self, data_dir: Path) -> None:
        self.port = procs.free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir / "silent.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        script = Path(__file__).parents[1] / "peers" / "silent_orchestrator.py"
        self.proc = subprocess.Popen(
            [sys.executable, str(script), "--port", str(self.port), "--model", T2I],
            stdout=self._log, stderr=subprocess.STDOUT, env=procs.child_env(),
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            try:
                requests.get(self.base_url + "/accepted", timeout=2)
                return
            except requests.ConnectionError:
                time.sleep(0.2)
        raise AssertionError(self.log())

    def accepted(self) -> int:
        return int(requests.get(self.base_url + "/accepted", timeout=5).text)


def test_an_orchestrator_that_never_answers_is_abandoned_at_the_deadline_and_suspended(
    runner: RunnerProcess, models_dir: Path, tmp_path: Path
) -> None:
    healthy = orchestrator(runner, models_dir, tmp_path / "healthy", price=10)
    silent = SilentOrchestrator(tmp_path / "silent")
    timeout = 6.0
    gateway = GatewayProcess(
        tmp_path / "gw", "--orch-addr", f"{silent.base_url},{healthy.base_url}", "--timeout", str(timeout)
    )
    try:
        answers: list[tuple[int, float]] = []
        for _ in range(4):  # the latency selector tries an unmeasured orchestrator before a measured one
            started = time.monotonic()
            status = gateway.post().status_code
            answers.append((status, time.monotonic() - started))
            if silent.accepted():
                break
        assert silent.accepted() == 1, answers
        status, seconds = answers[-1]
        assert status in (200, 504), answers  # another orchestrator's result if time was left, else 504
        assert seconds < timeout + 3, answers
        known = requests.get(gateway.admin_url + "/status", timeout=10).json()["orchestrators"]
        state = {o["url"]: o for o in known}
        assert state[silent.base_url]["ready"] is False, known
        assert "deadline" in state[silent.base_url]["problem"], known
        assert [gateway.post().status_code for _ in range(3)] == [200] * 3
        assert silent.accepted() == 1  # suspended: no further job went there
    finally:
        gateway.stop()
        silent.stop()
        healthy.stop()
