"""A runner in a real Docker container. Runs only where a Docker engine answers and ``LPNODE_TEST_RUNNER_IMAGE``
names a runner image already on the machine; ``LPNODE_TEST_RUNNER_PIPELINE``/``_MODEL`` choose what it serves
(default: the tiny image-to-text model, built into the session's models dir)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import aiohttp
import pytest

from lpnode.orchestrator.pool import RunnerSpec
from lpnode.orchestrator.pool.docker import DockerBackend, DockerSettings, ImageOverrides, docker_available

IMAGE = os.environ.get("LPNODE_TEST_RUNNER_IMAGE", "")
NO_ENGINE = docker_available()
pytestmark = [
    pytest.mark.skipif(NO_ENGINE is not None, reason=NO_ENGINE or ""),
    pytest.mark.skipif(not IMAGE, reason="set LPNODE_TEST_RUNNER_IMAGE to a runner image to run this test"),
]


def test_a_container_runner_answers_health(models_dir: Path, tmp_path: Path) -> None:
    pipeline = os.environ.get("LPNODE_TEST_RUNNER_PIPELINE", "image-to-text")
    model_id = os.environ.get("LPNODE_TEST_RUNNER_MODEL", "lpnode/tiny-image-to-text")
    settings = DockerSettings(
        models_dir=models_dir,
        image_overrides=ImageOverrides(batch={pipeline: IMAGE}),
        creator_id=f"lpnode-test-{os.getpid()}",
    )

    async def scenario() -> str:
        backend = DockerBackend(settings, log_dir=tmp_path / "logs")
        try:
            handle = await backend.start(RunnerSpec(pipeline, model_id, slot=0))
            deadline = time.monotonic() + 120
            async with aiohttp.ClientSession() as session:
                while True:
                    try:
                        async with session.get(handle.url + "/health", timeout=aiohttp.ClientTimeout(total=5)) as r:
                            if r.status == 200:
                                status: str = (await r.json())["status"]
                                return status
                    except (aiohttp.ClientError, TimeoutError):  # not listening yet
                        pass
                    assert time.monotonic() < deadline, f"no /health answer in 120s; see {handle.log_path}"
                    await asyncio.sleep(1)
        finally:
            await backend.close()

    assert asyncio.run(scenario()) in {"OK", "IDLE", "LOADING"}
