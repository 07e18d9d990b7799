"""Managed runners as child processes: ``lpnode runner`` configured by the ai-runner env contract.

Each runner gets ``PIPELINE``, ``MODEL_ID``, ``MODEL_DIR``, ``HOST``/``PORT``, ``PIPELINE_CLASS`` for a
custom pipeline named by import path, the entry's optimisation flags as ``KEY=value`` and
``RUNNER_EXIT_WITH_PARENT=1``, so it stops when this process dies, even by SIGKILL; a runner-app entry's runner
also gets :func:`~lpnode.orchestrator.pool.runner_app_env.runner_app_env`'s variables. Its output is appended
to ``<log_dir>/<name>.log``. Stopping is SIGTERM, then SIGKILL after ``stop_grace`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lpnode.logs import log_event
from lpnode.orchestrator.pool.backend import RunnerSpec
from lpnode.orchestrator.pool.external import runner_name
from lpnode.orchestrator.pool.ports import PORT_BASES, claim_port
from lpnode.orchestrator.pool.runner_app_env import APP_ENV_VARS, RunnerAppHost, runner_app_env
from lpnode.orchestrator.pool.runner_log import START_MARKER
from lpnode.runner.server import LISTEN_FD_VAR

log = logging.getLogger("lpnode.orchestrator.pool")
KILL_WAIT_SECONDS = 5.0
# Variables of the ai-runner contract that must come from the spec, never from our own environment.
_CONTRACT_VARS = (
    *("PIPELINE", "PIPELINE_CLASS", "MODEL_ID", "MODEL_DIR", "AUTH_TOKEN", "PORT", "HOST", LISTEN_FD_VAR),
    *APP_ENV_VARS,
)


@dataclass(frozen=True)
class ProcessSettings:
    """How managed runners are started. ``env`` adds variables (e.g. ``TORCH_THREADS``, ``RUNNER_DEVICE``)."""

    models_dir: Path
    host: str = "127.0.0.1"
    command: Sequence[str] = (sys.executable, "-m", "lpnode.cli", "runner")
    env: Mapping[str, str] = field(default_factory=dict)
    safety_checker_id: str = ""
    version: str = ""
    stop_grace: float = 10.0
    port_bases: Mapping[str, int] = field(default_factory=lambda: dict(PORT_BASES))
    devices: Sequence[str] = ()
    """GPU ids by slot (``CUDA_VISIBLE_DEVICES`` of a slot's runner); empty for emulated CPU slots."""
    runner_apps: RunnerAppHost | None = None
    """Where runner-app entries' runners register (this orchestrator); None when it hosts no runner apps."""


class ProcessHandle:
    """One runner child process. ``stop`` is SIGTERM, then SIGKILL after ``grace`` seconds; bounded."""

    def __init__(
        self,
        name: str,
        port: int,
        url: str,
        log_path: Path,
        proc: asyncio.subprocess.Process,
        grace: float,
        on_stopped: Callable[[ProcessHandle], None],
    ) -> None:
        self.name = name
        self.port = port
        self.url = url
        self.headers: Mapping[str, str] = {}
        self.log_path: Path | None = log_path
        self.pid: int | None = proc.pid
        self._proc = proc
        self._grace = grace
        self._on_stopped = on_stopped

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    async def wait_exit(self) -> int | None:
        return await self._proc.wait()

    async def stop(self) -> None:
        try:
            if self._proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self._proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(self._proc.wait(), self._grace)
                except TimeoutError:
                    log_event(
                        log, "runner ignored SIGTERM; killing it", logging.WARNING, runner=self.name, pid=self.pid
                    )
                    with contextlib.suppress(ProcessLookupError):
                        self._proc.kill()
                    await asyncio.wait_for(self._proc.wait(), KILL_WAIT_SECONDS)
        finally:
            self._on_stopped(self)


class ProcessBackend:
    managed = True

    def __init__(self, settings: ProcessSettings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self._live: set[ProcessHandle] = set()

    def runner_env(self, spec: RunnerSpec, port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _CONTRACT_VARS}
        env.update(self.settings.env)
        env.update(
            PIPELINE=spec.pipeline,
            MODEL_ID=spec.model_id,
            MODEL_DIR=str(self.settings.models_dir),
            HOST=self.settings.host,
            PORT=str(port),
            RUNNER_EXIT_WITH_PARENT="1",
            PYTHONUNBUFFERED="1",
        )
        if spec.pipeline_class:
            env["PIPELINE_CLASS"] = spec.pipeline_class
        env.update(spec.optimization_flags)
        if spec.slot is not None and spec.slot < len(self.settings.devices):
            env["CUDA_VISIBLE_DEVICES"] = self.settings.devices[spec.slot]
        if self.settings.safety_checker_id:
            env["SAFETY_CHECKER_MODEL_ID"] = self.settings.safety_checker_id
        if self.settings.version:
            env["VERSION"] = self.settings.version
        env.update(runner_app_env(spec, self.settings.runner_apps))
        return env

    async def start(self, spec: RunnerSpec) -> ProcessHandle:
        taken = {h.port for h in self._live}
        sock = claim_port(
            spec.pipeline, spec.slot or 0, host=self.settings.host, taken=taken, bases=self.settings.port_bases
        )
        port = sock.getsockname()[1]
        name = runner_name(spec.pipeline, spec.model_id, str(port))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        # A local append of one line at start; the file is the child's stdout, so it must be a real file.
        with open(log_path, "ab") as out:  # noqa: ASYNC230
            out.write(f"{START_MARKER} {name} at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
            out.flush()
            env = self.runner_env(spec, port)
            env[LISTEN_FD_VAR] = str(sock.fileno())
            try:
                proc = await asyncio.create_subprocess_exec(
                    *self.settings.command,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                    env=env,
                    pass_fds=(sock.fileno(),),
                )
            finally:
                sock.close()  # the runner holds its own copy
        host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
        handle = ProcessHandle(
            name, port, f"http://{host}:{port}", log_path, proc, self.settings.stop_grace, self._live.discard
        )
        self._live.add(handle)
        log_event(log, "runner process started", runner=name, pid=proc.pid, port=port, log=str(log_path))
        return handle

    async def close(self) -> None:
        handles = list(self._live)
        await asyncio.gather(*(h.stop() for h in handles), return_exceptions=True)
