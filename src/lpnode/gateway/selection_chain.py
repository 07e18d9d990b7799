"""go-livepeer's on-chain selection: a weighted random draw by stake, price and chance
(``ProbabilitySelectionAlgorithm``), behind the :class:`~lpnode.gateway.selection.Selector` interface.

Each eligible orchestrator ``i`` of ``N`` is drawn with probability::

    stake_weight · stake_i / Σ stake  +  price_weight · e^(−price_i / exp_factor) / Σ e^(−price / exp_factor)
        +  random_weight / N

with go-livepeer's flags and defaults: ``-selectStakeWeight`` 0.7, ``-selectPriceWeight`` 0, ``-selectRandFreq`` 0.3
(the three sum to 1) and ``-selectPriceExpFactor`` 100; ``price_i`` is wei per unit. As in go, a stake term whose
sum is 0 counts 1 for everyone, and so does a price term whose exponentials all underflow to 0; the
probabilities are then divided by their sum (go draws against the raw sums, which differ only in those two cases).
Stakes are the chain's ``transcoderTotalStake`` (:mod:`lpnode.gateway.chain_directory`); an orchestrator the chain
does not list has stake 0.

Price caps (``-maxPricePerUnit``, ``-maxPricePerCapability``) filter the offers before they reach any selector,
as go's filter does before its draw (and never lifted: lpnode has no ``-ignoreMaxPriceIfNeeded``).

How latency enters, as in go-livepeer's AI session pools: an orchestrator already running a job of this gateway
for the same model is not drawn while an idle one is left (go keeps in-use sessions out of the draw), so a slow
orchestrator, busy longer, gets fewer of a busy gateway's jobs; orchestrators that stop answering are suspended
by the directory and drop out. Warm offers come before cold ones (go tries its warm pool first). The order
returned is one draw after another without replacement, each over those left, as go draws again after a try fails.

The draws use the ``rng`` given (seed it for reproducible orders).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

from lpnode.gateway.directory import Offer
from lpnode.gateway.selection import Stats
from lpnode.gateway.settings import STAKE_SELECTOR, SelectionWeights


class StakeSelector:
    """``stakes(url)``: the stake of the orchestrator at ``url`` (None or 0: none known)."""

    name = STAKE_SELECTOR

    def __init__(
        self,
        stakes: Callable[[str], int | None],
        weights: SelectionWeights | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.stakes = stakes
        self.weights = weights or SelectionWeights()
        self._rng = rng or random.Random()

    def probabilities(self, offers: Sequence[Offer]) -> list[float]:
        """go-livepeer's probability of drawing each offer (they sum to 1; empty for no offer)."""
        if not offers:
            return []
        w = self.weights
        stakes = [max(0, self.stakes(o.url) or 0) for o in offers]
        prices = [_price_term(o, w.price_exp_factor) for o in offers]
        stake_sum, price_sum = sum(stakes), sum(prices)
        n = len(offers)
        raw = [
            w.price * (p / price_sum if price_sum else 1.0)
            + w.stake * (s / stake_sum if stake_sum else 1.0)
            + w.random / n
            for s, p in zip(stakes, prices, strict=True)
        ]
        total = sum(raw)
        return [r / total for r in raw] if total > 0 else [1.0 / n] * n

    def draw(self, offers: Sequence[Offer]) -> Offer:
        """One weighted draw among ``offers`` (not empty)."""
        chances = self.probabilities(offers)
        point = self._rng.random()
        running = 0.0
        for offer, chance in zip(offers, chances, strict=True):
            running += chance
            if point < running:
                return offer
        return offers[-1]  # the sum fell short of the point by a rounding error

    def order(self, offers: Sequence[Offer], stats: Stats) -> list[Offer]:
        ordered: list[Offer] = []
        for warm in (True, False):
            for busy in (False, True):
                group = [o for o in offers if o.warm == warm and (stats.of(o).in_flight > 0) == busy]
                while group:
                    chosen = self.draw(group)
                    ordered.append(chosen)
                    group.remove(chosen)
        return ordered


def _price_term(offer: Offer, exp_factor: float) -> float:
    # No advertised price counts as free; go's discovery drops negative prices before they get here.
    price = max(0.0, float(offer.price)) if offer.price is not None else 0.0
    return math.exp(-price / exp_factor)
