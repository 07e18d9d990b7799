"""The fault matrix, once each: a process killed or frozen mid-job, and what the clients saw.

Where another orchestrator (or worker) offers the model, no request may be lost; the part that was hit comes
back where it is meant to; no process outlives its parent; no process logs a traceback.
``benchmarks/reliability.py`` repeats the same faults (:mod:`faults`) and reports the figures in
docs/reliability.md.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import faults
import pytest
import requests
from live_nodes import LiveNetwork, write_clip
from nodes import BODY, Pair, Up, Workers, call, logs_with_tracebacks, wait_until

from procs import GatewayProcess, RunnerProcess, wait_gone
from up_stack import pids_under

FROZEN_TIMEOUT = 8.0  # the gateway's --timeout while an orchestrator is frozen


@pytest.fixture(scope="module")
def pair(shared_runner: RunnerProcess, models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """Orchestrators A and B for the module; each test puts a fresh gateway in front of them. The test that
    kills A runs last."""
    network = Pair(shared_runner, models_dir, tmp_path_factory.mktemp("pair"))
    yield network
    assert network.stop() == [], "processes outlived the tests"


def test_a_runner_killed_mid_job_costs_no_request_and_is_restarted(pair: Pair, tmp_path: Path) -> None:
    pair.open_gateway(tmp_path)
    outcome = faults.kill_runner_mid_job(pair)
    assert outcome.statuses == [200] * len(outcome.answers), [a.message for a in outcome.answers]
    assert outcome.back_seconds is not None, "orchestrator A never restarted its runner"
    assert outcome.orphans == []
    assert logs_with_tracebacks([pair.root, tmp_path]) == {}


def test_a_frozen_orchestrator_is_abandoned_at_the_deadline_and_the_next_jobs_go_elsewhere(
    pair: Pair, tmp_path: Path
) -> None:
    pair.open_gateway(tmp_path, timeout=FROZEN_TIMEOUT)
    outcome = faults.freeze_orchestrator(pair)
    assert outcome.unanswered == 0, [a.message for a in outcome.answers]
    assert set(outcome.statuses) <= {200, 504}, [a.message for a in outcome.answers]
    assert outcome.worst_seconds < FROZEN_TIMEOUT + 4, [(a.status, round(a.seconds, 1)) for a in outcome.answers]
    after = outcome.answers[-3:]  # sent once the first ones were answered: A is suspended by then
    assert [a.status for a in after] == [200] * 3, [a.message for a in after]
    assert max(a.seconds for a in after) < FROZEN_TIMEOUT / 2, [round(a.seconds, 1) for a in after]
    assert outcome.back_seconds is not None, "orchestrator A did not answer again after SIGCONT"
    assert logs_with_tracebacks([pair.root, tmp_path]) == {}


def test_a_job_whose_only_orchestrator_is_frozen_gets_a_504_by_its_deadline(pair: Pair, tmp_path: Path) -> None:
    pair.a.proc.send_signal(signal.SIGSTOP)
    try:
        gateway = GatewayProcess(tmp_path, "--orch-addr", pair.a.base_url, "--timeout", "3")
        try:
            # Once the first discovery has given up on A, a job starts one of its own, longer than its deadline.
            status_url = gateway.admin_url + "/status"
            assert wait_until(lambda: requests.get(status_url, timeout=5).json()["orchestrators"][0]["problem"], 30)
            answer = call(gateway.base_url + "/text-to-image", BODY, timeout=30)
        finally:
            gateway.stop()
    finally:
        pair.a.proc.send_signal(signal.SIGCONT)
    assert answer.status in (503, 504) and answer.seconds < 3 + 2, answer
    assert json.loads(answer.message)["error"]["message"], answer
    assert logs_with_tracebacks([tmp_path]) == {}


def test_an_orchestrator_killed_mid_job_costs_no_request_and_takes_its_runner_along(pair: Pair, tmp_path: Path) -> None:
    pair.open_gateway(tmp_path)
    outcome = faults.kill_orchestrator_mid_job(pair)
    assert outcome.statuses == [200] * len(outcome.answers), [a.message for a in outcome.answers]
    assert outcome.orphans == [], "the killed orchestrator's runner outlived it"
    assert logs_with_tracebacks([pair.root, tmp_path]) == {}


@pytest.fixture
def workers(models_dir: Path, tmp_path: Path) -> Iterator[Workers]:
    network = Workers(models_dir, tmp_path)
    yield network
    assert network.stop() == [], "processes outlived the test"


def test_a_remote_worker_killed_mid_job_costs_no_request_and_takes_its_runner_along(workers: Workers) -> None:
    outcome = faults.kill_worker_mid_job(workers)
    assert outcome.statuses == [200] * len(outcome.answers), [a.message for a in outcome.answers]
    assert outcome.orphans == [], "the killed worker's runner outlived it"
    assert logs_with_tracebacks([workers.root]) == {}


def test_lpnode_up_restarts_its_killed_orchestrator_or_exits_saying_why(
    shared_runner: RunnerProcess, tmp_path: Path
) -> None:
    up = Up(shared_runner, tmp_path)
    watched: list[int] = []
    try:
        watched = pids_under(up.proc.pid)
        outcome = faults.kill_up_orchestrator(up)
        if up.proc.poll() is None:
            assert outcome.back_seconds is not None, (outcome.statuses, up.log())
            assert outcome.answers[-1].status == 200
            assert up.orchestrator_pid() is not None
        else:  # gave up: it must say why, with a non-zero status
            assert up.proc.returncode != 0, up.log()
            assert "lpnode: error:" in up.log()
        assert outcome.orphans == []
        watched += pids_under(up.proc.pid)
    finally:
        up.stop()
    assert wait_gone([up.proc.pid, *watched]) == [], "lpnode up left processes behind"
    assert logs_with_tracebacks([tmp_path]) == {}


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveNetwork]:
    network = LiveNetwork(tmp_path / "live")
    yield network
    assert network.stop() == [], "processes outlived the test"


def test_a_live_runner_killed_mid_stream_costs_no_stream_and_is_restarted(live: LiveNetwork, tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    outcome = faults.kill_live_runner_mid_stream(live, clip, write_clip(clip, 16.0), tmp_path)
    hit, *after = outcome.answers
    assert hit.status == 200, (hit.message, outcome.notes)  # it went on at the other orchestrator
    assert outcome.back_seconds is not None, f"the orchestrator never restarted its live runner: {outcome.notes}"
    assert [a.status for a in after] == [200, 200], ([a.message for a in after], outcome.notes)
    # Both orchestrators served again at once: the restarted runner took one of the new streams.
    assert outcome.served_by == sorted([live.a.base_url, live.b.base_url]), outcome.notes
    assert outcome.orphans == [], "the killed runner's pipeline process outlived it"
    assert logs_with_tracebacks([live.root]) == {}
