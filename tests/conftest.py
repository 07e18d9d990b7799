from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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
# run on the same worker, so each is started once per run, as without xdist. Each module runs whole on one worker
# (its module fixtures are made once); these groups put several modules on one. The controller schedules by test
# id alone, so the groups are listed here, and collection checks them against the fixtures each test uses.
SHARED_GROUPS = {
    "stack": (
        "tests/integration/test_admin_api.py",
        "tests/integration/test_dashboard.py",
        "tests/integration/test_status_doctor.py",
        "tests/integration/test_up.py",
    ),
    "shared_runner": ("tests/reliability/",),
    "docker_engine": (
        "tests/conformance/test_runner_backend_conformance.py",
        "tests/integration/test_docker_compose.py",
        "tests/integration/test_docker_runner.py",
    ),
}


def xdist_group(nodeid: str) -> str:
    """The unit of work a test belongs to under xdist: its shared fixture's group, else its module."""
    module = nodeid.split("::", 1)[0]
    return next((name for name, paths in SHARED_GROUPS.items() if module.startswith(paths)), module)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Whole modules (and :data:`SHARED_GROUPS`) per worker. (xdist's own ``loadgroup`` cannot be used: it renames
    test ids, which pytest 9 no longer allows.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group(nodeid)

    return ModuleGroups(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `processes` every test under tests/integration or tests/reliability and every test using a process
    fixture of this file (a module defining its own fixture of that name is left alone), so `pytest -m "not
    processes"` is the in-process tier. Other tests that start processes carry the mark themselves.

    A test using a shared session fixture must be in that fixture's xdist group (:data:`SHARED_GROUPS`)."""
    for item in items:
        module, used = getattr(item, "module", None), getattr(item, "fixturenames", ())
        if (
            item.path.is_relative_to(INTEGRATION)
            or item.path.is_relative_to(RELIABILITY)
            or any(name in used and not hasattr(module, name) for name in PROCESS_FIXTURES)
        ):
            item.add_marker(pytest.mark.processes)
        for name in SHARED_GROUPS:
            if name in used and not hasattr(module, name) and xdist_group(item.nodeid) != name:
                raise pytest.UsageError(
                    f"{item.nodeid} uses the session fixture {name!r}: list its module in "
                    "SHARED_GROUPS in tests/conftest.py"
                )


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
