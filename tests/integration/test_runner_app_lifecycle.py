"""A runner app's life across stops and restarts, with real processes on loopback:

- SIGTERM to a runner registered as an app unregisters it first (it leaves discovery at once and new calls get
  ``404 runner not found``), then drains: the call it was serving completes with its answer;
- an orchestrator that restarts (same address, same secret, registry empty) gets its runners back: their next
  heartbeat is refused (the new node does not know the heartbeat secret) and they register anew with the
  orchestrator secret, under the same runner ID, so the app's URL keeps working.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from procs import OrchestratorProcess, RunnerProcess, child_env

SECRET = "runner-app-lifecycle-secret"
TESTS = Path(__file__).parents[1]


def start_orchestrator(data: Path, models_dir: Path, *, port: int = 0, admin_port: int = 0) -> OrchestratorProcess:
    """A plain-HTTP orchestrator hosting runner apps; on ``port`` (and ``admin_port``) when given."""
    again = ["--service-addr", f"http://127.0.0.1:{port}", "--cli-addr", f"127.0.0.1:{admin_port}"] if port else []
    node = OrchestratorProcess("", models_dir, data, "--orch-secret", SECRET, "-useLiveRunners", *again, plain=True)
    if port:  # the later flags win: point the helper at the address the node really serves
        node.port, node.admin_port = port, admin_port
        node.base_url, node.admin_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}"
    node.wait_ready(timeout=60)
    return node


def app_runner(orch: OrchestratorProcess, tmp_path: Path, pipeline_class: str, app: str) -> RunnerProcess:
    flags = ["--pipeline-class", pipeline_class, "--live-runner-orch", orch.base_url, "--orch-secret", SECRET]
    flags += ["--app-name", app, "--app-capacity", "2"]
    return RunnerProcess(flags, tmp_path / f"{app.replace('/', '-')}.log", env=child_env(PYTHONPATH=str(TESTS)))


def listed(orch: OrchestratorProcess, app: str) -> dict[str, Any] | None:
    answer = orch.get("/discovery", timeout=10)
    assert answer.status_code == 200, answer.text
    return next((r for entry in answer.json() for r in entry.get("runners", []) if r["app"] == app), None)


def wait_listed(orch: OrchestratorProcess, app: str, runner: RunnerProcess, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert runner.proc.poll() is None, runner.log()
        entry = listed(orch, app)
        if entry is not None:
            return entry
        time.sleep(0.1)
    raise AssertionError(f"{app} not listed after {timeout:g}s:\n{runner.log()}\n{orch.log()}")


def app_path(orch: OrchestratorProcess, entry: dict[str, Any]) -> str:
    """The app URL of ``entry`` under the orchestrator, plus the runner's own route (from its metadata)."""
    path: str = entry["url"].removeprefix(orch.base_url) + json.loads(entry["metadata"])["path"]
    return path


@pytest.fixture
def orchestrator(models_dir: Path, tmp_path: Path) -> Iterator[OrchestratorProcess]:
    node = start_orchestrator(tmp_path / "orch", models_dir)
    try:
        yield node
    finally:
        node.stop()


def test_sigterm_unregisters_first_then_drains_the_call_in_flight(
    orchestrator: OrchestratorProcess, tmp_path: Path
) -> None:
    runner = app_runner(orchestrator, tmp_path, "custom_pipelines.slow_steps:SlowStepsPipeline", "acme/slow")
    try:
        entry = wait_listed(orchestrator, "acme/slow", runner, timeout=60)
        path = app_path(orchestrator, entry)
        answers: list[requests.Response] = []
        call = threading.Thread(target=lambda: answers.append(orchestrator.post(path, json={"steps": 600}, timeout=60)))
        call.start()
        deadline = time.monotonic() + 20
        while (listed(orchestrator, "acme/slow") or {}).get("capacity_used") != 1:  # the call is in flight
            assert time.monotonic() < deadline and call.is_alive(), answers
            time.sleep(0.05)

        runner.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        while listed(orchestrator, "acme/slow") is not None:
            assert time.monotonic() - signalled < 3, "still listed 3 s after SIGTERM"
            time.sleep(0.05)
        assert call.is_alive(), "the call ended before the runner left discovery"  # it takes ~6 s
        late = orchestrator.post(path, json={"steps": 1}, timeout=10)
        assert late.status_code == 404 and late.text.strip() == "runner not found"

        call.join(timeout=40)
        assert answers and answers[0].status_code == 200, answers and answers[0].text
        assert answers[0].json() == {"steps": 600}  # drained: served to the end after unregistering
        assert runner.proc.wait(timeout=20) in (0, -signal.SIGTERM)
        log = runner.log()
        assert log.count("runner app unregistered") == 1 and "Traceback" not in log
    finally:
        runner.stop()


def test_runner_registers_again_after_the_orchestrator_restarts(
    models_dir: Path, tmp_path: Path, orchestrator: OrchestratorProcess
) -> None:
    runner = app_runner(orchestrator, tmp_path, "custom_pipelines.text_stats:WordCountPipeline", "acme/words")
    second: OrchestratorProcess | None = None
    try:
        before = wait_listed(orchestrator, "acme/words", runner, timeout=60)
        port, admin_port = orchestrator.port, orchestrator.admin_port
        assert orchestrator.stop() == 0
        time.sleep(1)  # at least one heartbeat finds nobody there
        second = start_orchestrator(tmp_path / "orch2", models_dir, port=port, admin_port=admin_port)
        assert listed(second, "acme/words") is None  # a new registry: nothing carried over
        after = wait_listed(second, "acme/words", runner, timeout=20)  # within a heartbeat interval or so
        assert after["url"] == before["url"]  # the same runner ID: clients' URLs still work
        answer = second.post(app_path(second, after), json={"text": "owl cat owl", "top": 1}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["top"] == [["owl", 2]]
        assert "registering again" in runner.log()
    finally:
        runner.stop()
        if second is not None:
            second.stop()
