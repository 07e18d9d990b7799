"""Choosing the orchestrator for a job (after price caps, :class:`~lpnode.gateway.settings.PriceCaps`).

Algorithms implement :class:`Selector` (order the eligible offers, best first), so they can be swapped and
compared. :class:`LatencySelector` is the default: warm before cold, then the lowest measured latency
(an exponentially weighted mean per orchestrator and model) scaled by how many jobs the orchestrator has
in flight, so load spreads instead of piling onto the fastest one; an orchestrator at its advertised
capacity goes last. Unmeasured orchestrators are tried first, so each gets measured. :class:`GoLivepeerSelector`
is go-livepeer's off-chain rule: lowest latency score, discovery order, no in-flight awareness.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from lpnode.gateway.directory import Offer

EWMA_WEIGHT = 0.3


@dataclass
class Measure:
    latency: float | None = None  # seconds, weighted mean of successes
    in_flight: int = 0
    successes: int = 0
    failures: int = 0


@dataclass
class Stats:
    """Measurements per (orchestrator url, pipeline, model)."""

    measures: dict[tuple[str, str, str], Measure] = field(default_factory=dict)

    def of(self, offer: Offer) -> Measure:
        return self.measures.setdefault((offer.url, offer.pipeline, offer.model_id), Measure())

    def started(self, offer: Offer) -> None:
        self.of(offer).in_flight += 1

    def finished(self, offer: Offer, seconds: float | None) -> None:
        """A job ended: ``seconds`` when it succeeded, ``None`` when it failed."""
        measure = self.of(offer)
        measure.in_flight = max(0, measure.in_flight - 1)
        if seconds is None:
            measure.failures += 1
            return
        measure.successes += 1
        measure.latency = (
            seconds if measure.latency is None else (1 - EWMA_WEIGHT) * measure.latency + EWMA_WEIGHT * seconds
        )

    def in_flight(self, url: str) -> int:
        return sum(m.in_flight for (u, _, _), m in self.measures.items() if u == url)


class Selector(Protocol):
    name: str

    def order(self, offers: Sequence[Offer], stats: Stats) -> list[Offer]: ...


class LatencySelector:
    name = "latency"

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def order(self, offers: Sequence[Offer], stats: Stats) -> list[Offer]:
        def key(offer: Offer) -> tuple[bool, bool, float, float]:
            measure = stats.of(offer)
            busy = stats.in_flight(offer.url)
            full = offer.capacity > 0 and measure.in_flight >= offer.capacity
            score = 0.0 if measure.latency is None else measure.latency * (1 + busy)
            return (full, not offer.warm, score, self._rng.random())

        return sorted(offers, key=key)


class GoLivepeerSelector:
    name = "go-livepeer"

    def order(self, offers: Sequence[Offer], stats: Stats) -> list[Offer]:
        def key(offer: Offer) -> tuple[bool, float]:
            latency = stats.of(offer).latency
            return (not offer.warm, 0.0 if latency is None else latency)

        return sorted(offers, key=key)  # stable: ties keep discovery order


SELECTORS: Mapping[str, type[LatencySelector] | type[GoLivepeerSelector]] = {
    LatencySelector.name: LatencySelector,
    GoLivepeerSelector.name: GoLivepeerSelector,
}
