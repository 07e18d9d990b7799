"""The seam between the pool and whatever runs a runner: a child process today, an external URL, and a
Docker container later. A backend starts a runner and hands back a :class:`RunnerHandle`; the pool does
everything else (health, readiness, leases, restarts) the same way for every backend."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from lpnode.orchestrator.ai_models import RunnerAppOption


@dataclass(frozen=True)
class RunnerSpec:
    """What to run. ``slot`` is set for managed runners; ``url``/``token`` for external ones."""

    pipeline: str
    model_id: str
    slot: int | None = None
    optimization_flags: Mapping[str, str] = field(default_factory=dict)
    url: str = ""
    token: str = ""
    pipeline_class: str = ""  # custom pipelines: "module:Class" the runner serves as ``pipeline``
    runner_app: RunnerAppOption | None = None  # a Live Runner app: see :mod:`~lpnode.orchestrator.pool.runner_app_env`


class RunnerHandle(Protocol):
    """One started runner. ``stop`` is idempotent and bounded; ``wait_exit`` returns when the runner is
    gone (for an external runner: only once it has been stopped)."""

    @property
    def name(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def pid(self) -> int | None: ...
    @property
    def log_path(self) -> Path | None: ...
    async def wait_exit(self) -> int | None: ...
    async def stop(self) -> None: ...


class RunnerBackend(Protocol):
    """Starts runners. ``managed`` backends own their runners: each takes a slot, and the pool restarts
    a failed warm one; a runner of an unmanaged (external) backend is only watched."""

    @property
    def managed(self) -> bool: ...
    async def start(self, spec: RunnerSpec) -> RunnerHandle: ...
    async def close(self) -> None:
        """Stop every runner this backend started that is still running (bounded)."""
        ...
