"""What :meth:`RunnerPool.snapshot` reports: per model and per runner, for advertising capacity and for a
status page."""

from __future__ import annotations

from dataclasses import dataclass

from lpnode.orchestrator.pool._state import ERROR, Model


@dataclass(frozen=True)
class RunnerStatus:
    """``state``: STARTING, LOADING, IDLE, OK (busy), UNHEALTHY (external, failing its health checks), ERROR
    (failed to load its model too many times the same way; not restarted, ``problem`` says why)."""

    name: str
    url: str
    state: str
    warm: bool
    external: bool
    capacity: int
    in_use: int
    slot: int | None
    pid: int | None
    version: str
    log_path: str
    problem: str
    load_seconds: float | None = None


@dataclass(frozen=True)
class ModelStatus:
    """``capacity``: concurrent requests the model may serve (managed: runners it may have; external:
    the entries' ``capacity``). ``idle``: requests it can take right now without starting anything.
    ``error``: set (the runner's reason) while the model is stopped, its runners not restarted (state ERROR)."""

    pipeline: str
    model_id: str
    warm: bool
    capacity: int
    in_use: int
    idle: int
    version: str
    runners: tuple[RunnerStatus, ...]
    cold_starts: int = 0
    failures: int = 0
    restarts: int = 0
    last_error: str = ""
    last_error_at: float | None = None  # unix time
    error: str = ""
    runner_app: bool = False
    """Served only as a Live Runner app (aiModels.json ``runner_app``): not offered on the classic route."""


def model_status(model: Model) -> ModelStatus:
    runners = tuple(
        RunnerStatus(
            name=r.label,
            url=r.handle.url if r.handle else "",
            state=r.state,
            warm=r.warm,
            external=not r.managed,
            capacity=r.capacity,
            in_use=r.in_use,
            slot=r.slot,
            pid=r.handle.pid if r.handle else None,
            version=r.version,
            log_path=str(r.handle.log_path) if r.handle and r.handle.log_path else "",
            problem=r.problem,
            load_seconds=r.load_seconds,
        )
        for r in model.runners
    )
    if model.stopped:  # one row per runner that is not restarted (a cold model's: no slot)
        slots: list[int | None] = [*model.stopped_slots] or [None]
        runners += tuple(
            RunnerStatus(
                name=f"{model.pipeline} {model.model_id}",
                url="",
                state=ERROR,
                warm=model.warm,
                external=False,
                capacity=1,
                in_use=0,
                slot=slot,
                pid=None,
                version="",
                log_path=model.stopped_log,
                problem=model.stopped,
            )
            for slot in slots
        )
    versions = [r.version for r in model.runners if r.ready and r.version]
    return ModelStatus(
        pipeline=model.pipeline,
        model_id=model.model_id,
        warm=model.warm,
        capacity=model.capacity,
        in_use=sum(r.in_use for r in model.runners),
        idle=sum(r.capacity - r.in_use for r in model.runners if r.ready and r.in_use < r.capacity),
        version=versions[0] if versions else "",
        runners=runners,
        cold_starts=model.cold_starts,
        failures=model.failures,
        restarts=model.restarts,
        last_error=model.last_error,
        last_error_at=model.last_error_at,
        error=model.stopped,
        runner_app=model.runner_app is not None,
    )
