"""Managed runners as Docker containers, the way go-livepeer's Docker manager runs ai-runner images.

A runner is a container of the pipeline's image (see ``docker_images``), named like go-livepeer's
(``<pipeline>_<model id>_<host port>``), with ``PIPELINE``, ``MODEL_ID`` and the entry's optimisation flags in
its environment (with the settings' extra variables and ``SAFETY_CHECKER_MODEL_ID``), the models dir
bind-mounted read-only at ``/models`` (a runner only reads models; ``lpnode models pull`` fills the dir), its
port 8000 published on ``127.0.0.1:<host port>``, the slot's GPU as a device request (none for an emulated
slot), the labels ``creator=ai-worker`` and ``creator_id=<id>`` plus ``lpnode.run=<run id>``, and restart
policy on-failure (3 retries). Images are never pulled here: a missing image fails the start with the
``docker pull`` command to run.

No container outlives its orchestrator: ``close`` stops and removes every one; if the orchestrator dies
without closing (SIGKILL, a crash), a small watcher process (:mod:`~lpnode.orchestrator.pool.docker_reaper`)
removes the run's containers at once; and, as in go-livepeer, before its first container the backend removes
the containers an earlier run left behind (:meth:`DockerBackend.remove_stale_containers`).

The Docker SDK is synchronous; every call to it runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import docker

from lpnode.errors import ConfigError
from lpnode.logs import log_event
from lpnode.orchestrator.pool import docker_reaper
from lpnode.orchestrator.pool.backend import RunnerSpec
from lpnode.orchestrator.pool.docker_images import (
    DEFAULT_IMAGE,
    ImageOverrides,
    container_image,
)
from lpnode.orchestrator.pool.external import runner_name
from lpnode.orchestrator.pool.ports import PORT_BASES, pick_port
from lpnode.orchestrator.pool.runner_app_env import APP_ENV_VARS, RunnerAppHost, runner_app_env
from lpnode.schemas.limits import ENV_VAR as LIMITS_ENV

log = logging.getLogger("lpnode.orchestrator.pool")
ClientFactory = Callable[[], Any]
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
CREATOR_LABEL, CREATOR, CREATOR_ID_LABEL = "creator", "ai-worker", "creator_id"
RUN_LABEL = "lpnode.run"  # one backend's containers (its run id): what the reaper removes
POLL_SECONDS = 0.5  # how often a container's state is read while it starts and while it runs
LOG_TAIL_LINES = 5  # log lines quoted in a failed start's message
_GONE = ("exited", "dead", "removed")


@dataclass(frozen=True, kw_only=True)
class DockerSettings:
    """How runner containers are made. ``gpus`` holds one GPU id per slot (``"0"``, ``"1"``, or go-livepeer's
    ``colocated-<i>-<gpu>``/``emulated-<n>``); empty means emulated slots with no GPU. ``default_image`` is
    ``-aiRunnerImage``: used when ``image_overrides.default`` is empty. ``env`` adds variables to every
    container (the process backend's ``env``: e.g. ``TORCH_THREADS``); the contract's own variables win."""

    models_dir: Path
    image_overrides: ImageOverrides = field(default_factory=ImageOverrides)
    default_image: str = DEFAULT_IMAGE
    creator_id: str
    gpus: Sequence[str] = ()
    verbose_logs: bool = False
    host: str = "127.0.0.1"
    stop_timeout: float = 8.0
    port_bases: Mapping[str, int] = field(default_factory=lambda: dict(PORT_BASES))
    start_timeout: float = 180.0  # for the container to be running; the pool then waits for /health
    env: Mapping[str, str] = field(default_factory=dict)
    safety_checker_id: str = ""  # SAFETY_CHECKER_MODEL_ID of the runners ("": the image's default)
    runner_apps: RunnerAppHost | None = None  # where aiModels.json "runner_app" runners register


def slot_gpu(slot: int | None, gpus: Sequence[str]) -> str | None:
    """The hardware GPU id for ``slot``, or None for an emulated slot (no GPU, no device request)."""
    if not gpus:
        return None
    if slot is None or not 0 <= slot < len(gpus):
        raise ConfigError(f"runner slot {slot} has no GPU: the GPUs are {', '.join(gpus)}; use one slot per GPU")
    parts = gpus[slot].split("-", 2)
    gpu = parts[2] if parts[0] == "colocated" and len(parts) == 3 else gpus[slot]  # colocated-<index>-<gpu>
    return None if gpu.startswith("emulated-") else gpu


def container_config(spec: RunnerSpec, port: int, settings: DockerSettings, run_id: str = "") -> dict[str, Any]:
    """The keyword arguments of ``client.containers.create(...)`` (or ``run``) for ``spec`` on host ``port``;
    ``run_id`` (the backend's) becomes the ``lpnode.run`` label."""
    gpu = slot_gpu(spec.slot, settings.gpus)
    inherited = {k: v for k, v in settings.env.items() if k not in APP_ENV_VARS}  # a classic runner registers nowhere
    environment = {**inherited, **spec.optimization_flags, "PIPELINE": spec.pipeline, "MODEL_ID": spec.model_id}
    app_env = runner_app_env(spec, settings.runner_apps)
    if app_env:  # a runner app: it calls the orchestrator from inside the container, which calls it back on the host
        app_env["LIVE_RUNNER_ORCH"] = _from_container(app_env["LIVE_RUNNER_ORCH"])
        app_env["LIVE_RUNNER_PUBLIC_URL"] = f"http://{settings.host}:{port}"
        environment.update(app_env)
    if settings.safety_checker_id:
        environment["SAFETY_CHECKER_MODEL_ID"] = settings.safety_checker_id
    if spec.pipeline_class:  # a custom pipeline: the image must hold lpnode and the class's package
        environment["PIPELINE_CLASS"] = spec.pipeline_class
    if settings.verbose_logs:
        environment["VERBOSE_LOGGING"] = "1"
    limits = os.environ.get(LIMITS_ENV, "").strip()
    if limits:  # the operator's request limits; a file's path would not exist in the container: its contents
        environment[LIMITS_ENV] = limits if limits.startswith(("{", "[")) else _read_limits(limits)
    labels = {CREATOR_LABEL: CREATOR, CREATOR_ID_LABEL: settings.creator_id}
    if run_id:
        labels[RUN_LABEL] = run_id
    config: dict[str, Any] = {
        "image": container_image(spec.pipeline, spec.model_id, settings.image_overrides, settings.default_image),
        "name": runner_name(spec.pipeline, spec.model_id, str(port)),
        "environment": environment,
        "labels": labels,
        "volumes": {str(settings.models_dir.expanduser().absolute()): {"bind": "/models", "mode": "ro"}},
        "ports": {"8000/tcp": (settings.host, port)},
        "restart_policy": {"Name": "on-failure", "MaximumRetryCount": 3},
        "detach": True,
    }
    if app_env:
        config["extra_hosts"] = {HOST_ALIAS: "host-gateway"}
    if gpu is not None:
        config["device_requests"] = [docker.types.DeviceRequest(device_ids=[gpu], capabilities=[["gpu"]])]
    return config


HOST_ALIAS = "host.docker.internal"
"""The name a runner-app container reaches the orchestrator's host by (Docker's ``host-gateway``). The orchestrator's
runner-facing address (``-liveRunnerAddr``, else ``-serviceAddr``) must listen beyond loopback for it to answer."""


def _from_container(url: str) -> str:
    """``url`` as a container sees it: a loopback host becomes :data:`HOST_ALIAS`."""
    parts = urlsplit(url)
    if parts.hostname in {"127.0.0.1", "localhost", "::1"} or (parts.hostname or "").startswith("127."):
        netloc = HOST_ALIAS + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _read_limits(path: str) -> str:
    try:
        return Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{LIMITS_ENV}={path}: cannot read the limits file: {exc}") from None


def client_from_env() -> Any:
    """``docker.from_env()``, after checking that a local engine's socket exists (the SDK leaks a socket when
    it cannot connect to one, and its message does not say what is missing)."""
    host = os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    if host.startswith("unix://") and not os.path.exists(host.removeprefix("unix://")):
        raise FileNotFoundError(f"{host.removeprefix('unix://')} does not exist; is Docker installed and running?")
    return docker.from_env()


def docker_available(client_factory: ClientFactory = client_from_env) -> str | None:
    """None when a Docker engine answers ``ping``; otherwise one line saying why not."""
    try:
        client = client_factory()
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # any failure to reach the engine is the answer
        return _no_engine(exc)
    return None


class DockerHandle:
    """One runner container. ``stop`` stops it (SIGTERM, SIGKILL after ``stop_timeout``), appends its logs to
    ``log_path`` (``<log dir>/<name>.log``, when the backend has a log dir) and removes it; idempotent, bounded."""

    def __init__(self, container: Any, name: str, url: str, port: int, backend: DockerBackend) -> None:
        self.name, self.url, self.port = name, url, port
        self.headers: Mapping[str, str] = {}
        self.pid: int | None = None
        self.log_path = backend.log_dir / f"{name}.log" if backend.log_dir is not None else None
        self.container_id: str = container.id
        self._container = container
        self._stop_timeout = backend.settings.stop_timeout
        self._on_stopped: Callable[[DockerHandle], None] = backend._live.discard
        self._stopping: asyncio.Task[None] | None = None

    async def wait_exit(self) -> int | None:
        while self._stopping is None:
            with contextlib.suppress(Exception):  # the engine may be busy; health checks catch a lost runner
                status, code = await asyncio.to_thread(_state, self._container)
                if status in _GONE:
                    return code
            await asyncio.sleep(POLL_SECONDS)
        await asyncio.wait([self._stopping])
        return None

    async def stop(self) -> None:
        await asyncio.shield(self.begin_stop())

    def begin_stop(self) -> asyncio.Task[None]:
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_task(self._stop())
            self._stopping.add_done_callback(self._report)
        return self._stopping

    async def _stop(self) -> None:
        bound = self._stop_timeout + 30  # the engine's stop timeout, plus time to copy the logs and remove
        try:
            stopping = asyncio.to_thread(_stop_and_remove, self._container, self._stop_timeout, self.log_path)
            await asyncio.wait_for(stopping, bound)
        except TimeoutError:
            raise RuntimeError(
                f"container {self.name} was not removed in {bound:g}s; run `docker rm -f {self.name}`"
            ) from None
        except Exception as exc:
            raise RuntimeError(f"could not stop container {self.name}: {_one_line(exc)}") from None
        finally:
            self._on_stopped(self)

    def _report(self, task: asyncio.Task[None]) -> None:
        problem = None if task.cancelled() else task.exception()
        if problem is not None:  # also when nobody awaits the stop
            log_event(log, "runner container did not stop cleanly", logging.ERROR, runner=self.name, problem=problem)

    def log_tail(self) -> str:
        """The last few lines of the container's log, on one line (blocking)."""
        try:
            text = self._container.logs(tail=LOG_TAIL_LINES * 4).decode(errors="replace")
        except Exception as exc:
            return f"(logs unavailable: {_one_line(exc)})"
        lines = [line.strip() for line in text.splitlines() if line.strip()][-LOG_TAIL_LINES:]
        return " | ".join(lines) or "(none)"


class DockerBackend:
    """Starts runners as containers. The first ``start`` removes stale containers first (once); the orchestrator
    may call :meth:`remove_stale_containers` itself at boot, and ``start`` then does not repeat it. With
    ``reap_on_exit`` (the default) the first start also starts the reaper, which removes this backend's
    containers if this process dies without :meth:`close`; its output goes to ``<log dir>/docker-reaper.log``."""

    managed = True

    def __init__(
        self,
        settings: DockerSettings,
        client_factory: ClientFactory = client_from_env,
        *,
        log_dir: Path | None = None,
        reap_on_exit: bool = True,
    ) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.run_id = uuid.uuid4().hex[:12]
        self._reap_on_exit = reap_on_exit
        self._reaper: docker_reaper.Reaper | None = None
        self._client_factory = client_factory
        self._client: Any = None
        self._cleaned = False
        self._lock = asyncio.Lock()
        self._live: set[DockerHandle] = set()
        self._reserved: set[int] = set()  # ports picked by starts still creating their container
        self._orphans: set[asyncio.Future[Any]] = set()  # creations whose start was cancelled

    async def remove_stale_containers(self) -> int:
        """Remove containers labelled ``creator=ai-worker`` whose ``creator_id`` is ours or missing (go-livepeer's
        rule), except this backend's own. Returns how many were removed. Call it before the first start."""
        async with self._lock:
            return await self._remove_stale(await self._connect())

    async def start(self, spec: RunnerSpec) -> DockerHandle:
        async with self._lock:
            client = await self._connect()
            if not self._cleaned:
                await self._remove_stale(client)
            if self._reap_on_exit and self._reaper is None:
                log_path = self.log_dir / "docker-reaper.log" if self.log_dir is not None else None
                self._reaper = await docker_reaper.Reaper.start(f"{RUN_LABEL}={self.run_id}", log_path)
        settings, taken = self.settings, {h.port for h in self._live} | self._reserved
        port = pick_port(spec.pipeline, spec.slot or 0, host=settings.host, taken=taken, bases=settings.port_bases)
        self._reserved.add(port)
        try:
            config = container_config(spec, port, settings, self.run_id)
            container = await self._create(client, config)
        finally:
            self._reserved.discard(port)
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        handle = DockerHandle(container, config["name"], f"http://{host}:{port}", port, self)
        self._live.add(handle)
        try:
            await asyncio.to_thread(container.start)
            await self._until_running(handle)
        except asyncio.CancelledError:
            handle.begin_stop()  # close() waits for it
            raise
        except Exception as exc:
            message = str(exc) if isinstance(exc, RuntimeError) else f"container {handle.name}: {_one_line(exc)}"
            with contextlib.suppress(Exception):
                await handle.stop()
            raise RuntimeError(message + (f"; full log: {handle.log_path}" if handle.log_path else "")) from None
        gpu = slot_gpu(spec.slot, settings.gpus) or "none"
        log_event(log, "runner container started", runner=handle.name, image=config["image"], port=port, gpu=gpu)
        return handle

    async def close(self) -> None:
        async def remove_orphan(creating: asyncio.Future[Any]) -> None:
            container = await asyncio.wait_for(creating, self.settings.stop_timeout + 30)
            await asyncio.to_thread(_stop_and_remove, container, self.settings.stop_timeout, None)

        orphans, self._orphans = list(self._orphans), set()
        stops = [h.stop() for h in list(self._live)]
        await asyncio.gather(*stops, *(remove_orphan(f) for f in orphans), return_exceptions=True)
        if self._client is not None:
            client, self._client = self._client, None
            with contextlib.suppress(Exception):
                await asyncio.to_thread(client.close)
        if self._reaper is not None:
            reaper, self._reaper = self._reaper, None
            await reaper.close()

    async def _connect(self) -> Any:  # the caller holds self._lock
        if self._client is None:
            try:
                self._client = await asyncio.to_thread(self._client_factory)
            except Exception as exc:
                raise RuntimeError(_no_engine(exc)) from None
        return self._client

    async def _remove_stale(self, client: Any) -> int:
        try:
            found = await asyncio.to_thread(
                client.containers.list, all=True, filters={"label": f"{CREATOR_LABEL}={CREATOR}"}
            )
        except Exception as exc:
            raise RuntimeError(f"could not list Docker containers: {_one_line(exc)}") from None
        self._cleaned = True
        ours, me = {h.container_id for h in self._live}, self.settings.creator_id
        stale = [c for c in found if c.id not in ours and (c.labels or {}).get(CREATOR_ID_LABEL, me) == me]
        removals = (asyncio.to_thread(_stop_and_remove, c, self.settings.stop_timeout, None) for c in stale)
        results = await asyncio.gather(*removals, return_exceptions=True)
        for container, result in zip(stale, results, strict=True):
            if isinstance(result, BaseException):
                problem = _one_line(result)
                log_event(log, "stale container not removed", logging.WARNING, name=container.name, problem=problem)
            else:
                log_event(log, "stale container removed", name=container.name)
        return sum(1 for r in results if not isinstance(r, BaseException))

    async def _create(self, client: Any, config: dict[str, Any]) -> Any:
        image, name = config["image"], config["name"]
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        creating = asyncio.ensure_future(asyncio.to_thread(client.containers.create, **config))
        try:
            return await asyncio.shield(creating)
        except asyncio.CancelledError:
            self._orphans.add(creating)  # close() removes what it creates
            raise
        except docker.errors.ImageNotFound:
            raise RuntimeError(f"the image {image} is not on this machine; run `docker pull {image}`") from None
        except Exception as exc:
            if getattr(exc, "status_code", None) == 409:
                raise RuntimeError(
                    f"a container named {name} exists already; remove it: `docker rm -f {name}`"
                ) from None
            raise RuntimeError(f"Docker could not create container {name}: {_one_line(exc)}") from None

    async def _until_running(self, handle: DockerHandle) -> None:
        deadline = time.monotonic() + self.settings.start_timeout
        while True:
            status, code = await asyncio.to_thread(_state, handle._container)
            if status == "running":
                return
            if status in _GONE:
                tail = await asyncio.to_thread(handle.log_tail)
                raise RuntimeError(f"container {handle.name} exited with code {code} while starting; last log: {tail}")
            if time.monotonic() >= deadline:
                timeout = self.settings.start_timeout
                raise RuntimeError(f"container {handle.name} is not running after {timeout:g}s (state {status})")
            await asyncio.sleep(POLL_SECONDS)


def _state(container: Any) -> tuple[str, int | None]:
    """The container's status (``running``, ``exited``, …; ``removed`` when gone) and exit code (blocking)."""
    try:
        container.reload()
    except docker.errors.NotFound:
        return "removed", None
    state = container.attrs.get("State") or {}
    return str(state.get("Status", "unknown")), state.get("ExitCode")


def _stop_and_remove(container: Any, timeout: float, log_path: Path | None) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        container.stop(timeout=math.ceil(timeout))  # the engine takes whole seconds
        if log_path is not None:
            with open(log_path, "ab") as out:
                out.write(
                    f"--- lpnode pool: logs of {container.name} at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode()
                )
                for chunk in container.logs(stream=True, follow=False):
                    out.write(chunk)
        container.remove(force=True)


def _one_line(exc: BaseException) -> str:
    text = getattr(exc, "explanation", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())[:300]


def _no_engine(exc: BaseException) -> str:
    return f"no Docker engine at {os.environ.get('DOCKER_HOST') or DEFAULT_DOCKER_HOST}: {_one_line(exc)}"
