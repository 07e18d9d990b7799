"""What the reliability tests share: one external text-to-image runner for the whole directory (the healthy
part of every network they break), started once and stopped at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from nodes import start_shared_runner

from procs import RunnerProcess


@pytest.fixture(scope="session")
def shared_runner(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProcess]:
    runner = start_shared_runner(models_dir, tmp_path_factory.mktemp("shared-runner") / "runner.log")
    try:
        yield runner
    finally:
        runner.stop()
