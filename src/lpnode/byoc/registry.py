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

Prices are per second of compute: ``price_per_unit / price_scaling`` in ``currency``: ``wei``, ``eth``
(converted to wei exactly), or another currency such as ``USD``, converted at each use with the ETH price
of the on-chain price feed (``-priceFeedAddr``). Off-chain there is no feed: :meth:`Price.check` refuses such
a price with one line, and a custom pipeline priced so (aiModels.json) is not advertised, as aiModels.json
prices in such a currency are not. The orchestrator gives the registry its converter on chain
(:attr:`CapabilityRegistry.wei_per`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Protocol

from lpnode.errors import BadRequestError, UnavailableError
from lpnode.logs import log_event
from lpnode.protocol.capabilities import Capability, price_info
from lpnode.protocol.lp_rpc_pb2 import PriceInfo

log = logging.getLogger("lpnode.byoc")
WEI_PER_ETH = 10**18
_INT64_MAX = 2**63 - 1
_CURRENCY = re.compile(r"[A-Za-z]{2,10}")
WeiPer = Callable[[str], Fraction]
"""Wei per one unit of a currency (``"USD"``), from the price feed; raises when it has no rate for it."""


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
    """A BYOC price as registered: ``per_unit / scaling`` in ``currency``, per second. A price in another
    currency than wei or eth carries the converter it is turned into wei with (``wei_per``; none off-chain)."""

    per_unit: int = 0
    scaling: int = 1
    currency: str = "wei"
    wei_per: WeiPer | None = field(default=None, compare=False, repr=False)

    @property
    def amount(self) -> Fraction:
        """``per_unit / scaling`` in ``currency``."""
        return Fraction(self.per_unit, self.scaling or 1)

    @property
    def foreign(self) -> bool:
        """Priced in another currency than wei or eth (needs a price feed)."""
        return self.currency.lower() not in ("", "wei", "eth")

    def in_wei(self) -> Fraction | None:
        """Wei per second; ``None`` when the currency cannot be converted now (no feed, or no rate yet)."""
        if not self.foreign:
            return self.amount * WEI_PER_ETH if self.currency.lower() == "eth" else self.amount
        if self.wei_per is None:
            return None
        try:
            return self.amount * self.wei_per(self.currency)
        except Exception:  # the feed's own error; the caller decides what an unpriced capability means
            return None

    @property
    def wei_per_second(self) -> Fraction:
        """Wei per second, converted at the feed's latest rate for a foreign currency. A price that cannot be
        converted raises :class:`UnavailableError` (503): a job is refused rather than served for free."""
        wei = self.in_wei()
        if wei is None:
            raise UnavailableError(
                f"this capability is priced in {self.currency}, and this node has no {self.currency} price now "
                "(-priceFeedAddr)"
            )
        return wei

    def check(self, wei_per: WeiPer | None = None) -> Price:
        """This price (bound to ``wei_per`` when its currency needs it), or :class:`BadRequestError` saying what
        is wrong with it: numbers out of range, a currency that is no currency code, or a foreign currency
        without a converter (off-chain) or without a rate (no ``-priceFeedAddr`` for it)."""
        for name, value in (("price_per_unit", self.per_unit), ("price_scaling", self.scaling)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _INT64_MAX:
                raise BadRequestError(f"{name} must be a whole number from 0 to {_INT64_MAX}, got {value!r}")
        if not self.foreign:
            return self
        if not _CURRENCY.fullmatch(self.currency):
            raise BadRequestError(f"currency must be a currency code such as wei, eth or USD, got {self.currency!r}")
        if wei_per is None:
            raise BadRequestError(
                f"currency {self.currency!r} needs an on-chain price feed (-network with -priceFeedAddr), which "
                "this node does not have; use wei or eth"
            )
        try:
            wei_per(self.currency)
        except Exception as exc:  # the converter says why in one line (no feed for it, no rate yet)
            raise BadRequestError(f"currency {self.currency!r} cannot be converted to wei: {exc}") from None
        return replace(self, wei_per=wei_per)


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
        """Its ``capabilities_prices`` entry: capability 37, constraint = name, wei per second (exact fraction;
        0 when a foreign currency cannot be converted now, and then :meth:`CapabilityRegistry.advertised`
        leaves it out)."""
        info = price_info(self.price.in_wei() or Fraction(0), "byoc", self.name)
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

    def __init__(self, wei_per: WeiPer | None = None) -> None:
        self._capabilities: dict[str, RegisteredCapability] = {}
        self._closed = False
        self.wei_per = wei_per
        """On chain with a price feed: wei per unit of a currency. Prices in other currencies than wei or eth
        are converted with it (checked at registration with ``Price.check(registry.wei_per)``)."""

    async def register(self, capability: RegisteredCapability) -> None:
        """Add or replace ``capability`` and start its target (e.g. its first health check). A price in a
        foreign currency is bound to :attr:`wei_per`; one that cannot be converted is registered but not
        advertised, with a warning (a custom pipeline of aiModels.json priced in USD off-chain)."""
        price = capability.price
        if price.foreign and price.wei_per is None:
            capability.price = price = replace(price, wei_per=self.wei_per)
        if price.foreign and price.in_wei() is None:
            log_event(
                log, "capability priced in a currency this node cannot convert: not advertised", logging.WARNING,
                name=capability.name, currency=price.currency, fix="run on chain with -priceFeedAddr, or price it "
                "in wei or eth",
            )  # fmt: skip
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
        """``capabilities_prices`` entries of the healthy capabilities whose price is known in wei, by name."""
        return [
            c.price_info()
            for c in sorted(self.all(), key=lambda c: c.name)
            if c.target.healthy and c.price.in_wei() is not None
        ]

    def status(self) -> list[dict[str, Any]]:
        return [c.status() for c in sorted(self.all(), key=lambda c: c.name)]

    async def close(self) -> None:
        for capability in self.all():
            await capability.target.close()
        self._capabilities.clear()
