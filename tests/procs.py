"""Start real lpnode processes on loopback for tests, and always stop them."""

from __future__ import annotations

import collections
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

LPNODE = [sys.executable, "-m", "lpnode.cli"]


# Under pytest-xdist each worker takes ports from a range of its own below the kernel's ephemeral ports (32768 and
# up): another worker, or a connection's source port, cannot take one between free_port() and its use.
_PORTS_LOW, _PORTS_HIGH = 10_000, 32_000
_recent: collections.deque[int] = collections.deque(maxlen=256)


def free_port() -> int:
    """A loopback port nothing listens on now, not handed out recently by this process."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if worker.startswith("gw") and count > 0:
        span = (_PORTS_HIGH - _PORTS_LOW) // count
        low = _PORTS_LOW + int(worker[2:]) * span
        for _ in range(500):
            port = random.randrange(low, low + span)
            if port in _recent:
                continue
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _recent.append(port)
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PIPELINE", "MODEL_ID", "MODEL_DIR", "AUTH_TOKEN"}}
    # One torch thread: tiny models on a shared 2-core machine run fastest that way.
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TORCH_THREADS="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


class RunnerProcess:
    """An ``lpnode runner`` child process. Its output goes to a log file the test can read."""

    def __init__(
        self, args: Sequence[str], log_path: Path, env: dict[str, str] | None = None, port: int | None = None
    ) -> None:
        """With ``port`` given the runner must find it itself (e.g. from env PORT); otherwise a free
        port is passed as --port."""
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*LPNODE, "runner", *([] if port else ["--port", str(self.port)]), *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env or child_env(),
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def health(self) -> str:
        status: str = requests.get(self.base_url + "/health", timeout=5).json()["status"]
        return status

    def wait_status(self, wanted: set[str], timeout: float = 90.0) -> list[str]:
        """Poll /health until its status is in ``wanted``; every status seen, in order."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"runner exited with {self.proc.returncode}:\n{self.log()}")
            try:
                status = self.health()
            except requests.ConnectionError:
                time.sleep(0.1)
                continue
            if not seen or seen[-1] != status:
                seen.append(status)
            if status in wanted:
                return seen
            time.sleep(0.1)
        raise AssertionError(f"runner never reached {wanted} (saw {seen}):\n{self.log()}")

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 120)
        return requests.post(self.base_url + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return requests.get(self.base_url + path, **kwargs)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LPNODE, *args], capture_output=True, text=True, env=env or child_env(), timeout=timeout)


class ChildProcess:
    """A child process writing to ``log_path``; ``stop`` signals it, waits, and kills it if it lingers."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    _log: Any

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode


class OrchestratorProcess(ChildProcess):
    """An ``lpnode orchestrator`` child process on a free loopback port, TLS unless ``plain``."""

    def __init__(
        self,
        ai_models: Path | str,
        models_dir: Path,
        data_dir: Path,
        *extra: str,
        plain: bool = False,
        env: dict[str, str] | None = None,
        go_flags: bool = False,
    ) -> None:
        self.port, self.admin_port = free_port(), free_port()
        scheme = "http" if plain else "https"
        self.base_url = f"{scheme}://127.0.0.1:{self.port}"
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"  # its admin API: the whole /status
        self.data_dir = data_dir
        self.cert = None if plain else data_dir / "tls" / "cert.pem"
        self.log_path = data_dir / "orchestrator.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        service = self.base_url if plain else f"127.0.0.1:{self.port}"
        if go_flags:  # an operator's go-livepeer start line, binary name changed
            args = ["-orchestrator", "-aiWorker", "-network", "offchain", f"-aiModels={ai_models}"]
            args += ["-aiModelsDir", str(models_dir), "-serviceAddr", service, "-dataDir", str(data_dir)]
            args += ["-cliAddr", f"127.0.0.1:{self.admin_port}"]
        else:
            args = ["--ai-models", str(ai_models), "--models-dir", str(models_dir)]
            args += ["--service-addr", service, "--data-dir", str(data_dir)]
            args += ["--cli-addr", f"127.0.0.1:{self.admin_port}"]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*LPNODE, "orchestrator", *args, "--safety-checker", "lpnode/tiny-safety-checker", *extra],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env or child_env(),
        )

    @property
    def verify(self) -> str | bool:
        """What ``requests`` needs to trust this node: its self-signed certificate."""
        return str(self.cert) if self.cert else True

    def wait_ready(self, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"orchestrator exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if (not self.cert or self.cert.exists()) and self.get("/healthz", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"orchestrator not ready after {timeout:g}s:\n{self.log()}")

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return requests.get(self.base_url + path, verify=self.verify, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 120)
        return requests.post(self.base_url + path, verify=self.verify, **kwargs)

    def admin_get(self, path: str, **kwargs: Any) -> requests.Response:
        """GET from its admin API (plain HTTP on loopback)."""
        kwargs.setdefault("timeout", 30)
        return requests.get(self.admin_url + path, **kwargs)

    def status(self) -> list[dict[str, Any]]:
        """The models of the whole node view (runner PIDs, URLs and log paths included: the admin API's)."""
        models: list[dict[str, Any]] = self.admin_get("/status").json()["models"]
        return models

    def runner_pids(self) -> list[int]:
        """The pids of its runner processes ([] if it does not answer)."""
        try:
            return [r["pid"] for m in self.status() for r in m["runners"] if r["pid"]]
        except (requests.RequestException, ValueError):
            return []


class GatewayProcess:
    """An ``lpnode gateway`` child process on free loopback ports (public and admin), started with ``flags``."""

    def __init__(self, data_dir: Path, *flags: str) -> None:
        self.port, self.cli_port = free_port(), free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.admin_url = f"http://127.0.0.1:{self.cli_port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir / "gateway.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*LPNODE, "gateway", "--http-addr", f"127.0.0.1:{self.port}", "--cli-addr", f"127.0.0.1:{self.cli_port}",
             "--data-dir", str(data_dir), *flags],
            stdout=self._log, stderr=subprocess.STDOUT, env=child_env(),
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()
            try:
                if requests.get(self.base_url + "/healthz", timeout=2).ok:
                    return
            except requests.ConnectionError:
                time.sleep(0.2)
        raise AssertionError(self.log_path.read_text())

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=30) == 0, self.log_path.read_text()
        self._log.close()


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pids: Sequence[int], timeout: float = 20.0) -> list[int]:
    """Wait until none of ``pids`` runs; the ones still running at the timeout."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if pid_alive(pid)]
        time.sleep(0.1)
    return alive


class WorkerProcess(ChildProcess):
    """An ``lpnode worker`` child process attached to the orchestrator at ``orch_url``."""

    def __init__(
        self,
        orch_url: str,
        secret: str,
        ai_models: Path | str,
        models_dir: Path,
        data_dir: Path,
        *extra: str,
        env: dict[str, str] | None = None,
    ) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self.log_path = data_dir / "worker.log"
        address = orch_url.split("://", 1)[1] if orch_url.startswith("https://") else orch_url
        args = ["--orch-addr", address, "--orch-secret", secret, "--ai-models", str(ai_models)]
        args += ["--models-dir", str(models_dir), "--data-dir", str(data_dir)]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*LPNODE, "worker", *args, "--safety-checker", "lpnode/tiny-safety-checker", *extra],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env or child_env(),
        )

    def runner_pids(self) -> list[int]:
        """The pids of its runner processes (its children)."""
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as children:
                return [int(pid) for pid in children.read().split()]
        except FileNotFoundError:
            return []
