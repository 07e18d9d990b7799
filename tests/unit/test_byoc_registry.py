"""The BYOC registry with a target of another kind than a container: what a runner-pool-backed target
(a pipeline hosted by the orchestrator's runners) plugs into."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from lpnode.byoc.registry import CapabilityRegistry, Price, RegisteredCapability, TargetLease
from lpnode.errors import UnavailableError


class SlotTarget:
    """A target with one slot at a fixed URL: the smallest thing that satisfies CapabilityTarget."""

    kind = "runner"
    url = "http://127.0.0.1:8001"
    capacity = 1

    def __init__(self) -> None:
        self.in_use = 0
        self.healthy = True
        self.last_error = ""
        self.started = self.closed = False

    @contextlib.asynccontextmanager
    async def lease(self, deadline: float | None) -> AsyncIterator[TargetLease]:
        if self.in_use >= self.capacity:
            raise UnavailableError("No capacity available for capability runner-echo")
        self.in_use += 1
        try:
            yield TargetLease(self.url, {"Authorization": "Bearer runner"})
        finally:
            self.in_use -= 1

    def unreachable(self, problem: str) -> None:
        self.healthy, self.last_error = False, problem

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True


def test_any_target_is_advertised_leased_and_replaced() -> None:
    async def scenario() -> None:
        registry = CapabilityRegistry()
        target = SlotTarget()
        await registry.register(RegisteredCapability("runner-echo", "", Price(5, 2), target))
        assert target.started
        (price,) = registry.advertised()
        assert (price.capability, price.constraint, price.pricePerUnit, price.pixelsPerUnit) == (
            37,
            "runner-echo",
            5,
            2,
        )
        capability = registry.get("runner-echo")
        assert capability is not None and capability.available() == 1
        async with target.lease(None) as lease:
            assert lease.headers == {"Authorization": "Bearer runner"}
            assert capability.available() == 0 and registry.status()[0]["in_use"] == 1
            with pytest.raises(UnavailableError):
                async with target.lease(None):
                    pass
        target.unreachable("runner stopped")
        assert registry.advertised() == [] and capability.available() == 0
        assert registry.status()[0] == {
            "name": "runner-echo", "kind": "runner", "url": target.url, "capacity": 1, "in_use": 0,
            "price_per_unit": 5, "price_scaling": 2, "currency": "wei", "healthy": False,
            "last_error": "runner stopped",
        }  # fmt: skip
        replacement = SlotTarget()
        await registry.register(RegisteredCapability("runner-echo", "", Price(), replacement))
        assert target.closed and registry.get("runner-echo") is not None
        assert await registry.unregister("runner-echo") and replacement.closed
        assert not await registry.unregister("runner-echo")

    asyncio.run(scenario())
