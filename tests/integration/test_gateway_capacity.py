"""A burst on a model whose orchestrator has one place: the gateway queues what it cannot send yet, so every
request is served instead of 23 of 24 answering ``503 insufficient capacity``; a full queue still answers 503
with ``Retry-After``."""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from procs import GatewayProcess, OrchestratorProcess, RunnerProcess

T2I = "lpnode/tiny-text-to-image"
BODY = {"prompt": "x", "model_id": T2I, "width": 64, "height": 64, "num_inference_steps": 2}


@pytest.fixture(scope="module")
def runner(start_runner) -> RunnerProcess:  # type: ignore[no-untyped-def]
    node: RunnerProcess = start_runner("text-to-image", T2I, "--max-in-flight", "1", "--max-queue", "4")
    node.wait_status({"IDLE"})
    return node


@pytest.fixture(scope="module")
def orchestrator(runner: RunnerProcess, models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("orch")
    entry = {"pipeline": "text-to-image", "model_id": T2I, "url": runner.base_url, "capacity": 1}
    (data / "aiModels.json").write_text(json.dumps([entry]))
    node = OrchestratorProcess(data / "aiModels.json", models_dir, data / "data")
    try:
        node.wait_ready()
        yield node.base_url
    finally:
        node.stop()


def burst(gateway: GatewayProcess, count: int) -> list[requests.Response]:
    def post(_: int) -> requests.Response:
        return requests.post(gateway.base_url + "/text-to-image", json=BODY, timeout=120)

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(post, range(count)))


def test_a_burst_on_a_capacity_one_model_is_served_not_refused(orchestrator: str, tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "gw", "--orch-addr", orchestrator)
    try:
        answers = burst(gateway, 24)
        assert [a.status_code for a in answers] == [200] * 24, [a.text for a in answers if a.status_code != 200]
        missing = requests.get(gateway.base_url + "/no-such-route", timeout=10)
        assert missing.status_code == 404
        assert missing.json()["error"]["message"] == "no route GET /no-such-route on this gateway"
    finally:
        gateway.stop()


def test_a_full_queue_answers_503_with_retry_after(orchestrator: str, tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "gw", "--orch-addr", orchestrator, "--queue-size", "2")
    try:
        answers = burst(gateway, 12)
        refused = [a for a in answers if a.status_code != 200]
        assert refused, "a queue of 2 cannot hold 11 waiting requests"
        assert all(a.status_code == 503 and int(a.headers["Retry-After"]) >= 1 for a in refused)
        assert all("queue for it is full" in a.json()["error"]["message"] for a in refused)
        assert sum(1 for a in answers if a.status_code == 200) >= 3
    finally:
        gateway.stop()
