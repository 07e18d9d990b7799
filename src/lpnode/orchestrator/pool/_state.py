"""The pool's bookkeeping for one model and one runner (private to the pool)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from lpnode.orchestrator.ai_models import AIModelConfig, RunnerAppOption
from lpnode.orchestrator.pool.backend import RunnerHandle, RunnerSpec
from lpnode.orchestrator.pool.health import READY_STATES
from lpnode.orchestrator.pool.model_files import Fingerprint

STARTING = "STARTING"
UNHEALTHY = "UNHEALTHY"
FAILED = "FAILED"
ERROR = "ERROR"  # a model whose runners failed to load the same way too often: not restarted


@dataclass(eq=False)
class Runner:
    pipeline: str
    model_id: str
    spec: RunnerSpec
    warm: bool
    managed: bool
    capacity: int
    slot: int | None
    handle: RunnerHandle | None = None
    state: str = STARTING
    in_use: int = 0
    failures: int = 0
    version: str = ""
    problem: str = ""
    dead: bool = False
    started_at: float = field(default_factory=time.monotonic)
    load_seconds: float | None = None  # start to ready
    loading_since: float | None = None
    last_used: float = field(default_factory=time.monotonic)
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # ready, or failed to become ready
    lost: asyncio.Event = field(default_factory=asyncio.Event)  # failed or stopped: leases should give up
    launch: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return not self.dead and self.state in READY_STATES

    @property
    def idle(self) -> bool:
        """Ready and unleased (the slot accounting's notion of idle)."""
        return self.ready and self.in_use == 0

    @property
    def label(self) -> str:
        return self.handle.name if self.handle else f"{self.pipeline} {self.model_id} (starting)"

    @property
    def log_hint(self) -> str:
        path = self.handle.log_path if self.handle else None
        return f"; see the runner log {path}" if path else ""


@dataclass(eq=False)
class Model:
    pipeline: str
    model_id: str
    warm: bool
    managed_capacity: int = 0  # runners lpnode may start for this model
    flags: dict[str, str] = field(default_factory=dict)
    pipeline_class: str = ""  # custom pipelines named by import path
    runner_app: RunnerAppOption | None = None  # served only as a Live Runner app, never leased
    externals: list[AIModelConfig] = field(default_factory=list)
    runners: list[Runner] = field(default_factory=list)
    failed_starts: int = 0  # consecutive, for the restart back-off
    failures: int = 0  # runners of this model that failed, since the pool started
    restarts: int = 0  # warm runners replaced after failing
    last_error: str = ""
    last_error_at: float | None = None  # unix time
    cold_starts: int = 0  # runners started by a request (not at boot)
    load_failure: str = ""  # why its last runner that failed to load did
    same_load_failures: int = 0  # consecutive runners that failed to load for that same reason
    stopped: str = ""  # set (the reason) once its runners are no longer restarted: state ERROR
    stopped_slots: list[int] = field(default_factory=list)  # slots kept for its warm runners meanwhile
    stopped_log: str = ""  # the log of its last failed runner
    stopped_files: Fingerprint = None  # its files when it stopped: a change starts it again

    @property
    def managed_runners(self) -> int:
        return sum(1 for r in self.runners if r.managed and not r.dead)

    @property
    def capacity(self) -> int:
        return self.managed_capacity + sum(c.capacity for c in self.externals)
