"""External runners: an aiModels.json entry with ``url`` (and optional ``token``). Nothing is started;
the pool only watches ``/health`` and sends ``Authorization: Bearer <token>`` with every call."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from lpnode.orchestrator.pool.backend import RunnerSpec


def runner_name(pipeline: str, model_id: str, suffix: str) -> str:
    """go-livepeer's container name: ``<pipeline>_<model id with / and _ as ->_<suffix>``."""
    return f"{pipeline}_{model_id.replace('/', '-').replace('_', '-')}_{suffix}"


class ExternalHandle:
    def __init__(self, spec: RunnerSpec) -> None:
        self.name = runner_name(spec.pipeline, spec.model_id, spec.url.split("://", 1)[-1].replace("/", "-"))
        self.url = spec.url.rstrip("/")
        self.headers: Mapping[str, str] = {"Authorization": f"Bearer {spec.token}"} if spec.token else {}
        self.pid: int | None = None
        self.log_path: Path | None = None
        self._stopped = asyncio.Event()

    async def wait_exit(self) -> int | None:
        await self._stopped.wait()
        return None

    async def stop(self) -> None:
        self._stopped.set()


class ExternalBackend:
    managed = False

    async def start(self, spec: RunnerSpec) -> ExternalHandle:
        if not spec.url:
            raise ValueError("an external runner needs a url")
        return ExternalHandle(spec)

    async def close(self) -> None:
        return None
