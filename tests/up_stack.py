"""One `lpnode up` (gateway, orchestrator and runners on loopback) shared by the test modules that need it.

Starting it is the most expensive thing the tests do, so the ``stack`` fixture in conftest.py starts one
per session. Its teardown asserts a clean shutdown: exit status 0, no process left behind, no traceback.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

from procs import LPNODE, child_env, free_port


class Stack:
    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.data_dir = data_dir
        self.port, self.cli_port, self.orch_port, self.orch_cli_port = (free_port() for _ in range(4))
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.admin_url = f"http://127.0.0.1:{self.cli_port}"
        self.orch_url = f"https://127.0.0.1:{self.orch_port}"
        self.orch_admin_url = f"http://127.0.0.1:{self.orch_cli_port}"  # the whole /status and the node page
        self.log_path = data_dir / "up.log"
        self.curl = ""
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*LPNODE, "up", "--data-dir", str(data_dir), "--http-addr", f"127.0.0.1:{self.port}",
             "--cli-addr", f"127.0.0.1:{self.cli_port}", "--orch-port", str(self.orch_port),
             "--orch-cli-addr", f"127.0.0.1:{self.orch_cli_port}", *extra],
            stdout=self._log, stderr=subprocess.STDOUT, env=child_env(),
        )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 240) -> str:
        """The curl line `lpnode up` prints once everything serves."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"lpnode up exited with {self.proc.returncode}:\n{self.log()}")
            match = re.search(r"^\s+(curl .*)$", self.log(), re.MULTILINE)
            if match:
                return match.group(1)
            time.sleep(0.2)
        raise AssertionError(f"lpnode up never became ready:\n{self.log()}")

    def orchestrator_pid(self) -> int | None:
        """The pid of the orchestrator `lpnode up` runs now (``None`` between a crash and its restart)."""
        for pid in children_of(self.proc.pid):
            try:
                if b"orchestrator" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                    return pid
            except OSError:
                continue
        return None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode


def children_of(pid: int) -> list[int]:
    """The direct children of ``pid``, whichever of its threads started them."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def pids_under(root: int) -> list[int]:
    """Every descendant of ``root`` (orchestrator and runners)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
