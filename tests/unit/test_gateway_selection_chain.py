"""The gateway's stake selection (go-livepeer's on-chain ``ProbabilitySelectionAlgorithm``): over many seeded
draws, each orchestrator's share of first picks is go's probability, written out here from go's formula
independently of the code under test; the flags are read and checked as go checks them; the chain directory
lists the pool's active orchestrators at their service URIs.

In-process: stakes come from a table (no chain); the pool reads are :class:`PoolRead` values.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter
from fractions import Fraction

import pytest

from lpnode.cli import build_parser
from lpnode.errors import ConfigError
from lpnode.gateway.chain_directory import ChainDirectory
from lpnode.gateway.command import settings_from_args
from lpnode.gateway.directory import Offer
from lpnode.gateway.selection import Stats
from lpnode.gateway.selection_chain import StakeSelector
from lpnode.gateway.settings import GatewaySettings, SelectionWeights
from lpnode.go_flags import FLAGS, GATEWAY, role_args
from lpnode.payments.transcoder_pool import PoolMember, PoolRead

DRAWS = 20_000
LPT = 10**18
CHAIN = ["-network", "devchain", "-ethUrl", "http://127.0.0.1:1", "-ethController", "0x" + "11" * 20]


def offer(url: str, price: int | None = 1000, *, warm: bool = True) -> Offer:
    return Offer(url, "text-to-image", "m", warm, 4, 0, None if price is None else Fraction(price), url)


def go_probabilities(
    stakes: list[int], prices: list[float], stake_w: float, price_w: float, rand_w: float, exp_factor: float
) -> list[float]:
    """go-livepeer's calculateProbabilities, term by term."""
    norm = [math.exp(-p / exp_factor) for p in prices]
    stake_sum, price_sum, n = sum(stakes), sum(norm), len(stakes)
    return [
        price_w * (norm[i] / price_sum if price_sum else 1.0)
        + stake_w * (stakes[i] / stake_sum if stake_sum else 1.0)
        + rand_w / n
        for i in range(n)
    ]


def shares(selector: StakeSelector, offers: list[Offer]) -> dict[str, float]:
    firsts = Counter(selector.order(offers, Stats())[0].url for _ in range(DRAWS))
    return {o.url: firsts[o.url] / DRAWS for o in offers}


@pytest.mark.parametrize(
    ("weights", "stakes", "prices"),
    [
        (SelectionWeights(), [3 * LPT, LPT], [1000, 1000]),  # go's defaults: 0.7 stake, 0.3 chance
        (SelectionWeights(), [5 * LPT, 3 * LPT, 2 * LPT], [10, 20, 30]),
        (SelectionWeights(stake=0.2, price=0.6, random=0.2, price_exp_factor=100), [LPT, LPT, 8 * LPT], [10, 100, 300]),
        (SelectionWeights(stake=0.0, price=1.0, random=0.0, price_exp_factor=50), [LPT, 9 * LPT], [0, 50]),
    ],
)
def test_first_picks_follow_go_livepeers_formula(
    weights: SelectionWeights, stakes: list[int], prices: list[int]
) -> None:
    offers = [offer(f"https://o{i}.example:8935", p) for i, p in enumerate(prices)]
    table = {o.url: s for o, s in zip(offers, stakes, strict=True)}
    selector = StakeSelector(table.get, weights, rng=random.Random(7))
    expected = go_probabilities(
        stakes, [float(p) for p in prices], weights.stake, weights.price, weights.random, weights.price_exp_factor
    )
    assert sum(expected) == pytest.approx(1.0)
    assert selector.probabilities(offers) == pytest.approx(expected)
    seen = shares(selector, offers)
    for o, want in zip(offers, expected, strict=True):
        assert seen[o.url] == pytest.approx(want, abs=0.015), (seen, expected)


def test_the_same_seed_draws_the_same_orders() -> None:
    offers = [offer(f"https://o{i}.example:8935") for i in range(5)]
    table = {o.url: (i + 1) * LPT for i, o in enumerate(offers)}
    one, other = StakeSelector(table.get, rng=random.Random(3)), StakeSelector(table.get, rng=random.Random(3))
    for _ in range(200):
        assert one.order(offers, Stats()) == other.order(offers, Stats())


def test_no_stake_known_is_an_equal_chance() -> None:
    """Orchestrators the chain does not list (e.g. from -orchAddr) have no stake: go counts the stake term 1 for
    everyone, which leaves an equal chance."""
    offers = [offer(f"https://o{i}.example:8935") for i in range(4)]
    seen = shares(StakeSelector(lambda url: None, rng=random.Random(1)), offers)
    assert all(share == pytest.approx(0.25, abs=0.015) for share in seen.values()), seen


def test_orders_every_offer_once_warm_first_then_idle_before_busy() -> None:
    warm_busy, warm_idle, cold_idle = offer("https://wb:1"), offer("https://wi:1"), offer("https://ci:1", warm=False)
    stats = Stats()
    stats.started(warm_busy)  # this gateway has a job in flight there: go keeps the session out of the draw
    table = {warm_busy.url: 100 * LPT, warm_idle.url: LPT, cold_idle.url: 1000 * LPT}
    selector = StakeSelector(table.get, rng=random.Random(2))
    for _ in range(50):
        assert selector.order([cold_idle, warm_busy, warm_idle], stats) == [warm_idle, warm_busy, cold_idle]
    assert selector.order([], stats) == []


def test_retries_draw_again_among_those_left() -> None:
    """The second place is a draw over the rest, as go draws again after a failed try."""
    offers = [offer(f"https://o{i}.example:8935") for i in range(3)]
    table = {offers[0].url: 8 * LPT, offers[1].url: LPT, offers[2].url: LPT}
    selector = StakeSelector(table.get, rng=random.Random(5))
    seconds: Counter[str] = Counter()
    for _ in range(DRAWS):
        first, second, _ = selector.order(offers, Stats())
        if first == offers[0]:
            seconds[second.url] += 1
    total = sum(seconds.values())
    assert seconds[offers[1].url] / total == pytest.approx(0.5, abs=0.03)


def gateway_settings(*flags: str) -> GatewaySettings:
    args = build_parser().parse_args(["gateway", *flags])
    return settings_from_args(args)


def test_the_selection_flags_are_gos_and_checked_as_go_checks_them() -> None:
    for name in ("selectStakeWeight", "selectPriceWeight", "selectRandFreq", "selectPriceExpFactor"):
        assert GATEWAY in FLAGS[name].roles, name
    rewritten, warnings = role_args(
        GATEWAY, ["-selectStakeWeight", "0.5", "-selectRandFreq=0.2", "-selectPriceWeight", "0.3"]
    )
    assert warnings == []
    settings = gateway_settings(*CHAIN, *rewritten, "-selectPriceExpFactor", "20")
    assert settings.weights == SelectionWeights(stake=0.5, price=0.3, random=0.2, price_exp_factor=20)
    assert settings.selector == "stake" and settings.chain_discovery
    with pytest.raises(ConfigError, match="must sum to 1"):
        gateway_settings(*CHAIN, "-selectStakeWeight", "0.9")
    with pytest.raises(ConfigError, match="-selectPriceExpFactor must be above 0"):
        gateway_settings(*CHAIN, "-selectPriceExpFactor", "0")


def test_orchestrators_come_from_the_chain_only_on_chain_and_without_orch_addr() -> None:
    on_chain = gateway_settings(*CHAIN, "-orchAddr", "127.0.0.1:8935")
    assert not on_chain.chain_discovery and on_chain.selector == "latency"
    with pytest.raises(ConfigError, match="on chain, with -network, they come from the chain"):
        gateway_settings()
    with pytest.raises(ConfigError, match="--selection stake weighs orchestrators by their stake on chain"):
        gateway_settings("-orchAddr", "127.0.0.1:8935", "--selection", "stake")


class _Pool:
    """Pool reads served from a list, in turn (the chain's answers)."""

    def __init__(self, *reads: PoolRead) -> None:
        self.reads = list(reads)

    async def read(self) -> PoolRead:
        return self.reads.pop(0) if len(self.reads) > 1 else self.reads[0]

    def close(self) -> None:
        pass


def member(n: int, stake: int, uri: str, *, active: bool = True) -> PoolMember:
    return PoolMember(bytes([n]) * 20, stake, active, uri)


def test_the_chain_directory_lists_active_orchestrators_at_their_service_uris() -> None:
    first = PoolRead(
        5,
        (
            member(1, 3 * LPT, "https://127.0.0.1:9001"),
            member(2, LPT, "127.0.0.1:9002"),  # go prepends https:// where no scheme is given
            member(3, 2 * LPT, "https://127.0.0.1:9003", active=False),  # registered, not in this round's set
            member(4, LPT, ""),  # active without a service URI: nowhere to reach it
        ),
    )
    moved = PoolRead(6, (member(1, 3 * LPT, "https://127.0.0.1:9101"),))
    chain = ChainDirectory(_Pool(first, moved))  # type: ignore[arg-type]

    async def run() -> tuple[object, int | None, object]:
        listed = await chain.discover()
        stake = chain.stake("https://127.0.0.1:9001")
        chain.read_at = 0.0  # the next discover reads again
        return listed, stake, await chain.discover()

    listed, stake, after = asyncio.run(run())
    assert listed == ("https://127.0.0.1:9001", "https://127.0.0.1:9002")
    assert stake == 3 * LPT
    assert after == ("https://127.0.0.1:9101",), "a new service URI is followed; a member gone is dropped"
    assert chain.stake("https://127.0.0.1:9001") is None
