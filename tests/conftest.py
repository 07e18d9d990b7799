from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from procs import RunnerProcess, run_cli, wait_gone
from up_stack import Stack, pids_under

INTEGRATION = Path(__file__).parent / "integration"
RELIABILITY = Path(__file__).parent / "reliability"  # the reliability suite: every test starts processes
# Fixtures below that start real processes; a test using one is a `processes` test wherever it lives.
PROCESS_FIXTURES = ("models_dir", "start_runner", "stack")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `processes` every test under tests/integration or tests/reliability and every test using a process
    fixture of this file (a module defining its own fixture of that name is left alone), so `pytest -m "not
    processes"` is the in-process tier. Other tests that start processes carry the mark themselves."""
    for item in items:
        module, used = getattr(item, "module", None), getattr(item, "fixturenames", ())
        if (
            item.path.is_relative_to(INTEGRATION)
            or item.path.is_relative_to(RELIABILITY)
            or any(name in used and not hasattr(module, name) for name in PROCESS_FIXTURES)
        ):
            item.add_marker(pytest.mark.processes)


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


@pytest.fixture(scope="session")
def stack(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One `lpnode up` for the session (test_up.py, test_dashboard.py, test_status_doctor.py); it must stop
    cleanly at the end. The session's models dir is linked in, so no tiny model is built again."""
    data = tmp_path_factory.mktemp("up")
    (data / "models").symlink_to(models_dir, target_is_directory=True)
    node = Stack(data)
    try:
        node.curl = node.wait_ready()
        yield node
    finally:
        orchestrator_pids = pids_under(node.proc.pid)
        assert node.stop() == 0, node.log()
        assert wait_gone(orchestrator_pids) == [], "lpnode up left processes behind"
        assert "Traceback" not in node.log()
