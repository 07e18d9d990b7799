"""Custom pipelines from aiModels.json as BYOC capabilities: the capability target that leases a runner.

A custom pipeline (``docs/custom-pipelines.md``) has no Livepeer capability number, so the orchestrator
advertises it the one way the wire allows for a pipeline of its own: as a BYOC capability (37) whose
constraint is the pipeline's name. Gateways reach it with ``POST /process/request/<name>`` and the job goes
to a runner the orchestrator's pool starts and supervises, exactly as a built-in pipeline's job would.

One capability per pipeline name. When aiModels.json lists several models for one custom pipeline, a job
goes to the first of them with free capacity (a BYOC job request names no model). The price is the first
priced entry's ``price_per_unit / pixels_per_unit`` in its ``currency``, per second of compute, as BYOC
prices are.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence

from lpnode.byoc.registry import CapabilityRegistry, Price, RegisteredCapability, TargetLease
from lpnode.orchestrator.ai_models import AIModelConfig
from lpnode.orchestrator.pool import RunnerPool


class PipelineTarget:
    """Leases a runner of a custom pipeline from the pool; capacity and state come from the pool."""

    kind = "pipeline"

    def __init__(self, pool: RunnerPool, pipeline: str, model_ids: Sequence[str]) -> None:
        self.pool = pool
        self.pipeline = pipeline
        self.model_ids = tuple(model_ids)
        self.url = f"runner-pool:{pipeline}"

    def _models(self) -> list[tuple[int, int, str]]:
        """(capacity, in_use, problem) of each of the pipeline's models, from the pool's snapshot."""
        snapshot = self.pool.snapshot()
        found = []
        for model_id in self.model_ids:
            status = snapshot.get((self.pipeline, model_id))
            if status is not None:
                problems = [r.problem for r in status.runners if r.problem]
                found.append((status.capacity, status.in_use, problems[-1] if problems else ""))
        return found

    @property
    def capacity(self) -> int:
        return sum(capacity for capacity, _, _ in self._models())

    @property
    def in_use(self) -> int:
        return sum(in_use for _, in_use, _ in self._models())

    @property
    def healthy(self) -> bool:
        """Advertised while the pool has the pipeline (the pool restarts failed runners itself)."""
        return self.capacity > 0

    @property
    def last_error(self) -> str:
        problems = [problem for _, _, problem in self._models() if problem]
        return problems[-1] if problems else ""

    @contextlib.asynccontextmanager
    async def lease(self, deadline: float | None) -> AsyncIterator[TargetLease]:
        """A runner of the first model with free capacity (the pool answers 503 when none has any)."""
        snapshot = self.pool.snapshot()
        free = [m for m in self.model_ids if (s := snapshot.get((self.pipeline, m))) and s.in_use < s.capacity]
        model_id = free[0] if free else self.model_ids[0]
        async with self.pool.lease(self.pipeline, model_id, deadline) as runner:
            yield TargetLease(runner.url, dict(runner.headers), default_path=self.pipeline)

    def unreachable(self, problem: str) -> None:
        """Nothing to do: the pool watches its runners and restarts one that died."""

    async def start(self) -> None:
        """Nothing to start: the pool runs the runners."""

    async def close(self) -> None:
        """Nothing to stop: the pool stops the runners."""


def custom_price(configs: Iterable[AIModelConfig]) -> Price:
    """The BYOC price of a custom pipeline: its first priced entry, per second; free when none is priced."""
    for config in configs:
        price = config.price_per_pixel
        if price is not None and config.gateway.lower() == "default":
            return Price(price.numerator, price.denominator, config.currency or "wei")
    return Price()


async def register_custom_pipelines(
    registry: CapabilityRegistry, pool: RunnerPool, configs: Iterable[AIModelConfig]
) -> list[str]:
    """Register each custom pipeline of ``configs`` as a BYOC capability leasing from ``pool``; their names."""
    by_pipeline: dict[str, list[AIModelConfig]] = {}
    for config in configs:
        if config.custom:
            by_pipeline.setdefault(config.pipeline, []).append(config)
    for pipeline, entries in by_pipeline.items():
        target = PipelineTarget(pool, pipeline, [entry.model_id for entry in entries])
        description = f"custom pipeline {pipeline} served by this orchestrator's runners"
        await registry.register(RegisteredCapability(pipeline, description, custom_price(entries), target))
    return list(by_pipeline)
