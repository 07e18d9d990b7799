"""A client that hangs up on the runner mid-job: the job stops, and nothing is logged as an error (asyncio's
"Future exception was never retrieved" came from the worker's end no one read). The runner app runs in
process under uvicorn on loopback, with a custom pipeline that takes 10 ms steps."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
from pathlib import Path

import aiohttp
import pytest
import uvicorn

from lpnode.runner.app import create_app
from lpnode.runner.config import RunnerConfig

PIPELINE_CLASS = "custom_pipelines.slow_steps:SlowStepsPipeline"


async def hang_up_mid_job(tmp_path: Path) -> tuple[int, str]:
    """Start a job, hang up after 0.3 s, wait until the runner has stopped it; its cancelled-jobs count
    and health afterwards."""
    config = RunnerConfig(pipeline="", pipeline_class=PIPELINE_CLASS, model_id="", model_dir=tmp_path, device="cpu")
    app = create_app(config)
    service = app.state.service
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with aiohttp.ClientSession() as session:
            while service.health() != "IDLE":  # noqa: ASYNC110 - the runner offers a state, not an event
                await asyncio.sleep(0.05)
            with contextlib.suppress(TimeoutError):
                await session.post(base + "/slow-steps", json={}, timeout=aiohttp.ClientTimeout(total=0.3))
            while service.health() != "IDLE":  # noqa: ASYNC110 - the job stops at its next step
                await asyncio.sleep(0.02)
            cancelled = int(service.metrics.cancelled._value.get())
        gc.collect()  # a future nobody read reports itself when collected
        await asyncio.sleep(0.1)
        return cancelled, service.health()
    finally:
        server.should_exit = True
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(serving, 10)
        sock.close()


def test_a_client_hanging_up_stops_the_job_without_an_error_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    cancelled, health = asyncio.run(asyncio.wait_for(hang_up_mid_job(tmp_path), 30))
    gc.collect()
    assert (cancelled, health) == (1, "IDLE")
    assert any("job cancelled" in r.getMessage() for r in caplog.records)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]
