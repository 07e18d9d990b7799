"""The conformance kit every selection algorithm passes: each entry of ``lpnode.gateway.selection.SELECTORS``, and
the on-chain ``stake`` selector (built from a stake table, as the gateway builds it from the chain's pool), runs
every test here, so a new algorithm is covered by adding it to ``SELECTORS`` (and stating its claims in ``CLAIMS``
below, which a test insists on).

Every selector: orders exactly the offers it is given (each once, nothing else), changes no measurement, puts
warm before cold, and handles no offer, one offer and ties. Beyond that each selector claims what its docstring
promises: latency ordering (a faster idle orchestrator before a slower one and unmeasured before measured ones, so
none is starved of its first job; or else latency changes nothing), load awareness, capacity awareness, and how
it breaks ties.

In-process and fast: selectors are pure functions of the offers and the measurements.
"""

from __future__ import annotations

import inspect
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import astuple, dataclass
from fractions import Fraction
from typing import Literal

import pytest

from lpnode.gateway.directory import Offer
from lpnode.gateway.selection import SELECTORS, Measure, Selector, Stats
from lpnode.gateway.selection_chain import StakeSelector
from lpnode.gateway.settings import STAKE_SELECTOR


@dataclass(frozen=True)
class Claims:
    """What a selector promises beyond the properties every selector has."""

    latency_ordered: bool
    """Faster idle orchestrators first, unmeasured ones before measured ones; if False, measured latencies change
    nothing (the order depends on the offers and jobs in flight only)."""
    load_aware: bool
    """Jobs in flight push an orchestrator back, so load spreads; if False, jobs in flight change nothing."""
    capacity_aware: bool
    """An orchestrator with as many jobs in flight as its advertised capacity goes last."""
    ties: Literal["stable", "seeded"]
    """Equal offers keep their discovery order (and every order is reproducible), or are shuffled by a
    random generator the constructor takes as ``rng`` (reproducible for the same seed)."""


CLAIMS = {
    "latency": Claims(latency_ordered=True, load_aware=True, capacity_aware=True, ties="seeded"),
    "go-livepeer": Claims(latency_ordered=True, load_aware=False, capacity_aware=False, ties="stable"),
    STAKE_SELECTOR: Claims(latency_ordered=False, load_aware=True, capacity_aware=False, ties="seeded"),
}


def stake_of(url: str) -> int:
    """The kit's stake table: a stake from the URL's length, so equally named offers tie, and none is 0."""
    return 1000 * len(url)


def _stake_selector(rng: random.Random) -> Selector:
    return StakeSelector(stake_of, rng=rng)


FACTORIES: dict[str, Callable[..., Selector]] = {**SELECTORS, STAKE_SELECTOR: _stake_selector}
NAMES = sorted(FACTORIES)
CASES = 300  # random situations per property


def make(name: str, seed: int = 0) -> Selector:
    """The selector ``name`` as the gateway builds it, seeded when it takes a random generator."""
    factory = FACTORIES[name]
    if "rng" in inspect.signature(factory).parameters:
        return factory(rng=random.Random(seed))
    return factory()


def offer(url: str, *, warm: bool = True, capacity: int = 4) -> Offer:
    return Offer(url, "text-to-image", "m", warm, capacity, 0, Fraction(1), url)


def measured(stats: Stats, o: Offer, seconds: float | None, in_flight: int = 0) -> None:
    """Record one finished job of ``seconds`` (None: unmeasured), then ``in_flight`` running ones."""
    if seconds is not None:
        stats.started(o)
        stats.finished(o, seconds)
    for _ in range(in_flight):
        stats.started(o)


def situation(rng: random.Random, *, busy: bool = True) -> tuple[list[Offer], Stats]:
    """1 to 8 offers, warm or cold, with capacity 0 (not advertised) to 4, measured or not, and (when
    ``busy``) up to 5 jobs in flight each."""
    offers = [
        offer(f"https://o{i}.example", warm=rng.random() < 0.6, capacity=rng.randint(0, 4))
        for i in range(rng.randint(1, 8))
    ]
    stats = Stats()
    for o in offers:
        seconds = None if rng.random() < 0.3 else round(rng.uniform(0.01, 1.0), 3)
        measured(stats, o, seconds, in_flight=rng.randint(0, 5) if busy else 0)
    return offers, stats


def measurements(stats: Stats) -> dict[tuple[str, str, str], tuple[object, ...]]:
    """Every measurement that holds something (a selector may create empty ones as it looks)."""
    return {key: astuple(m) for key, m in stats.measures.items() if m != Measure()}


def urls(offers: list[Offer]) -> list[str]:
    return [o.url for o in offers]


def test_every_selector_is_registered_under_its_own_name() -> None:
    for name in NAMES:
        assert make(name).name == name  # the --selection flag's spelling
    for name, factory in SELECTORS.items():
        assert factory.name == name


def test_every_selector_states_its_claims_in_this_kit() -> None:
    assert set(CLAIMS) == set(FACTORIES), "add each new selector's claims to CLAIMS in this file"


# --- what every selector does ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_orders_every_offer_it_is_given_and_only_those(name: str) -> None:
    rng = random.Random(1)
    selector = make(name)
    for _ in range(CASES):
        offers, stats = situation(rng)
        given, before = list(offers), measurements(stats)
        ordered = selector.order(offers, stats)
        assert isinstance(ordered, list)
        assert Counter(ordered) == Counter(given)
        assert offers == given, "the caller's sequence is left as it was"
        assert measurements(stats) == before, "ordering changes no measurement"


@pytest.mark.parametrize("name", NAMES)
def test_no_offer_and_a_single_offer(name: str) -> None:
    selector = make(name)
    assert selector.order([], Stats()) == []
    for warm in (True, False):
        for seconds, in_flight in ((None, 0), (0.2, 0), (0.2, 4), (None, 4)):
            lone = offer("https://lone.example", warm=warm)
            stats = Stats()
            measured(stats, lone, seconds, in_flight)
            assert selector.order([lone], stats) == [lone]


@pytest.mark.parametrize("name", NAMES)
def test_warm_offers_come_before_cold_ones(name: str) -> None:
    rng = random.Random(2)
    selector = make(name)
    for _ in range(CASES):
        offers, stats = situation(rng, busy=False)
        warmth = [o.warm for o in selector.order(offers, stats)]
        assert warmth == sorted(warmth, reverse=True), "a cold start is slow: warm offers go first"


# --- what each selector claims -----------------------------------------------------------------------------

LATENCY_ORDERED = [n for n in NAMES if CLAIMS[n].latency_ordered]


@pytest.mark.parametrize("name", LATENCY_ORDERED)
def test_a_faster_idle_orchestrator_comes_first(name: str) -> None:
    fast, slow = offer("https://fast.example"), offer("https://slow.example")
    stats = Stats()
    measured(stats, fast, 0.1)
    measured(stats, slow, 0.3)
    selector = make(name)
    for given in ([fast, slow], [slow, fast]):
        assert urls(selector.order(given, stats)) == ["https://fast.example", "https://slow.example"]


@pytest.mark.parametrize("name", [n for n in NAMES if not CLAIMS[n].latency_ordered])
def test_latency_changes_nothing_when_not_claimed(name: str) -> None:
    rng = random.Random(8)
    with_latency, without = make(name, seed=9), make(name, seed=9)
    for _ in range(CASES):
        offers, stats = situation(rng)
        unmeasured = Stats()
        for o in offers:  # the same jobs in flight, no latency measured
            for _ in range(stats.of(o).in_flight):
                unmeasured.started(o)
        assert with_latency.order(offers, stats) == without.order(offers, unmeasured)


@pytest.mark.parametrize("name", LATENCY_ORDERED)
def test_unmeasured_orchestrators_come_before_measured_ones(name: str) -> None:
    rng = random.Random(3)
    selector = make(name)
    for _ in range(CASES):
        offers = [offer(f"https://o{i}.example") for i in range(rng.randint(2, 6))]
        stats = Stats()
        unmeasured = set(rng.sample(urls(offers), rng.randint(1, len(offers) - 1)))
        for o in offers:
            measured(stats, o, None if o.url in unmeasured else rng.uniform(0.001, 1.0))
        ordered = urls(selector.order(offers, stats))
        assert set(ordered[: len(unmeasured)]) == unmeasured


@pytest.mark.parametrize("name", LATENCY_ORDERED)
def test_every_orchestrator_gets_a_job_before_any_gets_a_second(name: str) -> None:
    """No orchestrator is starved: jobs sent one at a time to the first offer reach each one in turn, however
    much faster the others turn out to be."""
    latencies = {"https://a.example": 0.01, "https://b.example": 0.05, "https://c.example": 2.0}
    offers = [offer(url) for url in reversed(latencies)]
    stats, selector, chosen = Stats(), make(name), []
    for _ in offers:
        first = selector.order(offers, stats)[0]
        stats.started(first)
        stats.finished(first, latencies[first.url])
        chosen.append(first.url)
    assert sorted(chosen) == sorted(latencies)


@pytest.mark.parametrize("name", NAMES)
def test_ties_follow_the_claim(name: str) -> None:
    tied = [offer(f"https://t{i}.example") for i in range(4)]
    stats = Stats()
    for o in tied:
        measured(stats, o, 0.2)
    if CLAIMS[name].ties == "stable":
        selector = make(name)
        for given in (tied, tied[::-1], tied[1:] + tied[:1]):
            assert selector.order(given, stats) == given, "ties keep discovery order"
    else:
        selector = make(name, seed=4)
        firsts = Counter(selector.order(tied, stats)[0].url for _ in range(200))
        assert set(firsts) == set(urls(tied)), f"ties are shuffled, so equal orchestrators share the work: {firsts}"


@pytest.mark.parametrize("name", NAMES)
def test_orders_are_reproducible_as_claimed(name: str) -> None:
    """``stable``: the same situation always gives the same order. ``seeded``: two selectors made with the
    same seed give the same orders, situation after situation."""
    rng = random.Random(5)
    situations = [situation(rng) for _ in range(CASES)]
    stable = CLAIMS[name].ties == "stable"
    one, other = make(name, seed=6), make(name, seed=6)
    for offers, stats in situations:
        ordered = one.order(offers, stats)
        assert other.order(offers, stats) == ordered
        if stable:
            assert one.order(offers, stats) == ordered


@pytest.mark.parametrize("name", NAMES)
def test_jobs_in_flight_count_as_claimed(name: str) -> None:
    fast, slow = offer("https://fast.example"), offer("https://slow.example")
    stats = Stats()
    measured(stats, fast, 0.1, in_flight=3)  # 0.1 s with 3 jobs waiting ahead of the next one
    measured(stats, slow, 0.3)
    first = make(name).order([fast, slow], stats)[0]
    if CLAIMS[name].load_aware:
        assert first == slow, "a loaded orchestrator yields to a slower idle one"
        # Concurrent jobs on equal orchestrators spread one per orchestrator.
        equal = [offer(f"https://e{i}.example", capacity=0) for i in range(3)]
        spread, selector = Stats(), make(name)
        for o in equal:
            measured(spread, o, 0.2)
        for _ in equal:
            spread.started(selector.order(equal, spread)[0])
        assert [spread.of(o).in_flight for o in equal] == [1, 1, 1]
    else:
        assert first == fast, "jobs in flight change nothing"


@pytest.mark.parametrize("name", [n for n in NAMES if CLAIMS[n].capacity_aware])
def test_an_orchestrator_at_its_advertised_capacity_goes_last(name: str) -> None:
    full = offer("https://full.example", capacity=2)
    others = [offer("https://slow.example"), offer("https://cold.example", warm=False)]
    stats = Stats()
    measured(stats, full, 0.01, in_flight=2)
    measured(stats, others[0], 5.0)
    for given in ([full, *others], [*others, full]):
        assert make(name).order(given, stats)[-1] == full
