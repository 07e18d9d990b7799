"""The runner pool on real `lpnode runner` processes on loopback: warm and cold models, capacity, slots
and eviction, restarts after a crash, external runners, and no runner outliving the pool."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest

from lpnode.orchestrator.ai_models import AIModelConfig
from lpnode.orchestrator.pool import (
    InsufficientCapacity,
    LeasedRunner,
    PoolTimings,
    ProcessSettings,
    RunnerPool,
    UnknownModelError,
)
from procs import child_env

I2T = ("image-to-text", "lpnode/tiny-image-to-text")
LLM = ("llm", "lpnode/tiny-llm")
TIMINGS = PoolTimings(start_timeout=90, health_interval=0.5, health_timeout=2, ready_poll=0.2, close_timeout=20)
T = TypeVar("T")


def settings(models_dir: Path) -> ProcessSettings:
    return ProcessSettings(
        models_dir=models_dir,
        env={"TORCH_THREADS": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
        safety_checker_id="lpnode/tiny-safety-checker",
        version="1.2.3",
        stop_grace=5,
    )


def model(key: tuple[str, str], **fields: object) -> AIModelConfig:
    return AIModelConfig(pipeline=key[0], model_id=key[1], **fields)  # type: ignore[arg-type]


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(scenario(), 120)

    return asyncio.run(bounded())


async def health(runner: LeasedRunner) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(runner.url + "/health", headers=dict(runner.headers), timeout=aiohttp.ClientTimeout(total=5)) as r,
    ):
        status: str = (await r.json())["status"]
        return status


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in {"Z", "X"}


@pytest.fixture(autouse=True)
def _runners_before() -> None:
    """The runners this process had before the test (session fixtures' runners, e.g. under xdist): not the test's."""
    _EARLIER.clear()
    _EARLIER.update(runner_children())


_EARLIER: set[int] = set()


def runner_children() -> list[int]:
    """Live `lpnode runner` processes whose parent is this test process, started during the test."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        pid = int(stat.parent.name)
        if (
            int(fields[1]) == os.getpid()
            and fields[0] not in {"Z", "X"}
            and b"runner" in cmdline
            and pid not in _EARLIER
        ):
            found.append(pid)
    return found


def test_warm_model_is_ready_after_start_and_leases_a_live_runner(models_dir: Path, tmp_path: Path) -> None:
    async def scenario() -> int:
        configs = [model(I2T, warm=True), model(LLM)]
        async with RunnerPool(configs, settings(models_dir), tmp_path, slots=1, timings=TIMINGS) as pool:
            status = pool.snapshot()[I2T]
            assert (status.warm, status.capacity, status.in_use, status.idle) == (True, 1, 0, 1)
            assert status.version == "1.2.3"
            (runner,) = status.runners
            assert runner.state == "IDLE" and runner.slot == 0 and runner.pid
            assert runner.url.startswith("http://127.0.0.1:87")  # image-to-text base 8700 + slot, or next free
            assert Path(runner.log_path).is_file()  # noqa: ASYNC240 - one stat of a local file, in a test
            async with pool.lease(*I2T) as leased:
                assert leased.url == runner.url
                assert await health(leased) in {"IDLE", "OK"}
                assert (pool.snapshot()[I2T].in_use, pool.snapshot()[I2T].idle) == (1, 0)
            assert (pool.snapshot()[I2T].in_use, pool.snapshot()[I2T].idle) == (0, 1)
            # The only slot is held by a warm runner, which is never evicted: a cold model cannot start.
            started = time.monotonic()
            with pytest.raises(InsufficientCapacity, match=r"slot.*held by warm models"):
                async with pool.lease(*LLM):
                    pass
            assert time.monotonic() - started < 0.5
            with pytest.raises(UnknownModelError, match="not served here"):
                async with pool.lease("llm", "nope"):
                    pass
            return runner.pid

    pid = run(scenario)
    assert not running(pid), "close() left the runner running"
    assert runner_children() == []


def test_cold_model_starts_on_first_lease_and_capacity_is_honoured(models_dir: Path, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with RunnerPool(
            [model(LLM, capacity=2)], settings(models_dir), tmp_path, slots=2, timings=TIMINGS
        ) as pool:
            status = pool.snapshot()[LLM]
            assert (status.warm, status.capacity, status.idle, status.runners) == (False, 2, 0, ())
            first, second = pool.lease(*LLM), pool.lease(*LLM)
            deadline = time.monotonic() + 90
            a, b = await asyncio.gather(first.__aenter__(), second.__aenter__())
            try:
                assert time.monotonic() < deadline
                assert a.url != b.url
                assert {await health(a), await health(b)} <= {"IDLE", "OK"}
                started = time.monotonic()
                with pytest.raises(InsufficientCapacity) as caught:
                    async with pool.lease(*LLM, deadline=time.monotonic() + 30):
                        pass
                assert time.monotonic() - started < 0.5
                assert caught.value.message == "insufficient capacity" and caught.value.status_code == 503
            finally:
                await second.__aexit__(None, None, None)
                await first.__aexit__(None, None, None)
            status = pool.snapshot()[LLM]
            assert (status.in_use, status.idle, len(status.runners)) == (0, 2, 2)

    run(scenario)
    assert runner_children() == []


def test_idle_cold_runner_is_evicted_when_another_cold_model_needs_the_slot(models_dir: Path, tmp_path: Path) -> None:
    async def scenario() -> None:
        configs = [model(I2T), model(LLM)]
        async with RunnerPool(configs, settings(models_dir), tmp_path, slots=1, timings=TIMINGS) as pool:
            async with pool.lease(*I2T) as leased:
                assert await health(leased) in {"IDLE", "OK"}
                # The slot is leased, so nothing can be evicted for the other model.
                with pytest.raises(InsufficientCapacity, match="slot"):
                    async with pool.lease(*LLM):
                        pass
            (first,) = pool.snapshot()[I2T].runners
            async with pool.lease(*LLM) as leased:
                assert await health(leased) in {"IDLE", "OK"}
                assert pool.snapshot()[I2T].runners == ()
                assert first.pid is not None and not running(first.pid)
                (second,) = pool.snapshot()[LLM].runners
                assert second.slot == first.slot == 0

    run(scenario)
    assert runner_children() == []


def test_a_killed_warm_runner_is_noticed_and_restarted(models_dir: Path, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with RunnerPool(
            [model(I2T, warm=True)], settings(models_dir), tmp_path, slots=1, timings=TIMINGS
        ) as pool:
            (before,) = pool.snapshot()[I2T].runners
            assert before.pid
            async with pool.lease(*I2T) as leased:
                os.kill(before.pid, signal.SIGKILL)
                # The lease holding the dead runner is told; it does not hang.
                await asyncio.wait_for(leased.lost.wait(), 5)
            async with pool.lease(*I2T, deadline=time.monotonic() + 90) as leased:
                assert await health(leased) in {"IDLE", "OK"}
            (after,) = pool.snapshot()[I2T].runners
            assert after.pid != before.pid and after.state in {"IDLE", "OK"} and after.slot == before.slot
            assert "exited unexpectedly" not in after.problem

    run(scenario)
    assert runner_children() == []


def test_a_hung_runner_fails_its_health_checks_and_is_replaced(models_dir: Path, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with RunnerPool(
            [model(LLM, warm=True)], settings(models_dir), tmp_path, slots=1, timings=TIMINGS
        ) as pool:
            (before,) = pool.snapshot()[LLM].runners
            assert before.pid
            os.kill(before.pid, signal.SIGSTOP)  # alive but silent: only /health can tell
            try:
                deadline = time.monotonic() + 30
                # The pool has no event for a replaced runner: its snapshot is polled.
                while pool.snapshot()[LLM].runners[0].pid == before.pid and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
            finally:
                if running(before.pid):
                    os.kill(before.pid, signal.SIGCONT)
            async with pool.lease(*LLM, deadline=time.monotonic() + 90) as leased:
                assert await health(leased) in {"IDLE", "OK"}
            (after,) = pool.snapshot()[LLM].runners
            assert after.pid != before.pid
            assert not running(before.pid)

    run(scenario)
    assert runner_children() == []


def test_external_runner_is_shared_up_to_its_capacity_with_the_token(
    start_runner,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    external = start_runner(*I2T, "--auth-token", "s3cret", "--threads", "1")
    assert external.wait_status({"IDLE", "ERROR"})[-1] == "IDLE", external.log()

    async def scenario() -> None:
        configs = [model(I2T, url=external.base_url, token="s3cret", capacity=2)]
        async with RunnerPool(configs, settings(tmp_path), tmp_path, slots=0, timings=TIMINGS) as pool:
            status = pool.snapshot()[I2T]
            (runner,) = status.runners
            assert (runner.external, runner.state, runner.pid, status.capacity, status.idle) == (
                True,
                "IDLE",
                None,
                2,
                2,
            )
            async with pool.lease(*I2T) as a, pool.lease(*I2T) as b:
                assert a.url == b.url == external.base_url
                assert a.headers == {"Authorization": "Bearer s3cret"}
                with pytest.raises(InsufficientCapacity):
                    async with pool.lease(*I2T):
                        pass
                async with aiohttp.ClientSession() as session:
                    form = aiohttp.FormData({"prompt": "x"})
                    async with session.post(a.url + "/image-to-text", data=form, headers=dict(a.headers)) as r:
                        assert r.status != 401, await r.text()  # the token is accepted (the image is missing)
                    async with session.post(a.url + "/image-to-text", data=aiohttp.FormData({"prompt": "x"})) as r:
                        assert r.status == 401

    run(scenario)
    assert external.proc.poll() is None, "the pool must not stop an external runner"


LAUNCHER = """
import asyncio, json, sys
from pathlib import Path
from lpnode.orchestrator.ai_models import AIModelConfig
from lpnode.orchestrator.pool import PoolTimings, ProcessSettings, RunnerPool

async def main():
    settings = ProcessSettings(models_dir=Path(sys.argv[1]), env={"TORCH_THREADS": "1"})
    configs = [AIModelConfig(pipeline="image-to-text", model_id="lpnode/tiny-image-to-text", warm=True)]
    pool = RunnerPool(configs, settings, Path(sys.argv[2]), timings=PoolTimings(start_timeout=90))
    problems = await pool.start()
    pids = [r.pid for s in pool.snapshot().values() for r in s.runners]
    print(json.dumps({"pids": pids, "problems": problems}), flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def test_no_runner_outlives_a_pool_process_killed_with_sigkill(models_dir: Path, tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(models_dir), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    pids: list[int] = []
    try:
        assert parent.stdout is not None
        ready, _, _ = select.select([parent.stdout], [], [], 100)
        assert ready, "the pool did not start within 100 s"
        report = json.loads(parent.stdout.readline())
        pids = report["pids"]
        assert report["problems"] == [] and len(pids) == 1 and running(pids[0])
        parent.kill()  # SIGKILL: the pool gets no chance to stop its runners
        parent.wait(timeout=10)
        deadline = time.monotonic() + 15
        while any(running(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(running(p) for p in pids), "a runner outlived the pool's process"
    finally:
        parent.kill()
        parent.wait(timeout=10)
        if parent.stdout is not None:
            parent.stdout.close()
        for pid in pids:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
