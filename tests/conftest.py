from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from procs import RunnerProcess, run_cli


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every tiny model, built once per session by the real `lpnode models tiny` command."""
    path = tmp_path_factory.mktemp("models")
    result = run_cli("models", "tiny", "--models-dir", str(path), timeout=300)
    assert result.returncode == 0, result.stderr
    return path


RunnerFactory = Callable[..., RunnerProcess]


@pytest.fixture(scope="module")
def start_runner(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerFactory]:
    """Start `lpnode runner` processes for this module; all are stopped when it ends."""
    started: list[RunnerProcess] = []
    logs = tmp_path_factory.mktemp("logs")

    def start(
        pipeline: str, model_id: str, *extra: str, models: Path | None = None, env: dict[str, str] | None = None
    ) -> RunnerProcess:
        args = [
            "--pipeline",
            pipeline,
            "--model-id",
            model_id,
            "--models-dir",
            str(models or models_dir),
            "--safety-checker",
            "lpnode/tiny-safety-checker",
            *extra,
        ]
        runner = RunnerProcess(args, logs / f"runner-{len(started)}.log", env=env)
        started.append(runner)
        return runner

    yield start
    for runner in started:
        runner.stop()
