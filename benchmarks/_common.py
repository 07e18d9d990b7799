"""Helpers shared by the benchmark scripts: the time budget, starting/stopping/polling an ``lpnode
runner`` subprocess, machine facts, and rewriting one script's section of ``docs/benchmarks.md``.

The scripts are run as ``python benchmarks/NAME.py``, so this directory is on ``sys.path`` and they
import this module as ``_common``.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
DOCS_INTRO = """# Benchmarks

Benchmarks live in `benchmarks/`. Each one measures a *ratio* between two ways of doing the same work,
both timed within a single run on the same machine, so its verdict does not depend on how fast the
machine is. The figures below come from a 2-core CPU machine without a GPU, running the tiny
random-weight models (`lpnode models tiny`). The absolute times mean little; the ratios are what matter.

Each script writes its own section between `<!-- NAME:start -->` / `<!-- NAME:end -->` markers.
Rerunning a script with `--write-docs` refreshes that section and leaves the others alone.
"""


class Deadline:
    """The time budget of the measurement: every loop checks it between requests."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def check(self, what: str) -> None:
        if time.monotonic() > self.at:
            raise TimeoutError(f"{what}: the benchmark exceeded its {self.seconds:.0f}s budget (--budget)")

    def left(self) -> float:
        return self.at - time.monotonic()


def nearest_rank(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0 < q <= 1) of ``values`` by the nearest-rank method."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# -- a runner subprocess ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_lpnode(
    args: list[str], log_path: Path, *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``python -m lpnode.cli ARGS`` with one OpenMP thread and no network (plus ``env``), logging to
    ``log_path``. Variables of the runner contract (PIPELINE, MODEL_ID, ...) are not passed on."""
    contract = {"PIPELINE", "MODEL_ID", "MODEL_DIR", "AUTH_TOKEN"}
    environ = {k: v for k, v in os.environ.items() if k not in contract}
    environ.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **(env or {}))
    with log_path.open("wb") as log:
        # Own session: a Ctrl-C in the terminal reaches only this script, which then stops the process.
        return subprocess.Popen(
            [sys.executable, "-m", "lpnode.cli", *args], cwd=cwd, env=environ, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def start_runner(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """``lpnode runner ARGS`` (see :func:`start_lpnode`)."""
    return start_lpnode(["runner", *args], log_path)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def stop_runner(proc: subprocess.Popen[bytes]) -> None:
    stop_process(proc, timeout=15)


def log_tail(log_path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def http_get(port: int, path: str, timeout: float = 5.0) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}")
        return data
    finally:
        conn.close()


def wait_idle(port: int, proc: subprocess.Popen[bytes], log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    status = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"runner exited with status {proc.returncode}:\n{log_tail(log_path)}")
        try:
            status = json.loads(http_get(port, "/health", timeout=2)).get("status", "?")
        except (OSError, ValueError, RuntimeError):
            status = "no answer"
        if status in {"IDLE", "OK"}:
            return
        if status == "ERROR":
            raise RuntimeError(f"runner failed to load the model:\n{log_tail(log_path)}")
        time.sleep(0.2)
    raise TimeoutError(f"runner not IDLE after {timeout:.0f}s (last status: {status}):\n{log_tail(log_path)}")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) so far; NaN where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return math.nan
    # After "pid (comm)": fields[0] is the state (field 3), so utime (14) and stime (15) are 11 and 12.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int, tid: int) -> float:
    """CPU time of one thread so far, in ns resolution from /proc schedstat; NaN where it is missing."""
    try:
        return int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, IndexError, ValueError):
        return math.nan


def machine_cpu_seconds() -> tuple[float, float]:
    """CPU seconds all CPUs have spent busy (user, system, interrupts) and stolen by the hypervisor since
    boot, from /proc/stat; NaNs where it is missing."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, IndexError, ValueError):
        return math.nan, math.nan
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


# -- reporting --------------------------------------------------------------------------------------


def machine_info() -> dict[str, str]:
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "nproc": str(usable),
        "cpu": cpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "os": f"{platform.system()} {platform.release()}",
    }


def write_docs(section: str, start_mark: str, end_mark: str) -> None:
    """Put ``section`` (which starts with ``start_mark`` and ends with ``end_mark``) in place of the
    text between those markers in docs/benchmarks.md, or append it; the rest of the file is kept."""
    text = DOCS.read_text() if DOCS.exists() else DOCS_INTRO
    if start_mark in text and end_mark in text:
        head, _, rest = text.partition(start_mark)
        _, _, tail = rest.partition(end_mark)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text(text)


def sigterm_as_interrupt(signum: int, frame: Any) -> None:
    """A SIGTERM handler: unwind like Ctrl-C, through the finally blocks that stop the runner."""
    raise KeyboardInterrupt


# --- the tiny text-to-image runner the relay benchmarks put behind lpnode's hops ---

T2I_MODEL_ID = "lpnode/tiny-text-to-image"
T2I_SAFETY_ID = "lpnode/tiny-safety-checker"
T2I_PIPELINE = "text-to-image"


def build_models(models_dir: Path) -> None:
    """``lpnode models tiny --pipeline text-to-image``: the model and the safety checker it needs."""
    cmd = [sys.executable, "-m", "lpnode.cli", "models", "tiny", "--pipeline", T2I_PIPELINE]
    done = subprocess.run(
        [*cmd, "--models-dir", str(models_dir)], capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"building the tiny models failed:\n{done.stdout}{done.stderr}")


def cpu_seconds(pid: int) -> float:
    """CPU time of process ``pid`` so far: the sum of its threads' ns-resolution scheduler statistics (live
    threads only; this run's processes keep theirs), or the tick-resolution /proc counters without them."""
    total = 0.0
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            try:
                total += int(Path(task.path, "schedstat").read_text().split()[0]) / 1e9
            except (OSError, IndexError, ValueError):
                continue
    except OSError:
        return process_cpu_seconds(pid)
    return total or process_cpu_seconds(pid)


def runner_args(models_dir: Path, port: int, max_queue: int) -> list[str]:
    args = ["--pipeline", T2I_PIPELINE, "--model-id", T2I_MODEL_ID, "--models-dir", str(models_dir)]
    args += ["--host", "127.0.0.1", "--port", str(port), "--safety-checker", T2I_SAFETY_ID, "--device", "cpu"]
    args += ["--threads", "1", "--max-in-flight", "1", "--max-queue", str(max_queue), "--exit-with-parent"]
    return [*args, "--log-level", "warning"]


def met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"
