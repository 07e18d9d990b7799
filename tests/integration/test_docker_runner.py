"""The orchestrator's Docker backend against a real Docker engine, with the runner image built from this checkout.

``lpnode orchestrator --runner-backend docker`` with an aiModels.json and ``-aiRunnerImageOverrides`` naming
``lpnode-runner:test`` starts its runner as go-livepeer starts ai-runner: the container's name, labels, read-only
``/models`` mount, port published on 127.0.0.1 and ai-runner environment are checked with ``docker inspect``, and
a job goes through it. Stale containers of an earlier run are removed at start (go-livepeer's rule), and no
container of ours is left after the orchestrator stops, or after it is SIGKILLed (the backend's reaper). The
engine and the image come from tests/docker_engine.py; the tiny model is built into the module's models dir.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import procs
from docker_engine import DockerEngine, docker_engine
from lpclient import get_orchestrator, job_headers
from procs import OrchestratorProcess, child_env, free_port, pid_alive, run_cli, wait_gone

__all__ = ["docker_engine"]  # the session fixture, used by this module's tests
PIPELINE, MODEL = "llm", "lpnode/tiny-llm"
JOB = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models")
    result = run_cli("models", "tiny", "--pipeline", PIPELINE, "--models-dir", str(path), timeout=300)
    assert result.returncode == 0, result.stderr
    return path


def start(engine: DockerEngine, models: Path, data: Path) -> OrchestratorProcess:
    (data / "aiModels.json").parent.mkdir(parents=True, exist_ok=True)
    (data / "aiModels.json").write_text(json.dumps([{"pipeline": PIPELINE, "model_id": MODEL, "warm": True}]))
    overrides = json.dumps({"batch": {PIPELINE: engine.runner_image}})  # llm has an image of its own upstream
    return OrchestratorProcess(
        data / "aiModels.json", models, data, "--runner-backend", "docker", "-aiRunnerImageOverrides", overrides,
        plain=True, env=child_env(DOCKER_HOST=engine.host),
    )  # fmt: skip


def wait_idle(node: OrchestratorProcess, timeout: float = 120) -> dict[str, Any]:
    """The runner once the pool has seen its /health answer IDLE."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert node.proc.poll() is None, node.log()
        runners = [r for m in node.status() for r in m["runners"]]
        assert not [r for r in runners if r["state"] == "ERROR"], f"{runners}\n{node.log()}"
        runners = [r for r in runners if r["state"] == "IDLE"]
        if runners:
            runner: dict[str, Any] = runners[0]
            return runner
        time.sleep(0.3)
    raise AssertionError(f"no runner became IDLE: {node.status()}\n{node.log()}")


def wait_no_containers(engine: DockerEngine, label: str, timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := engine.containers(label)) and time.monotonic() < deadline:
        time.sleep(0.3)
    return left


@pytest.fixture
def node(docker_engine: DockerEngine, models: Path, tmp_path: Path) -> Iterator[OrchestratorProcess]:
    orchestrator = start(docker_engine, models, tmp_path / "data")
    try:
        orchestrator.wait_ready()
        yield orchestrator
    finally:
        orchestrator.stop()
        for name in docker_engine.containers(f"creator_id={orchestrator.base_url}"):
            docker_engine.docker("rm", "-f", name, check=False)


def test_the_orchestrator_runs_its_runner_as_go_livepeer_runs_ai_runner(
    docker_engine: DockerEngine, models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = docker_engine
    port, admin_port = free_port(), free_port()
    monkeypatch.setattr(procs, "free_port", iter([port, admin_port]).__next__)  # the node's address, known first
    service = f"http://127.0.0.1:{port}"
    # What an earlier run of this node left behind (with its address, and one from before the creator_id label),
    # and a runner of another node on the same engine: the first two go at start, the third stays.
    sleeper = ["python3", "-c", "import time; time.sleep(600)"]
    for name, labels in [
        ("stale-runner", ["creator=ai-worker", f"creator_id={service}"]),
        ("legacy-runner", ["creator=ai-worker"]),
        ("other-node-runner", ["creator=ai-worker", "creator_id=https://other-node:8935"]),
    ]:
        flags = [part for label in labels for part in ("--label", label)]
        engine.docker("run", "-d", "--init", "--name", name, *flags, engine.runner_image, *sleeper)
    node = start(engine, models, tmp_path / "data")
    try:
        node.wait_ready()
        runner = wait_idle(node)
        assert engine.containers("creator=ai-worker") == sorted([runner["name"], "other-node-runner"])

        [info] = json.loads(engine.docker("inspect", runner["name"]))
        host_port = int(runner["url"].rsplit(":", 1)[1])
        assert info["Name"] == f"/llm_lpnode-tiny-llm_{host_port}"
        assert info["Config"]["Image"] == engine.runner_image
        labels = info["Config"]["Labels"]
        assert (labels["creator"], labels["creator_id"]) == ("ai-worker", service)
        env = dict(item.split("=", 1) for item in info["Config"]["Env"])
        assert (env["PIPELINE"], env["MODEL_ID"], env["MODEL_DIR"]) == (PIPELINE, MODEL, "/models")
        [mount] = info["Mounts"]
        assert (mount["Source"], mount["Destination"], mount["RW"]) == (str(models), "/models", False)
        bindings = info["HostConfig"]["PortBindings"]
        assert bindings == {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(host_port)}]}
        assert info["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}

        # A job, the way a gateway sends it, answered by the model inside the container.
        token = get_orchestrator(node.base_url, None).auth_token
        answer = node.post("/llm", json=JOB, headers=job_headers(token))
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["role"] == "assistant"
        assert "job finished" in engine.logs(runner["name"])

        assert node.stop() == 0, node.log()
        assert engine.containers(f"creator_id={service}") == []
        assert "Traceback" not in node.log()
    finally:
        node.stop()
        engine.docker("rm", "-f", "stale-runner", "legacy-runner", "other-node-runner", check=False)


def test_a_killed_orchestrator_leaves_no_container_running(
    node: OrchestratorProcess, docker_engine: DockerEngine
) -> None:
    runner = wait_idle(node)
    label = f"creator_id={node.base_url}"
    assert docker_engine.containers(label) == [runner["name"]]
    reapers = children(node.proc.pid)  # the reaper is the orchestrator's only child process
    node.stop(signal.SIGKILL)
    assert wait_no_containers(docker_engine, label) == [], "the killed orchestrator's runner is still there"
    assert wait_gone(reapers) == []
    assert "removed " + runner["name"] in (node.data_dir / "logs" / "docker-reaper.log").read_text()


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and pid_alive(int(entry.name)):
                found.append(int(entry.name))
    return found
