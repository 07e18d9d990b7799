"""A real Docker engine for the tests, and the runner image built from this checkout.

:func:`docker_engine` (session fixture; import it into a test module) reuses an engine that ``DOCKER_HOST`` (or
the default socket) already answers; otherwise it starts the private engine of ``scripts/dockerd-up`` and, at the
end of the session, stops it with ``scripts/dockerd-down`` (the last xdist worker using it does, and only when
this fixture started it), leaving no container, process, bridge, rule or mount behind. It makes the base images
without a registry (``scripts/docker-base-images``) when missing, and builds ``lpnode-runner:test`` from
``docker/runner.Dockerfile`` once per run: a CPU image whose torch comes from a local wheel when this machine's
pip has one (else from PyPI's CPU index) and whose other packages are pinned to this environment's versions.
Images stay in the engine's data dir between runs, so a rebuild reuses its cached layers.

Tests skip, with the reason, only where the machine cannot run an engine: not root, or no dockerd and no apt.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
WHEELS = REPO / "docker" / "wheels"  # the Dockerfiles copy it to /wheels
RUNNER_IMAGE = "lpnode-runner:test"
STATE = Path(os.environ.get("DOCKER_STATE") or Path(tempfile.gettempdir()) / "lpnode-docker")
PRIVATE_HOST = f"unix://{STATE}/docker.sock"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


@dataclass(frozen=True)
class DockerEngine:
    """A Docker engine the tests may use: ``host`` is its ``DOCKER_HOST``; ``runner_image`` is built."""

    host: str
    runner_image: str

    def env(self, **extra: str) -> dict[str, str]:
        """This process's environment with ``DOCKER_HOST`` pointing at the engine, plus ``extra``."""
        return {**os.environ, "DOCKER_HOST": self.host, **extra}

    def docker(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        """Run the docker CLI against the engine; its standard output."""
        done = subprocess.run(["docker", *args], capture_output=True, text=True, env=self.env(), timeout=timeout)
        if check:
            assert done.returncode == 0, f"docker {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def logs(self, container: str) -> str:
        """A container's output (its standard output and error)."""
        done = subprocess.run(["docker", "logs", container], capture_output=True, text=True, env=self.env(), timeout=60)
        return done.stdout + done.stderr

    def client(self) -> Any:
        """A Docker SDK client for the engine (close it)."""
        import docker  # type: ignore[import-untyped]

        return docker.DockerClient(base_url=self.host)

    def containers(self, label: str) -> list[str]:
        """Names of the containers (running or not) carrying ``label`` (``key=value``)."""
        return sorted(self.docker("ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}").split())


def _answers(host: str | None) -> bool:
    env = {**os.environ, **({"DOCKER_HOST": host} if host else {})}
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(["docker", "version"], capture_output=True, env=env, timeout=20)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def engine_problem() -> str | None:
    """Why this machine cannot run a Docker engine for the tests, or None when it can."""
    if os.environ.get("DOCKER_HOST") or Path("/var/run/docker.sock").exists():
        return None  # an engine may answer there; the fixture checks
    if os.geteuid() != 0:
        return "a private Docker engine needs root (it creates a bridge and iptables rules); not root here"
    if shutil.which("dockerd") is None and shutil.which("apt-get") is None:
        return "no dockerd, and no apt-get to install docker.io"
    return None


def _apt_install(*packages: str) -> None:
    missing = [p for p, tool in packages_tools(packages) if shutil.which(tool) is None]
    if not missing:
        return
    subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True, timeout=300)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", *missing],
        check=True,
        capture_output=True,
        timeout=600,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


def packages_tools(packages: tuple[str, ...]) -> list[tuple[str, str]]:
    tools = {"docker.io": "dockerd", "debootstrap": "debootstrap", "docker-compose": "docker-compose"}
    return [(p, tools[p]) for p in packages]


def _script(name: str, env: dict[str, str], timeout: float = 600) -> str:
    done = subprocess.run([str(SCRIPTS / name)], capture_output=True, text=True, env=env, timeout=timeout)
    assert done.returncode == 0, f"scripts/{name} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _torch_build_args() -> list[str]:
    """Install this environment's torch in the image: its wheel from pip's local find-links dirs when there is
    one (linked into docker/wheels/), else the same version from PyTorch's CPU index."""
    version = metadata.version("torch")
    pip_config = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60
    ).stdout
    dirs = [os.environ.get("PIP_FIND_LINKS", "")]
    dirs += [line.split("=", 1)[1].strip("'\"") for line in pip_config.splitlines() if "find-links" in line]
    wheel_name = f"torch-{version}-cp{sys.version_info.major}{sys.version_info.minor}-"
    for folder in (Path(d) for entry in dirs for d in entry.split() if d):
        for wheel in sorted(folder.glob(wheel_name + "*.whl")) if folder.is_dir() else []:
            target = WHEELS / wheel.name
            if not target.exists():
                try:
                    os.link(wheel, target)
                except OSError:  # another filesystem
                    shutil.copy2(wheel, target)
            return ["--build-arg", f"TORCH=torch=={version}", "--build-arg", "PIP_FIND_LINKS=/wheels"]
    return ["--build-arg", f"TORCH=torch=={version}", "--build-arg", f"PIP_EXTRA_INDEX_URL={CPU_INDEX}"]


def _pin_versions() -> list[str]:
    """A constraints file pinning the image's packages to this environment's versions (what the tests ran)."""
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True, timeout=120
    ).stdout
    pins = sorted(line for line in frozen.splitlines() if "==" in line and " @ " not in line)
    path = WHEELS / "constraints.txt"
    text = "\n".join(pins) + "\n"
    if not path.exists() or path.read_text() != text:  # unchanged: the build's cached layers stay valid
        path.write_text(text)
    return ["--build-arg", "PIP_CONSTRAINT=/wheels/constraints.txt"]


def build_runner_image(engine: DockerEngine) -> float:
    """Build ``lpnode-runner:test`` from the checkout (cached layers make a rebuild take seconds); seconds taken."""
    started = time.monotonic()
    args = ["build", "-q", "-f", "docker/runner.Dockerfile", "-t", engine.runner_image]
    args += ["--build-arg", "BASE_IMAGE=python:3.11-slim", *_torch_build_args(), *_pin_versions(), str(REPO)]
    engine.docker(*args, timeout=900)
    engine.docker("image", "prune", "-f")  # the image this build replaced: its layers would pile up run after run
    return time.monotonic() - started


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerEngine]:
    problem = engine_problem()
    if problem is not None:
        pytest.skip(f"no Docker engine for the tests: {problem}")
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if base.name.startswith("popen-gw") else base  # every xdist worker of this run sees it
    users = Path(f"{STATE}.users")  # one file per test process using the engine
    lock = FileLock(f"{STATE}.lock")
    previous = os.environ.get("DOCKER_HOST")
    with lock:
        if previous is not None and _answers(previous):
            host = previous
        elif previous is None and _answers(None):
            host = "unix:///var/run/docker.sock"
        else:
            _apt_install("docker.io", "debootstrap", "docker-compose")
            env = {**os.environ, "DOCKER_STATE": str(STATE)}
            if not _answers(PRIVATE_HOST):
                _script("dockerd-up", env, timeout=120)
                users.mkdir(exist_ok=True)
                (users / "started-by-tests").touch()
            host = PRIVATE_HOST
            users.mkdir(exist_ok=True)
            (users / str(os.getpid())).touch()
        engine = DockerEngine(host, RUNNER_IMAGE)
        os.environ["DOCKER_HOST"] = host  # the in-process Docker SDK and every child process
        _apt_install("debootstrap", "docker-compose")
        _script("docker-base-images", engine.env(), timeout=600)
        built = shared / "runner-image.built"
        if not built.exists():
            seconds = build_runner_image(engine)
            built.write_text(f"{seconds:.1f}\n")
    try:
        yield engine
    finally:
        if previous is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = previous
        with lock:
            with contextlib.suppress(FileNotFoundError):
                (users / str(os.getpid())).unlink()
            others = [p for p in users.glob("[0-9]*") if _alive(int(p.name))] if users.is_dir() else []
            if not others:
                if (users / "started-by-tests").exists():
                    _script("dockerd-down", {**os.environ, "DOCKER_STATE": str(STATE)}, timeout=120)
                shutil.rmtree(users, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
