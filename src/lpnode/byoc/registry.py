"""The orchestrator's BYOC capabilities: name, price and *target* (where a job for it runs), by name.

A capability's target is pluggable. Everything the job route needs from one is :class:`CapabilityTarget`:

- ``lease(deadline)``: an async context manager that reserves one job's worth of capacity and yields a
  :class:`TargetLease` (the base URL to POST the job to, and headers to add); it raises
  :class:`~lpnode.errors.UnavailableError` (503, with ``Retry-After``) when nothing is free or the target
  is unhealthy, and releases the capacity when the block exits, however it exits;
- ``capacity``, ``in_use``, ``healthy`` and ``last_error`` for advertising and ``/status``;
- ``unreachable(problem)``: the job route reports a target that refused the connection, so the target
  can stop being advertised until it recovers;
- ``start()`` / ``close()``: begin and end any background work (health polling).

Two kinds are meant to exist. :class:`~lpnode.byoc.container.ContainerTarget` is an external container
registered over HTTP (``POST /capability/register``): a fixed URL and optional bearer token, a capacity
counter kept here, and a ``GET /health`` poll. The other kind leases a runner from the orchestrator's
runner pool for a runner-hosted pipeline; its ``lease`` is a thin wrapper::

    @contextlib.asynccontextmanager
    async def lease(self, deadline):
        async with self.pool.lease(self.pipeline, self.model_id, deadline) as runner:
            yield TargetLease(runner.url, dict(runner.headers))

and it is added with ``registry.register(RegisteredCapability(name, description, price, target))``
(the orchestrator's registry is ``Orchestrator.byoc.registry``);
from then on it is advertised (capability 37, constraint = name) and served by ``/process/request``
exactly like a container.

Prices are per second of compute: ``price_per_unit / price_scaling`` in ``currency`` (``wei``, or ``eth``
converted to wei; other currencies need an on-chain price feed and are refused).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol

from lpnode.errors import BadRequestError
from lpnode.logs import log_event
from lpnode.protocol.capabilities import Capability, price_info
from lpnode.protocol.lp_rpc_pb2 import PriceInfo

log = logging.getLogger("lpnode.byoc")
WEI_PER_ETH = 10**18
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class TargetLease:
    """Where one leased job goes: POST to ``url`` (plus the job's sub path) with ``headers`` added."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    default_path: str = ""
    """Path under ``url`` for a job that names no sub path (a runner serves its pipeline at ``/<name>``)."""


class CapabilityTarget(Protocol):
    """Where a BYOC capability's jobs run (see the module docstring)."""

    kind: str
    url: str

    @property
    def capacity(self) -> int: ...

    @property
    def in_use(self) -> int: ...

    @property
    def healthy(self) -> bool: ...

    @property
    def last_error(self) -> str: ...

    def lease(self, deadline: float | None) -> AbstractAsyncContextManager[TargetLease]: ...

    def unreachable(self, problem: str) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Price:
    """A BYOC price as registered: ``per_unit / scaling`` in ``currency``, per second."""

    per_unit: int = 0
    scaling: int = 1
    currency: str = "wei"

    @property
    def wei_per_second(self) -> Fraction:
        value = Fraction(self.per_unit, self.scaling or 1)
        return value * WEI_PER_ETH if self.currency.lower() == "eth" else value

    def check(self) -> Price:
        """This price, or :class:`BadRequestError` saying what is wrong with it."""
        for name, value in (("price_per_unit", self.per_unit), ("price_scaling", self.scaling)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _INT64_MAX:
                raise BadRequestError(f"{name} must be a whole number from 0 to {_INT64_MAX}, got {value!r}")
        if self.currency.lower() not in ("", "wei", "eth"):
            raise BadRequestError(
                f"currency {self.currency!r} needs an on-chain price feed, which this node does not have; "
                "use wei or eth"
            )
        return self


@dataclass
class RegisteredCapability:
    name: str
    description: str
    price: Price
    target: CapabilityTarget

    def available(self) -> int:
        """Jobs it would take now: free capacity while healthy, else 0."""
        return max(0, self.target.capacity - self.target.in_use) if self.target.healthy else 0

    def price_info(self) -> PriceInfo:
        """Its ``capabilities_prices`` entry: capability 37, constraint = name, wei per second (exact fraction)."""
        info = price_info(self.price.wei_per_second, "byoc", self.name)
        info.capability = Capability.BYOC
        info.constraint = self.name
        return info

    def status(self) -> dict[str, Any]:
        """Its ``/status`` entry."""
        return {
            "name": self.name,
            "kind": self.target.kind,
            "url": self.target.url,
            "capacity": self.target.capacity,
            "in_use": self.target.in_use,
            "price_per_unit": self.price.per_unit,
            "price_scaling": self.price.scaling,
            "currency": self.price.currency,
            "healthy": self.target.healthy,
            "last_error": self.target.last_error,
        }


class CapabilityRegistry:
    """BYOC capabilities by name. Registering a name again replaces it (jobs already running finish)."""

    def __init__(self) -> None:
        self._capabilities: dict[str, RegisteredCapability] = {}
        self._closed = False

    async def register(self, capability: RegisteredCapability) -> None:
        """Add or replace ``capability`` and start its target (e.g. its first health check)."""
        old = self._capabilities.get(capability.name)
        self._capabilities[capability.name] = capability
        if old is not None and old.target is not capability.target:
            await old.target.close()
        await capability.target.start()
        log_event(
            log, "capability registered", name=capability.name, kind=capability.target.kind,
            url=capability.target.url, capacity=capability.target.capacity, healthy=capability.target.healthy,
        )  # fmt: skip

    async def unregister(self, name: str) -> bool:
        """Remove ``name``; False if it was not registered."""
        capability = self._capabilities.pop(name, None)
        if capability is None:
            return False
        await capability.target.close()
        log_event(log, "capability unregistered", name=name)
        return True

    def get(self, name: str) -> RegisteredCapability | None:
        return self._capabilities.get(name)

    def all(self) -> Iterable[RegisteredCapability]:
        return list(self._capabilities.values())

    def advertised(self) -> list[PriceInfo]:
        """``capabilities_prices`` entries of the healthy capabilities, by name."""
        return [c.price_info() for c in sorted(self.all(), key=lambda c: c.name) if c.target.healthy]

    def status(self) -> list[dict[str, Any]]:
        return [c.status() for c in sorted(self.all(), key=lambda c: c.name)]

    async def close(self) -> None:
        for capability in self.all():
            await capability.target.close()
        self._capabilities.clear()
