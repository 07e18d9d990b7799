"""`lpnode up` keeps its orchestrator running: killed, it is started again and requests work again; failing
again and again, `up` stops everything and says why. Nothing is left running either way.

Each test runs its own small `lpnode up` (one cold text-to-image model from the session's tiny models), so
killing its orchestrator disturbs no other test.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from procs import wait_gone
from up_stack import Stack, pids_under

# safety_check off: with --ai-models, runners look for the real safety checker, which is not in the models dir.
T2I = {
    "model_id": "lpnode/tiny-text-to-image",
    "prompt": "a lighthouse",
    "width": 64,
    "height": 64,
    "safety_check": False,
}
RECOVERY_SECONDS = 90.0


@pytest.fixture
def small_up(models_dir: Path, tmp_path: Path) -> Iterator[Stack]:
    (tmp_path / "models").symlink_to(models_dir, target_is_directory=True)
    entries = [{"pipeline": "text-to-image", "model_id": "lpnode/tiny-text-to-image", "warm": False}]
    (tmp_path / "aiModels.json").write_text(json.dumps(entries))
    node = Stack(tmp_path, "--ai-models", str(tmp_path / "aiModels.json"))
    try:
        node.wait_ready()
        yield node
    finally:
        left = pids_under(node.proc.pid)
        node.stop()
        assert wait_gone(left) == [], f"lpnode up left processes behind:\n{node.log()}"


def orchestrator(stack: Stack, not_pid: int | None = None, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = stack.orchestrator_pid()
        if pid is not None and pid != not_pid:
            return pid
        time.sleep(0.1)
    raise AssertionError(f"no orchestrator under lpnode up:\n{stack.log()}")


def test_a_killed_orchestrator_is_restarted_and_requests_work_again(small_up: Stack) -> None:
    first = requests.post(f"{small_up.base_url}/text-to-image", json=T2I, timeout=120)
    assert first.status_code == 200, (first.text, small_up.log())
    victim = orchestrator(small_up)
    runners = pids_under(victim)
    os.kill(victim, signal.SIGKILL)
    assert wait_gone(runners) == [], "the killed orchestrator's runners outlived it"

    killed_at = time.monotonic()
    statuses = []
    while time.monotonic() - killed_at < RECOVERY_SECONDS:
        try:
            answer = requests.post(f"{small_up.base_url}/text-to-image", json=T2I, timeout=60)
        except requests.ConnectionError:
            raise AssertionError(f"the gateway stopped answering:\n{small_up.log()}") from None
        statuses.append(answer.status_code)
        if answer.status_code == 200:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"no request served {RECOVERY_SECONDS:g}s after the kill ({statuses}):\n{small_up.log()}")
    assert orchestrator(small_up, not_pid=victim) != victim
    log = small_up.log()
    assert "orchestrator exited; restarting it" in log and 'reason="was killed by SIGKILL"' in log, log
    assert small_up.proc.poll() is None


def test_up_stops_everything_when_the_orchestrator_keeps_failing(small_up: Stack) -> None:
    victim = orchestrator(small_up)
    os.kill(victim, signal.SIGKILL)
    # Hold the orchestrator's port: every restart now fails at once ("the port is in use").
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 10
        while True:
            try:
                holder.bind(("127.0.0.1", small_up.orch_port))
                break
            except OSError:
                assert time.monotonic() < deadline, "the killed orchestrator's port never came free"
                time.sleep(0.05)
        holder.listen()
        # Backoff 1 + 2 + 4 + 8 s between the five quick exits, plus five failed starts.
        status = small_up.proc.wait(timeout=90)
    log = small_up.log()
    assert status == 2, log
    assert "lpnode: error: the orchestrator stopped 5 times in a row, each within 60s of its start" in log, log
    assert "Traceback" not in log
