"""The runner pool: turns aiModels.json entries into runners and lends their capacity to requests.

Managed entries (no ``url``) become ``lpnode runner`` processes, one request at a time each; an entry's
``capacity`` is how many runners it may have. Each managed runner occupies a slot (a GPU, or an emulated
slot on CPU). Warm entries start at :meth:`RunnerPool.start` and are restarted when they fail; cold ones
start on their first lease and may be stopped (evicted) when idle and another cold model needs the slot.
External entries (``url``) are watched, never started; ``capacity`` is how many requests they take at once.

A model whose runners fail to load the same way :attr:`PoolTimings.load_failures_to_stop` times in a row
(a model missing from the models dir, say) is not started again: its state is ERROR with the runner's own
reason, and leases fail at once saying so, until its files in the models dir change (checked every
:attr:`PoolTimings.files_poll` seconds), :meth:`RunnerPool.retry` is called, or the pool is restarted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from lpnode.logs import log_event
from lpnode.orchestrator.ai_models import AIModelConfig
from lpnode.orchestrator.pool._state import FAILED, STARTING, UNHEALTHY, Model, Runner
from lpnode.orchestrator.pool.backend import RunnerBackend, RunnerSpec
from lpnode.orchestrator.pool.errors import (
    InsufficientCapacity,
    PoolClosedError,
    PoolConfigError,
    RunnerUnavailableError,
    UnknownModelError,
)
from lpnode.orchestrator.pool.external import ExternalBackend
from lpnode.orchestrator.pool.health import READY_STATES, fetch_version, probe
from lpnode.orchestrator.pool.load_failures import count_load_failure, loaded, resume
from lpnode.orchestrator.pool.model_files import files_fingerprint
from lpnode.orchestrator.pool.process import ProcessBackend, ProcessSettings
from lpnode.orchestrator.pool.runner_log import failure_reason
from lpnode.orchestrator.pool.slots import SlotTable, choose_victim
from lpnode.orchestrator.pool.status import ModelStatus, model_status
from lpnode.orchestrator.pool.timings import PoolTimings

log = logging.getLogger("lpnode.orchestrator.pool")
ModelKey = tuple[str, str]


@dataclass(frozen=True)
class LeasedRunner:
    """What a lease gives a request handler: where to send it and which headers to add. ``lost`` is set
    if the runner fails or is stopped while leased; calls to it then fail fast (its port is closed)."""

    pipeline: str
    model_id: str
    name: str
    url: str
    headers: Mapping[str, str]
    lost: asyncio.Event


class RunnerPool:
    """Runners for ``configs``. Use ``async with RunnerPool(...) as pool`` or :meth:`start`/:meth:`close`."""

    def __init__(
        self,
        configs: Iterable[AIModelConfig],
        backend: ProcessSettings | RunnerBackend,
        data_dir: Path,
        *,
        slots: int = 1,
        timings: PoolTimings | None = None,
        external: RunnerBackend | None = None,
        models_dir: Path | None = None,
    ) -> None:
        """``models_dir`` is where a stopped model's files are watched (default: the process backend's)."""
        self.timings = timings or PoolTimings()
        self.data_dir = data_dir
        self.models_dir = (
            backend.models_dir if models_dir is None and isinstance(backend, ProcessSettings) else models_dir
        )
        self._managed: RunnerBackend = (
            ProcessBackend(backend, data_dir / "logs") if isinstance(backend, ProcessSettings) else backend
        )
        self._external: RunnerBackend = external or ExternalBackend()
        self._slots = SlotTable(slots)
        self._models: dict[ModelKey, Model] = {}
        for config in configs:
            key = (config.pipeline, config.model_id)
            model = self._models.setdefault(key, Model(config.pipeline, config.model_id, config.warm))
            if config.external:
                model.externals.append(config)
            else:
                model.managed_capacity += config.capacity
                model.flags.update(config.optimization_flags)
                model.pipeline_class = model.pipeline_class or config.pipeline_class
                model.runner_app = model.runner_app or config.runner_app
        warm = sum(m.managed_capacity for m in self._models.values() if m.warm)
        if warm > slots:
            raise PoolConfigError(
                f"warm models need {warm} runner slot(s) but only {slots} are configured; "
                "raise the slot count or lower the warm entries' capacity"
            )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._closing = False

    async def __aenter__(self) -> RunnerPool:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> list[str]:
        """Start warm runners and check external ones; wait until each is ready or has failed (each
        bounded by its start timeout). Returns one line per runner that did not become ready; failed warm
        runners keep being restarted in the background."""
        if self._session is not None:
            raise RuntimeError("RunnerPool.start() called twice")
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(keepalive_timeout=2.0))
        starting: list[Runner] = []
        for model in self._models.values():
            for config in model.externals:
                spec = RunnerSpec(model.pipeline, model.model_id, url=config.url, token=config.token)
                starting.append(self._spawn(model, spec, slot=None, capacity=config.capacity, managed=False))
            if model.warm:
                for _ in range(model.managed_capacity):
                    slot = self._slots.take()
                    assert slot is not None  # checked in __init__
                    starting.append(self._spawn(model, self._managed_spec(model, slot), slot=slot))
        self._watcher = self._task(self._watch_health())
        self._task(self._watch_stopped())
        bound = max(self.timings.start_timeout, self.timings.external_start_timeout) + 15
        # Each start is bounded already; this is a backstop. Plain tasks, cancelled on the way out, so a stop during
        # start-up (SIGTERM while a `url` runner is unreachable) leaves no gathered future unretrieved.
        waits = [asyncio.ensure_future(r.settled.wait()) for r in starting]
        try:
            if waits:
                await asyncio.wait(waits, timeout=bound)
        finally:
            for wait in waits:
                wait.cancel()
        problems = [f"{r.pipeline} {r.model_id}: {r.problem}" for r in starting if not r.ready]
        log_event(log, "runner pool started", models=len(self._models), ready=len(starting) - len(problems))
        return problems

    async def close(self) -> None:
        """Stop every managed runner (SIGTERM, then SIGKILL) and the health watcher; bounded."""
        if self._closing:
            return
        self._closing = True
        runners = [r for m in self._models.values() for r in m.runners]
        for runner in runners:
            runner.dead = True
            runner.lost.set()
            runner.settled.set()
            if runner.launch is not None:
                runner.launch.cancel()
        if self._watcher is not None:
            self._watcher.cancel()
        stops = [r.handle.stop() for r in runners if r.handle is not None]
        try:
            await asyncio.wait_for(
                asyncio.gather(*stops, self._managed.close(), self._external.close(), return_exceptions=True),
                self.timings.close_timeout,
            )
        except TimeoutError:
            log_event(log, "some runners did not stop in time", logging.ERROR, seconds=self.timings.close_timeout)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for model in self._models.values():
            model.runners.clear()
        if self._session is not None:
            await self._session.close()
        log_event(log, "runner pool closed")

    # --- leases ----------------------------------------------------------------------------------------

    @asynccontextmanager
    async def lease(self, pipeline: str, model_id: str, deadline: float | None = None) -> AsyncIterator[LeasedRunner]:
        """Reserve one request's worth of capacity on a runner of (pipeline, model_id) and yield it.

        ``deadline`` is a :func:`time.monotonic` time (default: now + start timeout); a cold model starts
        here and the lease waits for it until then. Raises :class:`InsufficientCapacity` at once when
        nothing is free, :class:`UnknownModelError` for a model not configured. The capacity is released
        when the block exits, however it exits."""
        if self._session is None or self._closing:
            raise PoolClosedError("the runner pool is not running; retry later")
        model = self._models.get((pipeline, model_id))
        if model is None:
            served = ", ".join(f"{p} {m}" for p, m in self._models) or "nothing"
            raise UnknownModelError(f"{pipeline} model {model_id!r} is not served here (aiModels.json has: {served})")
        if model.runner_app is not None:
            raise UnknownModelError(
                f"{pipeline} model {model_id!r} is served here only as a runner app: find it in GET /discovery"
            )
        deadline = time.monotonic() + self.timings.start_timeout if deadline is None else deadline
        runner = self._reserve(model)
        try:
            await self._until_settled(runner, deadline)
            assert runner.handle is not None
            yield LeasedRunner(
                pipeline, model_id, runner.handle.name, runner.handle.url, runner.handle.headers, runner.lost
            )
        finally:
            runner.in_use = max(0, runner.in_use - 1)
            runner.last_used = time.monotonic()

    def _reserve(self, model: Model) -> Runner:
        """Pick or start a runner and count one request on it. No await: atomic in the event loop."""
        ready = [r for r in model.runners if r.ready and r.in_use < r.capacity]
        starting = [r for r in model.runners if not r.dead and r.state == STARTING and r.in_use < r.capacity]
        if model.stopped and not ready and not starting:
            raise RunnerUnavailableError(
                f"{model.pipeline} {model.model_id!r} is not served: {model.stopped} (its runner failed to load "
                f"{model.same_load_failures} times this way and is not restarted until the model's files change "
                "or the orchestrator restarts)",
                retry_after=30,
            )
        if ready or starting:
            runner = min(ready, key=lambda r: (r.in_use, r.last_used)) if ready else starting[0]
        elif model.managed_capacity > model.managed_runners:
            runner = self._start_cold(model)
        else:
            unhealthy = [r for r in model.runners if r.state == UNHEALTHY]
            if unhealthy and not model.managed_capacity:
                raise RunnerUnavailableError(
                    f"the external runner for {model.pipeline} {model.model_id!r} at {unhealthy[0].spec.url} "
                    f"is not healthy ({unhealthy[0].problem}); check it is running"
                )
            raise InsufficientCapacity(
                f"all {model.capacity} of {model.pipeline} {model.model_id!r}'s capacity is in use or starting"
            )
        runner.in_use += 1
        return runner

    def _start_cold(self, model: Model) -> Runner:
        slot = self._slots.take()
        model.cold_starts += 1
        after: asyncio.Task[None] | None = None
        if slot is None:
            victim = choose_victim(r for m in self._models.values() for r in m.runners if r.managed)
            if victim is None or victim.slot is None:
                raise InsufficientCapacity(
                    f"all {self._slots.count} runner slot(s) are busy or held by warm models, so "
                    f"{model.pipeline} {model.model_id!r} cannot start; add slots or try again later"
                )
            slot = victim.slot
            log_event(
                log,
                "evicting an idle runner to free its slot",
                runner=victim.label,
                slot=slot,
                for_model=model.model_id,
            )
            after = self._retire(victim, "evicted", keep_slot=True)
        return self._spawn(model, self._managed_spec(model, slot, cold=True), slot=slot, after=after)

    async def _until_settled(self, runner: Runner, deadline: float) -> None:
        if not runner.ready:
            remaining = deadline - time.monotonic()
            try:
                await asyncio.wait_for(runner.settled.wait(), max(remaining, 0))
            except TimeoutError:
                raise RunnerUnavailableError(
                    f"{runner.pipeline} {runner.model_id!r} is still starting (state {runner.state}); "
                    "retry shortly" + runner.log_hint,
                    retry_after=5,
                ) from None
        if not runner.ready:
            raise RunnerUnavailableError(
                f"the runner for {runner.pipeline} {runner.model_id!r} is not available: "
                f"{runner.problem or 'the pool is closing'}" + runner.log_hint
            )

    # --- runners ---------------------------------------------------------------------------------------

    def _managed_spec(self, model: Model, slot: int, cold: bool = False) -> RunnerSpec:
        # Optimisation flags apply to warm runners only, as in go-livepeer.
        flags = {} if cold else model.flags
        return RunnerSpec(
            model.pipeline,
            model.model_id,
            slot=slot,
            optimization_flags=flags,
            pipeline_class=model.pipeline_class,
            runner_app=model.runner_app,
        )

    def _spawn(
        self,
        model: Model,
        spec: RunnerSpec,
        *,
        slot: int | None,
        capacity: int = 1,
        managed: bool = True,
        after: asyncio.Task[None] | None = None,
        delay: float = 0.0,
    ) -> Runner:
        runner = Runner(model.pipeline, model.model_id, spec, model.warm, managed, capacity, slot)
        model.runners.append(runner)
        runner.launch = self._task(self._launch(model, runner, after, delay))
        return runner

    async def _launch(self, model: Model, runner: Runner, after: asyncio.Task[None] | None, delay: float) -> None:
        try:
            if after is not None:  # the runner whose slot this one takes is still stopping
                await asyncio.wait_for(asyncio.shield(after), self.timings.close_timeout)
            if delay:
                await asyncio.sleep(delay)
            backend = self._managed if runner.managed else self._external
            runner.handle = await backend.start(runner.spec)
            if runner.dead:  # closed while starting
                await runner.handle.stop()
                return
            if runner.managed:
                self._task(self._watch_exit(runner))
            await self._until_ready(runner)
            assert self._session is not None and runner.handle is not None
            runner.version = await fetch_version(
                self._session, runner.handle.url, runner.handle.headers, self.timings.health_timeout
            )
            loaded(model)
            runner.load_seconds = round(time.monotonic() - runner.started_at, 1)
            runner.settled.set()
            log_event(
                log,
                "runner ready",
                runner=runner.label,
                state=runner.state,
                version=runner.version,
                seconds=runner.load_seconds,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the backend could not start it, or it never became ready
            self._fail(runner, str(exc))

    async def _until_ready(self, runner: Runner) -> None:
        assert self._session is not None and runner.handle is not None
        timeout = self.timings.start_timeout if runner.managed else self.timings.external_start_timeout
        deadline = time.monotonic() + timeout
        health = None
        while True:
            health = await probe(self._session, runner.handle.url, runner.handle.headers, self.timings.health_timeout)
            if health.status in READY_STATES:
                runner.state = health.status or STARTING
                if health.warnings:  # it serves, in part: say so once, and show it in /status
                    runner.problem = "; ".join(health.warnings)
                    log_event(log, "runner degraded", logging.WARNING, runner=runner.label, problem=runner.problem)
                return
            if health.status == "ERROR":
                reason = await self._reason(runner)
                raise RuntimeError(f"the runner reported ERROR loading its model: {reason or 'see its log'}")
            if time.monotonic() >= deadline:
                last = health.status or health.problem
                raise RuntimeError(f"not ready after {timeout:g}s (last: {last})")
            await asyncio.sleep(self.timings.ready_poll)

    async def _watch_exit(self, runner: Runner) -> None:
        assert runner.handle is not None
        code = await runner.handle.wait_exit()
        if not runner.dead:
            # read at once (a bounded tail of a local file): the runner must stop being leased without delay
            reason = failure_reason(runner.handle.log_path)
            self._fail(
                runner, f"the runner process exited unexpectedly (code {code})" + (f": {reason}" if reason else "")
            )

    async def _reason(self, runner: Runner) -> str:
        """The runner's own account of its failure, from its log; a moment later if not written yet."""
        path = runner.handle.log_path if runner.handle else None
        for wait in (0.0, 0.3):
            await asyncio.sleep(wait)
            reason = await asyncio.to_thread(failure_reason, path)
            if reason:
                return reason
        return ""

    def _fail(self, runner: Runner, problem: str) -> None:
        """A runner failed: external ones are marked UNHEALTHY and kept watching; managed ones are
        stopped, and a warm one is replaced in the same slot (with a growing delay if it keeps failing)."""
        if runner.dead or self._closing:
            return
        runner.problem = problem
        model = self._models[(runner.pipeline, runner.model_id)]
        model.last_error, model.last_error_at = problem, time.time()
        if not runner.managed:
            if runner.state != UNHEALTHY:
                model.failures += 1
                log_event(log, "external runner unhealthy", logging.WARNING, runner=runner.label, problem=problem)
            runner.state = UNHEALTHY
            runner.failures = 0
            runner.settled.set()
            return
        log_event(
            log,
            "runner failed",
            logging.ERROR,
            runner=runner.label,
            problem=problem,
            log=str(runner.handle.log_path) if runner.handle else "",
        )
        if runner.launch is not None and runner.launch is not asyncio.current_task():
            runner.launch.cancel()
        model.failures += 1
        keep_slot = runner.warm and runner.slot is not None  # a stopped warm model keeps it for its return
        stopping = self._retire(runner, FAILED, keep_slot=keep_slot)
        limit, models_dir = self.timings.load_failures_to_stop, self.models_dir
        if runner.load_seconds is None and count_load_failure(model, runner, problem, limit, models_dir):
            return
        if keep_slot and runner.slot is not None:
            model.failed_starts += 1
            delay = (
                min(self.timings.max_restart_delay, 2.0 ** (model.failed_starts - 2)) if model.failed_starts > 1 else 0
            )
            model.restarts += 1
            log_event(log, "restarting warm runner", model=runner.model_id, slot=runner.slot, delay=delay)
            self._spawn(model, self._managed_spec(model, runner.slot), slot=runner.slot, after=stopping, delay=delay)

    def retry(self, pipeline: str, model_id: str) -> bool:
        """Start a stopped model's runners again (its warm ones now, cold ones on their next lease); False
        when the model is not stopped. Raises :class:`UnknownModelError` for a model not configured."""
        model = self._models.get((pipeline, model_id))
        if model is None:
            raise UnknownModelError(f"{pipeline} model {model_id!r} is not served here")
        if not model.stopped or self._closing:
            return False
        for slot in resume(model):
            self._spawn(model, self._managed_spec(model, slot), slot=slot)
        return True

    async def _watch_stopped(self) -> None:
        """Every ``files_poll`` seconds, start again each stopped model whose files changed."""
        while True:
            await asyncio.sleep(self.timings.files_poll)
            if self.models_dir is None:
                continue
            for model in [m for m in self._models.values() if m.stopped]:
                now = await asyncio.to_thread(files_fingerprint, self.models_dir, model.model_id)
                if model.stopped and now != model.stopped_files:
                    log_event(log, "a stopped model's files changed", model=model.model_id, models_dir=self.models_dir)
                    self.retry(model.pipeline, model.model_id)

    def _retire(self, runner: Runner, state: str, *, keep_slot: bool) -> asyncio.Task[None]:
        """Take ``runner`` out of the pool and stop it; its slot is released once it has stopped, unless
        ``keep_slot`` (it is handed to a replacement)."""
        runner.dead = True
        runner.state = state
        runner.settled.set()
        runner.lost.set()
        model = self._models[(runner.pipeline, runner.model_id)]
        if runner in model.runners:
            model.runners.remove(runner)

        async def stop() -> None:
            try:
                if runner.handle is not None:
                    await runner.handle.stop()
            except Exception as exc:  # a task nobody awaits: report here rather than lose it
                log_event(log, "runner did not stop cleanly", logging.ERROR, runner=runner.label, problem=str(exc))
            finally:
                if not keep_slot and runner.slot is not None:
                    self._slots.release(runner.slot)

        return self._task(stop())

    # --- health ----------------------------------------------------------------------------------------

    async def _watch_health(self) -> None:
        while True:
            await asyncio.sleep(self.timings.health_interval)
            watched = [
                r for m in self._models.values() for r in m.runners if r.settled.is_set() and r.handle and not r.dead
            ]
            await asyncio.gather(*(self._check(r) for r in watched))

    async def _check(self, runner: Runner) -> None:
        assert self._session is not None and runner.handle is not None
        health = await probe(self._session, runner.handle.url, runner.handle.headers, self.timings.health_timeout)
        if runner.dead:
            return
        problem = health.problem
        if health.status in READY_STATES:
            if runner.state == UNHEALTHY:
                log_event(log, "external runner healthy again", runner=runner.label)
            runner.state, runner.failures, runner.loading_since = health.status or STARTING, 0, None
            runner.problem = "; ".join(health.warnings)  # a healthy runner's problem: only what it still lacks
            return
        if health.status == "ERROR":
            runner.failures = self.timings.failures_to_restart  # no second chance, as in go-livepeer
            problem = "the runner reported ERROR"
        elif health.status == "LOADING":
            runner.state = "LOADING"
            runner.loading_since = runner.loading_since or time.monotonic()
            if time.monotonic() - runner.loading_since <= self.timings.start_timeout:
                return
            runner.failures += 1
            problem = f"LOADING for more than {self.timings.start_timeout:g}s"
        else:
            runner.failures += 1
            problem = problem or f"unknown health status {health.status!r}"
        if runner.failures >= self.timings.failures_to_restart:
            self._fail(runner, f"{problem} ({runner.failures} failed health checks)")

    # --- status ----------------------------------------------------------------------------------------

    def snapshot(self, *, runner_apps: bool = False) -> dict[ModelKey, ModelStatus]:
        """Per (pipeline, model_id): warm flag, capacity, in use, idle, version and every runner's state. Models
        served only as runner apps are left out (nothing offers them on a classic route) unless ``runner_apps``."""
        return {
            key: model_status(model) for key, model in self._models.items() if runner_apps or model.runner_app is None
        }

    def _task(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
