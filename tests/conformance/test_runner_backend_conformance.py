"""The conformance kit every runner backend passes (``lpnode.orchestrator.pool``: :class:`RunnerBackend`).

Each test runs once per backend, on real ``lpnode runner`` processes with the tiny models: the process
backend starts them itself; for the external-URL backend the test starts one the way an operator would and
hands its URL and token over. Every backend: starts a runner for a (pipeline, model) spec that becomes
healthy and answers a job with the headers its handle gives; stops it (bounded, idempotent) and closes with
nothing it owns left running, and nothing it does not own stopped; under the pool, reports the runner's
state, and after a crash either restarts it (a backend that supervises: ``managed``) or marks it UNHEALTHY
with a clear message until it answers again (one that only watches); and a spec it cannot serve is one
clear line, never a traceback.

The Docker backend runs against the real engine of tests/docker_engine.py with the ``lpnode-runner:test`` image
built from this checkout (so this module runs on the xdist worker that holds the engine): its runners are
containers, a runner's identity is its container, and a crash is ``docker kill``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from docker_engine import DockerEngine, docker_engine
from lpnode.orchestrator.ai_models import AIModelConfig
from lpnode.orchestrator.pool import (
    ExternalBackend,
    PoolTimings,
    ProcessBackend,
    ProcessSettings,
    RunnerBackend,
    RunnerHandle,
    RunnerPool,
    RunnerSpec,
    RunnerStatus,
    RunnerUnavailableError,
)
from lpnode.orchestrator.pool.docker import DockerBackend, DockerSettings
from lpnode.orchestrator.pool.docker_images import ImageOverrides
from procs import RunnerProcess, child_env, free_port, pid_alive, wait_gone
from up_stack import pids_under

pytestmark = pytest.mark.processes
__all__ = ["docker_engine"]  # the session fixture, used by the Docker case

LLM = ("llm", "lpnode/tiny-llm")
TOKEN = "conformance-token"
JOB = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
TIMINGS = PoolTimings(
    start_timeout=90, external_start_timeout=5, health_interval=0.5, health_timeout=2, ready_poll=0.2, close_timeout=20
)
T = TypeVar("T")


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(scenario(), 150)

    return asyncio.run(bounded())


def settings(models_dir: Path) -> ProcessSettings:
    return ProcessSettings(
        models_dir=models_dir,
        env={"TORCH_THREADS": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
        safety_checker_id="lpnode/tiny-safety-checker",
        stop_grace=5,
    )


# --- the backends under test ------------------------------------------------------------------------------


class BackendCase:
    """One backend, and what the kit needs to drive it: specs and aiModels.json entries it can serve, a
    pool on it, a way to crash a runner, and an entry it cannot serve with the words its failure must use."""

    name = ""

    def __init__(self, models_dir: Path, tmp: Path) -> None:
        self.models_dir = models_dir
        self.tmp = tmp

    def backend(self) -> RunnerBackend:
        raise NotImplementedError

    def spec(self, pipeline: str, model_id: str) -> RunnerSpec:
        raise NotImplementedError

    def config(self, pipeline: str, model_id: str) -> AIModelConfig:
        raise NotImplementedError

    def pool(self, configs: list[AIModelConfig]) -> RunnerPool:
        raise NotImplementedError

    def crash(self, runner: RunnerStatus) -> None:
        raise NotImplementedError

    def identity(self, runner: RunnerStatus | RunnerHandle) -> object:
        """What tells a managed runner from its replacement (a process backend's pid)."""
        return runner.pid

    def running(self, runner: RunnerStatus | RunnerHandle) -> bool:
        """The managed runner still runs (its process is alive)."""
        return runner.pid is not None and pid_alive(runner.pid)

    def gone(self, runners: list[RunnerStatus | RunnerHandle]) -> list[str]:
        """Of these managed runners, the ones still there after a short wait (none, when they were stopped)."""
        pids = [r.pid for r in runners]
        assert None not in pids
        return [str(pid) for pid in wait_gone([p for p in pids if p is not None])]

    def recover(self, runner: RunnerStatus, pipeline: str, model_id: str) -> None:
        """What the operator does after a crash the backend does not handle itself (nothing by default)."""

    def unservable(self) -> tuple[AIModelConfig, str]:
        raise NotImplementedError

    def outside_pids(self) -> set[int]:
        """Processes the test started itself, not the backend (an operator's runners)."""
        return set()

    def close(self) -> None:
        """Stop whatever the test started itself."""


class ProcessCase(BackendCase):
    name = "process"

    def backend(self) -> RunnerBackend:
        return ProcessBackend(settings(self.models_dir), self.tmp / "logs")

    def spec(self, pipeline: str, model_id: str) -> RunnerSpec:
        return RunnerSpec(pipeline, model_id, slot=0)

    def config(self, pipeline: str, model_id: str) -> AIModelConfig:
        return AIModelConfig(pipeline=pipeline, model_id=model_id, warm=True)

    def pool(self, configs: list[AIModelConfig]) -> RunnerPool:
        return RunnerPool(configs, self.backend(), self.tmp, slots=1, timings=TIMINGS)

    def crash(self, runner: RunnerStatus) -> None:
        assert runner.pid is not None
        os.kill(runner.pid, signal.SIGKILL)

    def unservable(self) -> tuple[AIModelConfig, str]:
        # Not in the models dir: the runner starts, and reports ERROR as its model fails to load.
        return AIModelConfig(pipeline="llm", model_id="lpnode/never-built", warm=True), "reported ERROR"


class ExternalCase(BackendCase):
    name = "external"

    def __init__(self, models_dir: Path, tmp: Path) -> None:
        super().__init__(models_dir, tmp)
        self.runners: list[RunnerProcess] = []

    def start_outside(self, pipeline: str, model_id: str, port: int | None = None) -> RunnerProcess:
        """An ``lpnode runner`` the way an operator runs one, with an auth token; ready when returned."""
        args = ["--pipeline", pipeline, "--model-id", model_id, "--models-dir", str(self.models_dir)]
        args += ["--auth-token", TOKEN, *(["--port", str(port)] if port else [])]
        log = self.tmp / f"outside-{len(self.runners)}.log"
        runner = RunnerProcess(args, log, env=child_env(TORCH_THREADS="1"), port=port)
        self.runners.append(runner)
        assert runner.wait_status({"IDLE", "ERROR"})[-1] == "IDLE", runner.log()
        return runner

    def backend(self) -> RunnerBackend:
        return ExternalBackend()

    def spec(self, pipeline: str, model_id: str) -> RunnerSpec:
        return RunnerSpec(pipeline, model_id, url=self.start_outside(pipeline, model_id).base_url, token=TOKEN)

    def config(self, pipeline: str, model_id: str) -> AIModelConfig:
        url = self.start_outside(pipeline, model_id).base_url
        return AIModelConfig(pipeline=pipeline, model_id=model_id, url=url, token=TOKEN)

    def pool(self, configs: list[AIModelConfig]) -> RunnerPool:
        return RunnerPool(
            configs, ProcessSettings(models_dir=self.tmp), self.tmp, slots=0, timings=TIMINGS, external=self.backend()
        )

    def crash(self, runner: RunnerStatus) -> None:
        (outside,) = [r for r in self.runners if r.base_url == runner.url and r.proc.poll() is None]
        outside.proc.kill()
        outside.proc.wait(timeout=10)

    def recover(self, runner: RunnerStatus, pipeline: str, model_id: str) -> None:
        self.start_outside(pipeline, model_id, port=int(runner.url.rsplit(":", 1)[1]))

    def unservable(self) -> tuple[AIModelConfig, str]:
        # Nothing listens at the URL.
        url = f"http://127.0.0.1:{free_port()}"
        return AIModelConfig(pipeline="llm", model_id="lpnode/tiny-llm", url=url, token=TOKEN), "/health"

    def outside_pids(self) -> set[int]:
        return {r.proc.pid for r in self.runners}

    def close(self) -> None:
        for runner in self.runners:
            runner.stop()


class DockerCase(ProcessCase):
    """Runners as containers of the test image, on the tests' engine; identified by their container's id."""

    name = "docker"
    engine: DockerEngine

    def __init__(self, models_dir: Path, tmp: Path) -> None:
        super().__init__(models_dir, tmp)
        self.creator_id = f"conformance-{tmp.name}"

    def backend(self) -> RunnerBackend:
        return DockerBackend(
            DockerSettings(
                models_dir=self.models_dir, image_overrides=ImageOverrides(batch={LLM[0]: self.engine.runner_image}),
                creator_id=self.creator_id, env=settings(self.models_dir).env, stop_timeout=5,
                safety_checker_id="lpnode/tiny-safety-checker",
            ),
            log_dir=self.tmp / "logs",
        )  # fmt: skip

    def pool(self, configs: list[AIModelConfig]) -> RunnerPool:
        return RunnerPool(configs, self.backend(), self.tmp, slots=1, timings=TIMINGS, models_dir=self.models_dir)

    def _inspect(self, name: str) -> tuple[str, bool]:
        found = self.engine.docker("inspect", "-f", "{{.Id}} {{.State.Running}}", name, check=False).split()
        return (found[0], found[1] == "true") if len(found) == 2 else ("", False)

    def identity(self, runner: RunnerStatus | RunnerHandle) -> object:
        return self._inspect(runner.name)[0] or None

    def running(self, runner: RunnerStatus | RunnerHandle) -> bool:
        return self._inspect(runner.name)[1]

    def gone(self, runners: list[RunnerStatus | RunnerHandle]) -> list[str]:
        deadline = time.monotonic() + 30
        while (left := self.containers()) and time.monotonic() < deadline:
            time.sleep(0.3)
        return left

    def containers(self) -> list[str]:
        return self.engine.containers(f"creator_id={self.creator_id}")

    def crash(self, runner: RunnerStatus) -> None:
        self.engine.docker("kill", runner.name)

    def close(self) -> None:
        for name in self.containers():  # only after a failure: every test expects them gone
            self.engine.docker("rm", "-f", name, check=False)


CASES: dict[str, type[BackendCase]] = {"process": ProcessCase, "external": ExternalCase, "docker": DockerCase}


@pytest.fixture(params=sorted(CASES))
def case(
    request: pytest.FixtureRequest, models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[BackendCase]:
    """A backend under test. Afterwards no process (or container) the backend started may still run."""
    chosen = CASES[request.param](models_dir, tmp_path)
    if isinstance(chosen, DockerCase):
        chosen.engine = request.getfixturevalue("docker_engine")
        monkeypatch.setenv("DOCKER_HOST", chosen.engine.host)
    before = set(pids_under(os.getpid()))
    try:
        yield chosen
        left = set(pids_under(os.getpid())) - before - chosen.outside_pids()
        assert wait_gone(sorted(left)) == [], f"the {chosen.name} backend left processes behind"
        if isinstance(chosen, DockerCase):
            assert chosen.containers() == [], "the docker backend left containers behind"
    finally:
        chosen.close()


# --- talking to a runner ------------------------------------------------------------------------------------


async def health(url: str, headers: Any) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url + "/health", headers=dict(headers), timeout=aiohttp.ClientTimeout(total=5)) as answer,
    ):
        status: str = (await answer.json())["status"]
        return status


async def until_healthy(handle: RunnerHandle, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if await health(handle.url, handle.headers) in {"IDLE", "OK"}:
                return
        except aiohttp.ClientError:
            pass
        assert time.monotonic() < deadline, f"{handle.name} not healthy after {timeout:g}s"
        await asyncio.sleep(0.2)


async def answer_a_job(url: str, headers: Any) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/llm", json=JOB, headers=dict(headers), timeout=aiohttp.ClientTimeout(total=60)) as r,
    ):
        assert r.status == 200, await r.text()
        body: dict[str, Any] = await r.json()
        return body


async def state_becomes(pool: RunnerPool, wanted: str, timeout: float = 20) -> RunnerStatus:
    deadline = time.monotonic() + timeout
    while True:
        (runner,) = pool.snapshot()[LLM].runners
        if runner.state == wanted:
            return runner
        assert time.monotonic() < deadline, f"runner state {runner.state}, never {wanted}: {runner.problem}"
        await asyncio.sleep(0.2)


async def replaced(case: BackendCase, pool: RunnerPool, before: object, timeout: float = 30) -> None:
    """Wait until the pool has noticed the runner ``before`` (its identity) is gone and put another in its place."""
    deadline = time.monotonic() + timeout
    while await asyncio.to_thread(case.identity, pool.snapshot()[LLM].runners[0]) in (before, None):
        assert time.monotonic() < deadline, "the pool did not notice its runner died"
        await asyncio.sleep(0.2)


# --- the kit -------------------------------------------------------------------------------------------------


def test_a_started_runner_answers_a_job_and_stops_cleanly(case: BackendCase) -> None:
    spec = case.spec(*LLM)

    async def scenario() -> None:
        backend = case.backend()
        handle = await backend.start(spec)
        try:
            assert LLM[0] in handle.name and handle.url.startswith("http://127.0.0.1:")
            await until_healthy(handle)
            assert (await answer_a_job(handle.url, handle.headers))["choices"]
            if backend.managed:
                assert case.running(handle)
                assert handle.log_path is not None and (handle.log_path.is_file() or case.name == "docker")
            else:
                assert handle.pid is None, "an external runner is not this backend's process"
        finally:
            await asyncio.wait_for(handle.stop(), 30)
        await asyncio.wait_for(handle.stop(), 5)  # idempotent
        await asyncio.wait_for(handle.wait_exit(), 5)  # returns once stopped, for every backend
        if backend.managed:
            assert case.gone([handle]) == []
            assert handle.log_path is not None and handle.log_path.is_file(), "the runner's log is kept"
        else:
            assert await health(spec.url, {"Authorization": f"Bearer {TOKEN}"}) == "IDLE", "not its runner to stop"
        await asyncio.wait_for(backend.close(), 30)

    run(scenario)


def test_close_stops_every_runner_the_backend_started(case: BackendCase) -> None:
    spec = case.spec(*LLM)

    async def scenario() -> None:
        backend = case.backend()
        handle = await backend.start(spec)
        await until_healthy(handle)
        await asyncio.wait_for(backend.close(), 30)  # without stopping the handle first
        if backend.managed:
            await asyncio.wait_for(handle.wait_exit(), 5)
            assert case.gone([handle]) == []
        else:
            assert await health(handle.url, handle.headers) == "IDLE", "close stops only what the backend started"
            await handle.stop()

    run(scenario)


def test_the_pool_reports_the_runner_and_leases_it_for_a_job(case: BackendCase) -> None:
    config = case.config(*LLM)

    async def scenario() -> None:
        pool = case.pool([config])
        try:
            assert await pool.start() == []
            status = pool.snapshot()[LLM]
            assert (status.capacity, status.in_use, status.idle) == (1, 0, 1)
            (runner,) = status.runners
            assert runner.state == "IDLE" and runner.external == config.external
            assert case.running(runner) != config.external and runner.version
            async with pool.lease(*LLM) as leased:
                assert leased.url == runner.url
                assert (pool.snapshot()[LLM].in_use, pool.snapshot()[LLM].idle) == (1, 0)
                assert (await answer_a_job(leased.url, leased.headers))["choices"]
            assert (pool.snapshot()[LLM].in_use, pool.snapshot()[LLM].idle) == (0, 1)
        finally:
            await pool.close()
        if not config.external:
            assert case.gone([runner]) == []

    run(scenario)


def test_a_crashed_runner_is_restarted_or_reported_as_the_backend_claims(case: BackendCase) -> None:
    config = case.config(*LLM)

    async def scenario() -> None:
        pool = case.pool([config])
        try:
            assert await pool.start() == []
            (before,) = pool.snapshot()[LLM].runners
            identity = await asyncio.to_thread(case.identity, before)
            await asyncio.to_thread(case.crash, before)  # the case's own waits stay off the loop
            if not config.external:  # the backend supervises: the pool restarts the runner in its slot
                await replaced(case, pool, identity)
                async with pool.lease(*LLM, deadline=time.monotonic() + 90) as leased:
                    assert (await answer_a_job(leased.url, leased.headers))["choices"]
                (after,) = pool.snapshot()[LLM].runners
                assert after.slot == before.slot and after.state in {"IDLE", "OK"}
                assert await asyncio.to_thread(case.identity, after) not in (identity, None)
                if before.pid is not None:
                    assert wait_gone([before.pid]) == []
            else:  # the backend only watches: the runner is UNHEALTHY, with why, until its operator restarts it
                down = await state_becomes(pool, "UNHEALTHY")
                assert "/health" in down.problem
                with pytest.raises(RunnerUnavailableError, match="check it is running") as caught:
                    async with pool.lease(*LLM):
                        pass
                assert before.url in caught.value.message and "Traceback" not in caught.value.message
                await asyncio.to_thread(case.recover, before, *LLM)
                await state_becomes(pool, "IDLE")
                async with pool.lease(*LLM) as leased:
                    assert (await answer_a_job(leased.url, leased.headers))["choices"]
        finally:
            await pool.close()

    run(scenario)


def test_an_entry_the_backend_cannot_serve_is_one_clear_error(case: BackendCase) -> None:
    config, words = case.unservable()

    async def scenario() -> None:
        pool = case.pool([config])
        try:
            (problem,) = await pool.start()
            assert problem.startswith(f"{config.pipeline} {config.model_id}: ") and words in problem, problem
            assert "Traceback" not in problem and "\n" not in problem
            with pytest.raises(RunnerUnavailableError) as caught:
                async with pool.lease(config.pipeline, config.model_id, deadline=time.monotonic() + 3):
                    pass
            message = caught.value.message
            assert config.model_id in message and "Traceback" not in message and "\n" not in message
            assert caught.value.status_code == 503
        finally:
            await pool.close()

    run(scenario)
