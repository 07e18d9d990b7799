"""The small networks the reliability suite breaks on purpose: real lpnode processes on loopback, tiny models.

- :class:`Pair`: a gateway in front of two orchestrators offering the same model. Orchestrator A has its own
  warm managed runner (capacity 1), orchestrator B relays to an external runner shared with other tests
  (capacity 2), so whatever happens to A, B can serve.
- :class:`Workers`: a gateway in front of an orchestrator with no runners of its own and two remote workers.
- :class:`Up`: ``lpnode up`` serving one external runner, so its only child is the orchestrator.

``tests/reliability/test_*.py`` assert on what these show and ``benchmarks/reliability.py`` repeats the same
faults for figures, so both measure one thing.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from procs import (
    LPNODE,
    GatewayProcess,
    OrchestratorProcess,
    RunnerProcess,
    WorkerProcess,
    child_env,
    free_port,
    pid_alive,
    wait_gone,
)
from up_stack import pids_under

T2I = "lpnode/tiny-text-to-image"
SAFETY = "lpnode/tiny-safety-checker"
BODY: dict[str, Any] = {"prompt": "a lighthouse", "model_id": T2I, "width": 64, "height": 64, "num_inference_steps": 2}
# Long enough (about a second on the tiny model) to be caught mid-job by a fault.
LONG: dict[str, Any] = BODY | {"num_inference_steps": 80}
SECRET = "reliability-test-secret"


def start_shared_runner(models_dir: Path, log_path: Path) -> RunnerProcess:
    """The external text-to-image runner behind orchestrator B (it is never the one a fault hits)."""
    args = ["--pipeline", "text-to-image", "--model-id", T2I, "--models-dir", str(models_dir)]
    args += ["--safety-checker", SAFETY, "--max-in-flight", "2", "--max-queue", "64"]
    runner = RunnerProcess(args, log_path)
    runner.wait_status({"IDLE"})
    return runner


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.05) -> float | None:
    """Seconds until ``check()`` was true, or None if it never was within ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if check():
                return time.monotonic() - started
        except (requests.RequestException, ValueError, KeyError, IndexError):
            pass
        time.sleep(interval)
    return None


@dataclass
class Answer:
    """What one client saw: the status (0: no answer at all), how long it took, and the error text if any."""

    status: int
    seconds: float
    message: str = ""


def call(url: str, body: dict[str, Any], timeout: float = 120.0, **kwargs: Any) -> Answer:
    started = time.monotonic()
    try:
        answer = requests.post(url, json=body, timeout=timeout, **kwargs)
    except requests.RequestException as error:
        return Answer(0, time.monotonic() - started, f"no answer: {error}")
    message = "" if answer.status_code == 200 else answer.text[:300]
    return Answer(answer.status_code, time.monotonic() - started, message)


class Burst:
    """``count`` requests sent at once in threads; :meth:`answers` waits for them (in sending order)."""

    def __init__(self, url: str, body: dict[str, Any], count: int, timeout: float = 120.0) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(count)
        self._futures = [self._pool.submit(call, url, body, timeout) for _ in range(count)]

    def answers(self) -> list[Answer]:
        try:
            return [future.result() for future in self._futures]
        finally:
            self._pool.shutdown()


def logs_with_tracebacks(paths: Sequence[Path]) -> dict[str, str]:
    """The logs among ``paths`` (files, or directories searched for ``*.log``) holding a Python traceback, each
    with the lines around its first one."""
    found: dict[str, str] = {}
    for path in paths:
        for log in sorted(path.rglob("*.log")) if path.is_dir() else [path]:
            text = log.read_text(errors="replace") if log.exists() else ""
            at = text.find("Traceback (most recent call last)")
            if at >= 0:
                found[str(log)] = text[max(0, at - 300) : at + 2500]
    return found


def _orchestrator(models_dir: Path, root: Path, entries: list[dict[str, Any]], *extra: str) -> OrchestratorProcess:
    root.mkdir(parents=True, exist_ok=True)
    (root / "aiModels.json").write_text(json.dumps(entries))
    return OrchestratorProcess(root / "aiModels.json", models_dir, root / "data", *extra)


def _stop_gateway(gateway: GatewayProcess) -> None:
    if gateway.proc.poll() is None:
        gateway.proc.send_signal(signal.SIGTERM)
        try:
            gateway.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            gateway.proc.kill()
            gateway.proc.wait(timeout=10)
    gateway._log.close()


class Pair:
    """Orchestrator A (a warm managed runner, capacity 1) and B (``runner``, external, capacity 2), and the
    gateway in front of both that :meth:`open_gateway` started last."""

    def __init__(self, runner: RunnerProcess, models_dir: Path, root: Path) -> None:
        self.root = root
        self.a = _orchestrator(models_dir, root / "a", [{"pipeline": "text-to-image", "model_id": T2I, "warm": True}])
        external = {"pipeline": "text-to-image", "model_id": T2I, "url": runner.base_url, "capacity": 2}
        self.b = _orchestrator(models_dir, root / "b", [external])
        self.gateway: GatewayProcess | None = None
        self.url = ""
        try:
            self.a.wait_ready()
            self.b.wait_ready()
        except BaseException:
            self.stop()
            raise
        self._watched = [self.a.proc.pid, self.b.proc.pid, *self.a_runner_pids()]

    def open_gateway(self, root: Path, timeout: float = 60.0) -> GatewayProcess:
        """A new gateway (``--timeout timeout``, its data in ``root``) in front of A and B, in place of the last
        one: a fresh gateway has suspended nobody yet."""
        self.close_gateway()
        addresses = f"{self.a.base_url},{self.b.base_url}"
        self.gateway = GatewayProcess(root, "--orch-addr", addresses, "--timeout", str(timeout))
        self.url = self.gateway.base_url + "/text-to-image"
        return self.gateway

    def close_gateway(self) -> None:
        if self.gateway is not None:
            self._watched.append(self.gateway.proc.pid)
            _stop_gateway(self.gateway)
            self.gateway = None

    def post(self, body: dict[str, Any] = BODY, timeout: float = 120.0) -> Answer:
        return call(self.url, body, timeout)

    def a_in_use(self) -> int:
        return sum(int(m["in_use"]) for m in self.a.status())

    def a_runner_pids(self) -> list[int]:
        return self.a.runner_pids()

    def a_runner_ready(self, not_pid: int = 0) -> bool:
        """A has a runner other than ``not_pid`` that answers IDLE or OK."""
        runners = [r for m in self.a.status() for r in m["runners"]]
        return any(r["pid"] and r["pid"] != not_pid and r["state"] in ("IDLE", "OK") for r in runners)

    def stop(self) -> list[int]:
        """Stop every process (each by its own pid); the pids still running afterwards (orphans)."""
        watched = [*getattr(self, "_watched", []), *pids_under(self.a.proc.pid), *pids_under(self.b.proc.pid)]
        self.close_gateway()
        for node in (self.a, self.b):
            if node.proc.poll() is None:
                node.proc.send_signal(signal.SIGCONT)  # a frozen one could not act on the SIGTERM
            node.stop()
        return wait_gone([*watched, self.a.proc.pid, self.b.proc.pid], timeout=20)


class Workers:
    """A gateway in front of an orchestrator with no runners of its own and two remote workers, each with a
    warm text-to-image runner."""

    MODELS = f"text-to-image:{T2I}:true"

    def __init__(self, models_dir: Path, root: Path) -> None:
        self.root = root
        self.models_dir = models_dir
        self.orch = _orchestrator(models_dir, root / "orch", [], "--orch-secret", SECRET)
        self.workers: list[WorkerProcess] = []
        self.gateway: GatewayProcess | None = None
        self._started = 0
        try:
            self.orch.wait_ready()
            for _ in range(2):
                self.workers.append(self._start_worker())
            if wait_until(self._attached, timeout=120, interval=0.2) is None:
                raise AssertionError(f"the workers never attached:\n{self.orch.log()}")
            self.gateway = GatewayProcess(root / "gw", "--orch-addr", self.orch.base_url)
        except BaseException:
            self.stop()
            raise
        self.url = self.gateway.base_url + "/text-to-image"

    def _start_worker(self) -> WorkerProcess:
        self._started += 1
        data = self.root / f"w{self._started}"
        return WorkerProcess(self.orch.base_url, SECRET, self.MODELS, self.models_dir, data)

    def respawn(self, index: int) -> None:
        """A new worker in place of worker ``index`` (stopped first if it still runs); returns once both serve."""
        old = self.workers[index]
        old.stop(timeout=20)
        self.workers[index] = self._start_worker()
        if wait_until(self._attached, timeout=120, interval=0.2) is None:
            raise AssertionError(f"the new worker never attached:\n{self.orch.log()}")

    def _attached(self) -> bool:
        for worker in self.workers:
            if worker.proc.poll() is not None:
                raise AssertionError(f"worker exited with {worker.proc.returncode}:\n{worker.log()}")
        return self.capacity() == 2

    def status(self) -> list[dict[str, Any]]:
        workers: list[dict[str, Any]] = self.orch.admin_get("/status", timeout=5).json()["workers"]
        return workers

    def capacity(self) -> int:
        return sum(int(m["capacity"]) for w in self.status() for m in w["models"])

    def busy_workers(self) -> int:
        return sum(1 for w in self.status() if any(int(m["in_use"]) for m in w["models"]))

    def stop(self) -> list[int]:
        watched = [self.orch.proc.pid]
        for worker in self.workers:
            watched += [worker.proc.pid, *worker.runner_pids()]
        if self.gateway is not None:
            watched.append(self.gateway.proc.pid)
            _stop_gateway(self.gateway)
        for worker in self.workers:
            worker.stop()
        self.orch.stop()
        return wait_gone(watched, timeout=20)


class Up:
    """``lpnode up --ai-models`` with one external text-to-image runner (``runner``): up's gateway here, its
    orchestrator a child process."""

    def __init__(self, runner: RunnerProcess, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        entry = {"pipeline": "text-to-image", "model_id": T2I, "url": runner.base_url, "capacity": 2}
        (root / "aiModels.json").write_text(json.dumps([entry]))
        self.root = root
        self.port, self.cli_port, self.orch_port = free_port(), free_port(), free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.url = self.base_url + "/text-to-image"
        self.log_path = root / "up.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*LPNODE, "up", "--data-dir", str(root), "--ai-models", str(root / "aiModels.json"),
             "--http-addr", f"127.0.0.1:{self.port}", "--cli-addr", f"127.0.0.1:{self.cli_port}",
             "--orch-port", str(self.orch_port)],
            stdout=self._log, stderr=subprocess.STDOUT, env=child_env(),
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while not re.search(r"^\s+curl ", self.log(), re.MULTILINE):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"lpnode up never became ready:\n{self.log()}")
            time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def orchestrator_pid(self) -> int | None:
        """The pid of up's orchestrator child, if one runs."""
        for pid in pids_under(self.proc.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"orchestrator" in cmdline and pid_alive(pid):
                return pid
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
