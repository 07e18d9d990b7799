"""A model the runner cannot load (missing from the models dir) is reported with the runner's own reason,
is not restarted forever, and comes back once its files appear.

The runners here are in-process stand-ins (an aiohttp app answering ``/health`` and a log file written the
way ``lpnode runner`` writes it), so the pool's bookkeeping runs in milliseconds; the same story on real
processes is in tests/integration/test_orchestrator_lifecycle.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from aiohttp import web

from lpnode.orchestrator.ai_models import AIModelConfig
from lpnode.orchestrator.pool import PoolTimings, RunnerPool, RunnerSpec, RunnerUnavailableError
from lpnode.orchestrator.pool.runner_log import START_MARKER, failure_reason

MODEL = ("text-to-image", "acme/missing-model")
TIMINGS = PoolTimings(
    start_timeout=5, health_interval=0.1, ready_poll=0.02, max_restart_delay=0.05, files_poll=0.1, close_timeout=5
)


def folder(models_dir: Path, model_id: str) -> Path:
    return models_dir / ("models--" + model_id.replace("/", "--"))


def failure_line(model_id: str, models_dir: Path) -> str:
    """What ``lpnode runner`` logs when the model is not in its models dir (lpnode.runner.service)."""
    reason = (
        f"model '{model_id}' is not in the models dir {models_dir}; "
        f"fetch it with: lpnode models pull {model_id} --models-dir {models_dir}"
    )
    return (
        f"2026-01-01T00:00:00 error lpnode.runner model failed to load pipeline=text-to-image "
        f'model_id={model_id} reason="{reason}"'
    )


class FakeRunner:
    def __init__(self, name: str, status: str, log_path: Path) -> None:
        self.name, self.status, self.log_path = name, status, log_path
        self.headers: Mapping[str, str] = {}
        self.pid: int | None = None
        self.url = ""
        self._stopped = asyncio.Event()
        self._site: web.AppRunner | None = None

    async def serve(self) -> None:
        async def health(_: web.Request) -> web.Response:
            return web.json_response({"status": self.status})

        async def version(_: web.Request) -> web.Response:
            return web.json_response({"version": "1.0.0"})

        app = web.Application()
        app.router.add_get("/health", health)
        app.router.add_get("/version", version)
        self._site = web.AppRunner(app)
        await self._site.setup()
        site = web.TCPSite(self._site, "127.0.0.1", 0)
        await site.start()
        port = self._site.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def wait_exit(self) -> int | None:
        await self._stopped.wait()
        return 0

    async def stop(self) -> None:
        if self._site is not None:
            await self._site.cleanup()
            self._site = None
        self._stopped.set()


class FakeBackend:
    """Starts a stand-in runner: IDLE when the model's folder exists in ``models_dir``, else ERROR with the
    runner's log line saying how to fetch it."""

    managed = True

    def __init__(self, models_dir: Path, log_dir: Path) -> None:
        self.models_dir, self.log_dir = models_dir, log_dir
        self.starts = 0

    async def start(self, spec: RunnerSpec) -> FakeRunner:
        self.starts += 1
        log_path = self.log_dir / f"{spec.pipeline}_{spec.slot}.log"
        present = folder(self.models_dir, spec.model_id).is_dir()
        lines = [f"{START_MARKER} runner {self.starts}"]
        lines += [] if present else [failure_line(spec.model_id, self.models_dir)]
        with log_path.open("a") as out:
            out.write("\n".join(lines) + "\n")
        runner = FakeRunner(f"fake-{self.starts}", "IDLE" if present else "ERROR", log_path)
        await runner.serve()
        return runner

    async def close(self) -> None:
        pass


async def until(predicate: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_a_warm_model_missing_from_the_models_dir_stops_in_error_with_the_pull_hint_and_returns_with_its_files(
    tmp_path: Path,
) -> None:
    models_dir, logs = tmp_path / "models", tmp_path / "logs"
    models_dir.mkdir()
    logs.mkdir()
    backend = FakeBackend(models_dir, logs)

    async def scenario() -> None:
        config = AIModelConfig(pipeline=MODEL[0], model_id=MODEL[1], warm=True)
        pool = RunnerPool([config], backend, tmp_path, timings=TIMINGS, models_dir=models_dir)
        async with pool:
            await until(lambda: pool.snapshot()[MODEL].error, 5)
            status = pool.snapshot()[MODEL]
            hint = f"lpnode models pull {MODEL[1]} --models-dir {models_dir}"
            assert hint in status.error and hint in status.last_error
            (runner,) = status.runners
            assert (runner.state, runner.slot) == ("ERROR", 0)
            assert hint in runner.problem
            # Restarts stop at three failed loads; none follows.
            await asyncio.sleep(0.5)
            assert backend.starts == 3
            # A request is told why at once, not after another start.
            started = time.monotonic()
            with pytest.raises(RunnerUnavailableError, match="lpnode models pull acme/missing-model"):
                async with pool.lease(*MODEL):
                    pass
            assert time.monotonic() - started < 0.1
            assert backend.starts == 3

            folder(models_dir, MODEL[1]).mkdir()  # the operator fetches the model
            await until(lambda: [r.state for r in pool.snapshot()[MODEL].runners] == ["IDLE"], 5)
            assert pool.snapshot()[MODEL].error == ""
            async with pool.lease(*MODEL) as leased:
                assert leased.url.startswith("http://127.0.0.1:")

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_cold_model_that_cannot_load_stops_starting_and_retry_starts_it_again(tmp_path: Path) -> None:
    models_dir, logs = tmp_path / "models", tmp_path / "logs"
    models_dir.mkdir()
    logs.mkdir()
    backend = FakeBackend(models_dir, logs)

    async def scenario() -> None:
        config = AIModelConfig(pipeline=MODEL[0], model_id=MODEL[1])
        async with RunnerPool([config], backend, tmp_path, timings=TIMINGS, models_dir=models_dir) as pool:
            for _ in range(5):
                with pytest.raises(RunnerUnavailableError, match="not in the models dir"):
                    async with pool.lease(*MODEL):
                        pass
                await asyncio.sleep(0.1)  # a failed runner's slot is free once it has stopped
            assert backend.starts == 3
            assert [r.state for r in pool.snapshot()[MODEL].runners] == ["ERROR"]
            folder(models_dir, MODEL[1]).mkdir()
            assert pool.retry(*MODEL)  # what an operator's request does, without waiting for the poll
            async with pool.lease(*MODEL):
                assert backend.starts == 4
            assert not pool.retry(*MODEL)

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_the_reason_is_read_from_the_last_start_in_the_runner_log(tmp_path: Path) -> None:
    log = tmp_path / "runner.log"
    assert failure_reason(log) == ""  # no log yet
    old = failure_line("acme/old", tmp_path)
    log.write_text(f"{START_MARKER} a\n{old}\n{START_MARKER} b\ninfo lpnode.runner loading model\n")
    assert failure_reason(log) == ""  # the failure belongs to an earlier start
    with log.open("a") as out:
        out.write(failure_line('acme/"quoted"', tmp_path).replace('"quoted"', '\\"quoted\\"') + "\n")
    assert failure_reason(log).startswith("model 'acme/\"quoted\"' is not in the models dir")
    log.write_text(f"{START_MARKER} c\nlpnode: error: PIPELINE_CLASS 'x:Y': no module named 'x'\n")
    assert failure_reason(log) == "PIPELINE_CLASS 'x:Y': no module named 'x'"


def test_doctor_names_a_model_the_pool_stopped_restarting_and_how_it_comes_back(tmp_path: Path) -> None:
    import io

    from lpnode.dashboard.doctor import Doctor

    out = io.StringIO()
    doctor = Doctor("https://127.0.0.1:1", "", None, tmp_path, out, None, None, checks=[])  # type: ignore[arg-type]
    reason = failure_line(MODEL[1], tmp_path).split('reason="', 1)[1].rstrip('"')
    cold_runner = {"state": "ERROR", "slot": None, "problem": reason}
    doctor.check_runners({"models": [{"pipeline": MODEL[0], "model_id": MODEL[1], "warm": False,
                                      "error": reason, "runners": [cold_runner]}]}, None)  # fmt: skip
    text = out.getvalue()
    assert f"FAIL  runner {MODEL[0]} {MODEL[1]}: ERROR, not restarted: {reason}" in text
    assert "lpnode models pull" in text and "files changing in the models dir" in text
