"""docker/compose.yaml, as docs/docker.md runs it: ``docker-compose up -d`` brings up the runner, orchestrator and
gateway containers in order of health, a job sent to the gateway's published port is answered by the model in
the runner container, and ``down -v`` leaves no container, network or volume of the project. The services run
the runner image the session built (it holds all of lpnode), so nothing is built here."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from docker_engine import REPO, DockerEngine, docker_engine
from procs import free_port, run_cli

__all__ = ["docker_engine"]  # the session fixture, used by this module's test
COMPOSE = REPO / "docker" / "compose.yaml"


def compose(engine: DockerEngine, project: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = ["docker-compose", "-f", str(COMPOSE), "-p", project, *args]
    return subprocess.run(command, capture_output=True, text=True, env=engine.env(**env), timeout=300)


def wait_healthy(url: str, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return True
        except requests.ConnectionError:  # not listening yet (the published port resets the connection)
            pass
        time.sleep(0.2)
    return False


def test_compose_up_serves_a_job_through_the_gateway_and_down_removes_it(
    docker_engine: DockerEngine, tmp_path: Path
) -> None:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (scripts/install-test-deps installs it)")
    models = tmp_path / "models"
    built = run_cli("models", "tiny", "--pipeline", "llm", "--models-dir", str(models), timeout=300)
    assert built.returncode == 0, built.stderr
    port, project = free_port(), f"lpnodetest{uuid.uuid4().hex[:8]}"
    env = {
        "LPNODE_IMAGE": docker_engine.runner_image,
        "LPNODE_RUNNER_IMAGE": docker_engine.runner_image,
        "MODELS_DIR": str(models),
        "GATEWAY_PORT": str(port),
    }
    try:
        up = compose(docker_engine, project, env, "up", "-d")
        assert up.returncode == 0, up.stdout + up.stderr
        # `up -d` waits for the runner and the orchestrator to be healthy; nothing waits for the gateway.
        assert wait_healthy(f"http://127.0.0.1:{port}/healthz"), compose(docker_engine, project, env, "logs").stdout
        body = {"model": "lpnode/tiny-llm", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        answer = requests.post(f"http://127.0.0.1:{port}/llm", json=body, timeout=60)
        assert answer.status_code == 200, answer.text + compose(docker_engine, project, env, "logs").stdout
        assert answer.json()["choices"][0]["message"]["role"] == "assistant"
        assert answer.json()["model"] == "lpnode/tiny-llm"
    finally:
        down = compose(docker_engine, project, env, "down", "-v", "--remove-orphans")
    assert down.returncode == 0, down.stdout + down.stderr
    label = f"com.docker.compose.project={project}"
    assert docker_engine.containers(label) == []
    assert docker_engine.docker("network", "ls", "-q", "--filter", f"label={label}").split() == []
    assert docker_engine.docker("volume", "ls", "-q", "--filter", f"label={label}").split() == []
