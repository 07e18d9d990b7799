from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from filelock import FileLock

sys.path.insert(0, str(Path(__file__).parent))

from procs import RunnerProcess, run_cli, wait_gone
from up_stack import Stack, pids_under

INTEGRATION = Path(__file__).parent / "integration"
RELIABILITY = Path(__file__).parent / "reliability"  # the reliability suite: every test starts processes
# Fixtures below that start real processes; a test using one is a `processes` test wherever it lives.
PROCESS_FIXTURES = ("models_dir", "start_runner", "stack")
# Session fixtures several modules share: under pytest-xdist (`make test` runs two workers) the modules using one
# run on the same worker, so each is started once per run, as without xdist.
SHARED_SESSION_FIXTURES = ("stack", "shared_runner", "docker_engine")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `processes` every test under tests/integration or tests/reliability and every test using a process
    fixture of this file (a module defining its own fixture of that name is left alone), so `pytest -m "not
    processes"` is the in-process tier. Other tests that start processes carry the mark themselves.

    Each test also gets an xdist group: its module, or the shared session fixture it uses, so `--dist loadgroup`
    keeps a module's fixtures on one worker and starts each shared fixture once."""
    for item in items:
        module, used = getattr(item, "module", None), getattr(item, "fixturenames", ())
        if (
            item.path.is_relative_to(INTEGRATION)
            or item.path.is_relative_to(RELIABILITY)
            or any(name in used and not hasattr(module, name) for name in PROCESS_FIXTURES)
        ):
            item.add_marker(pytest.mark.processes)
        shared = [name for name in SHARED_SESSION_FIXTURES if name in used and not hasattr(module, name)]
        item.add_marker(pytest.mark.xdist_group(shared[0] if shared else item.path.stem))


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every tiny model, built once per run by the real `lpnode models tiny` command (shared by xdist workers:
    the first one builds, the others wait on the lock and reuse it)."""
    shared = shared_temp(tmp_path_factory)
    path, done = shared / "models", shared / "models.built"
    with FileLock(str(shared / "models.lock")):
        if not done.exists():
            result = run_cli("models", "tiny", "--models-dir", str(path), timeout=300)
            assert result.returncode == 0, result.stderr
            done.touch()
    return path


def shared_temp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temp dir every xdist worker of this run sees (the run's base temp dir without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if base.name.startswith("popen-gw") else base


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
