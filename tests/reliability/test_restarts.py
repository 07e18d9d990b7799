"""What a gateway keeps across ``kill -9``: a gateway is killed with SIGKILL and started again on the same data dir
(docs/keys.md "Where the data lives"). API keys (made with ``lpnode keys``) and their revocations, the usage
records written before the kill, stored results and the results of asynchronous jobs must all still be there.
"""

from __future__ import annotations

import io
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from nodes import BODY, logs_with_tracebacks, wait_until
from PIL import Image

from procs import GatewayProcess, OrchestratorProcess, RunnerProcess, run_cli, wait_gone
from up_stack import pids_under

I2V = "lpnode/tiny-image-to-video"


def kill_9(gateway: GatewayProcess) -> None:
    gateway.proc.send_signal(signal.SIGKILL)
    gateway.proc.wait(timeout=10)
    gateway._log.close()


def usage_total(data_dir: Path) -> int:
    done = run_cli("usage", "--by", "none", "--json", "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    groups: list[dict[str, Any]] = json.loads(done.stdout or "[]")
    return sum(int(g["requests"]) for g in groups)


def create_key(data_dir: Path, name: str) -> str:
    done = run_cli("keys", "create", name, "--json", "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    key: str = json.loads(done.stdout)["key"]
    return key


def post(gateway: GatewayProcess, key: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.post(gateway.base_url + "/text-to-image", json=BODY, headers=headers, timeout=60)


@pytest.fixture(scope="module")
def orchestrator(
    shared_runner: RunnerProcess, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OrchestratorProcess]:
    root = tmp_path_factory.mktemp("restarts-orch")
    entries = [
        {"pipeline": "text-to-image", "model_id": BODY["model_id"], "url": shared_runner.base_url, "capacity": 2},
        {"pipeline": "image-to-video", "model_id": I2V, "warm": True},
    ]
    (root / "aiModels.json").write_text(json.dumps(entries))
    node = OrchestratorProcess(root / "aiModels.json", models_dir, root / "data")
    try:
        node.wait_ready()
        yield node
    finally:
        children = pids_under(node.proc.pid)
        node.stop()
        assert wait_gone([node.proc.pid, *children]) == []


def test_keys_usage_and_results_survive_a_killed_gateway(orchestrator: OrchestratorProcess, tmp_path: Path) -> None:
    data = tmp_path / "gw"
    alice, bob = create_key(data, "alice"), create_key(data, "bob")
    first = GatewayProcess(data, "--orch-addr", orchestrator.base_url, "--auth", "keys")
    try:
        served = [post(first, alice) for _ in range(3)]
        assert [a.status_code for a in served] == [200] * 3, [a.text for a in served]
        assert run_cli("keys", "revoke", "bob", "--data-dir", str(data)).returncode == 0
        assert wait_until(lambda: post(first, bob).status_code == 401, timeout=15, interval=1) is not None
        assert wait_until(lambda: usage_total(data) >= 4, timeout=15, interval=0.2) is not None
        before = usage_total(data)
    finally:
        kill_9(first)

    second = GatewayProcess(data, "--orch-addr", orchestrator.base_url, "--auth", "keys")
    try:
        assert usage_total(data) == before, "usage records written before the kill were lost"
        assert post(second, alice).status_code == 200
        assert post(second, bob).status_code == 401
        assert post(second, None).status_code == 401
        image_url = served[0].json()["images"][0]["url"]
        stored = requests.get(second.base_url + "/stream/" + image_url.split("/stream/", 1)[1], timeout=30)
        assert stored.status_code == 200 and stored.headers["content-type"] == "image/png"
        assert wait_until(lambda: usage_total(data) == before + 3, timeout=15, interval=0.2) is not None
    finally:
        second.stop()
    assert logs_with_tracebacks([data]) == {}


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (30, 140, 200)).save(out, format="PNG")
    return out.getvalue()


def test_an_asynchronous_job_result_survives_a_killed_gateway(
    orchestrator: OrchestratorProcess, tmp_path: Path
) -> None:
    data = tmp_path / "gw"
    first = GatewayProcess(data, "--orch-addr", orchestrator.base_url)
    try:
        form = {"model_id": I2V, "width": "64", "height": "64", "num_inference_steps": "2"}
        started = requests.post(
            first.base_url + "/image-to-video", data=form, files={"image": ("in.png", png(), "image/png")},
            headers={"Prefer": "respond-async"}, timeout=30,
        )  # fmt: skip
        assert started.status_code == 202, started.text
        request_id = started.json()["request_id"]

        def complete() -> bool:
            poll = requests.post(first.base_url + "/image-to-video/result", json={"request_id": request_id}, timeout=30)
            return poll.status_code == 200

        assert wait_until(complete, timeout=120, interval=0.3) is not None
    finally:
        kill_9(first)
    second = GatewayProcess(data, "--orch-addr", orchestrator.base_url)
    try:
        deadline = time.monotonic() + 10
        while True:
            poll = requests.post(
                second.base_url + "/image-to-video/result", json={"request_id": request_id}, timeout=30
            )
            if poll.status_code != 202 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert poll.status_code == 200, poll.text
        assert poll.json()["status"] == "complete"
    finally:
        second.stop()
