"""The gateway's choices: which offers price caps allow, the order selectors put them in, the flags read
with go-livepeer's spellings, billing units, and the headers it sends (checked by the orchestrator's own
credential check)."""

from __future__ import annotations

import base64
import random
from fractions import Fraction

import pytest

from lpnode.cli import build_parser
from lpnode.errors import BadRequestError, ConfigError
from lpnode.gateway.command import parse_capability_prices, settings_from_args
from lpnode.gateway.directory import Offer, normalize_address
from lpnode.gateway.selection import GoLivepeerSelector, LatencySelector, Stats
from lpnode.gateway.settings import OVERALL, PriceCaps, parse_price, parse_price_currency
from lpnode.orchestrator.credentials import check_credentials
from lpnode.pipelines import PIPELINES
from lpnode.protocol.auth_token import AuthTokens
from lpnode.protocol.capabilities import ModelOffer, build_capabilities
from lpnode.protocol.job_hop import encode_segment as segment_header
from lpnode.schemas.images import TextToImageParams


def offer(url: str, *, warm: bool = True, price: int | None = None, capacity: int = 4) -> Offer:
    price_fraction = None if price is None else Fraction(price)
    return Offer(url, "text-to-image", "m", warm, capacity, 0, price_fraction, url)


def test_latency_selector_prefers_warm_then_fast_and_spreads_by_in_flight() -> None:
    fast, slow, cold = offer("https://fast"), offer("https://slow"), offer("https://cold", warm=False)
    stats = Stats()
    for o, seconds in ((fast, 0.1), (slow, 0.3), (cold, 0.01)):
        stats.started(o)
        stats.finished(o, seconds)
    selector = LatencySelector(random.Random(0))
    assert [o.url for o in selector.order([cold, slow, fast], stats)] == [
        "https://fast",
        "https://slow",
        "https://cold",
    ]
    for _ in range(3):
        stats.started(fast)  # fast now has 3 jobs in flight: 0.1 × 4 > 0.3 × 1
    assert selector.order([fast, slow], stats)[0].url == "https://slow"
    assert GoLivepeerSelector().order([fast, slow], stats)[0].url == "https://fast", "go-livepeer ignores load"


def test_an_orchestrator_at_its_advertised_capacity_goes_last() -> None:
    small, big = offer("https://small", capacity=1), offer("https://big")
    stats = Stats()
    stats.started(small)
    assert [o.url for o in LatencySelector().order([small, big], stats)][-1] == "https://small"


def test_unmeasured_orchestrators_are_tried_first() -> None:
    known, new = offer("https://known"), offer("https://new")
    stats = Stats()
    stats.started(known)
    stats.finished(known, 0.05)
    assert LatencySelector().order([known, new], stats)[0].url == "https://new"


def test_price_caps_per_model_per_pipeline_and_overall() -> None:
    caps = PriceCaps(Fraction(100), {("text-to-image", "m"): Fraction(10), ("llm", "default"): Fraction(5)})
    assert caps.allows(offer("a", price=10)) and not caps.allows(offer("b", price=11))
    assert caps.allows(offer("c")), "an offer without a price passes"
    assert caps.cap("llm", "any") == 5 and caps.cap("upscale", "x") == 100
    assert PriceCaps().allows(offer("d", price=10**20))


def test_max_price_flags_read_go_livepeers_json() -> None:
    text = (
        '{"capabilities_prices": [{"pipeline": "text-to-image", "model_id": "m", "price_per_unit": 1000,'
        ' "pixels_per_unit": 10}, {"pipeline": "llm", "price_per_unit": 0}, '
        '{"pipeline": "upscale", "price_per_unit": 1, "currency": "eth"}]}'
    )
    caps = parse_capability_prices(text, fallback=Fraction(7))
    assert caps == {("text-to-image", "m"): 100, ("llm", "default"): 7, ("upscale", "default"): 10**18}
    assert parse_price("1000wei") == 1000 and parse_price("0.5eth") == 5 * 10**17
    with pytest.raises(ConfigError, match="not wei, eth or USD"):
        parse_capability_prices('{"capabilities_prices": [{"pipeline": "llm", "currency": "EUR"}]}', None)
    with pytest.raises(ConfigError, match="pipeline must be one of"):
        parse_capability_prices('{"capabilities_prices": [{"pipeline": "nope"}]}', None)


def test_gateway_flags_accept_go_livepeer_spellings() -> None:
    args = build_parser().parse_args(
        ["gateway", "-gateway", "-orchAddr", "o1:8935,http://o2:9000", "-httpAddr=127.0.0.1:9935",
         "-cliAddr", "127.0.0.1:6935", "-maxPricePerUnit", "20wei", "-network", "offchain"]
    )  # fmt: skip
    settings = settings_from_args(args)
    assert settings.orchestrators == ["o1:8935", "http://o2:9000"]
    assert (settings.http_port, settings.cli_port, settings.caps.overall) == (9935, 6935, 20)
    assert [normalize_address(a) for a in settings.orchestrators] == ["https://o1:8935", "http://o2:9000"]
    assert normalize_address("o3") == "https://o3:8935"
    with pytest.raises(ConfigError, match="--orch-addr"):
        settings_from_args(build_parser().parse_args(["gateway"]))


def test_units_follow_go_livepeer() -> None:
    params = TextToImageParams(prompt="x", width=64, height=32, num_images_per_prompt=3)
    assert PIPELINES["text-to-image"].units(params, {}) == 64 * 32 * 3
    with pytest.raises(BadRequestError, match="not a readable image"):
        PIPELINES["upscale"].units(params, {"image": b"junk"})


def test_the_segment_header_passes_the_orchestrators_own_check() -> None:
    tokens = AuthTokens()
    offered = build_capabilities([ModelOffer("text-to-image", "m", warm=True, capacity=1)])
    header = segment_header(tokens.issue(), "text-to-image", "m")
    creds = check_credentials({"livepeer-segment": header, "livepeer-payment": ""}, tokens, lambda: offered)
    assert creds.segment.manifestId == b"27_m"
    other = segment_header(tokens.issue(), "text-to-image", "other-model")
    with pytest.raises(Exception, match="'other-model' is not offered here"):
        check_credentials({"livepeer-segment": other}, tokens, lambda: offered)
    assert base64.b64decode(header)


def test_price_caps_in_usd_follow_the_eth_price_and_need_a_chain() -> None:
    usd: set[tuple[str, str]] = set()
    entry = '{"pipeline": "llm", "price_per_unit": 2, "pixels_per_unit": 1000, "currency": "USD"}'
    text = '{"capabilities_prices": [' + entry + "]}"
    per_model = parse_capability_prices(text, None, usd)
    assert per_model == {("llm", "default"): Fraction(2, 1000)} and usd == {("llm", "default")}
    assert parse_price_currency("0.02USD") == (Fraction(2, 100), True)
    assert parse_price_currency("5eth") == (5 * 10**18, False)
    with pytest.raises(ConfigError, match="USD"):
        parse_price("0.02USD")
    # 2,000 USD per ETH: 1 USD is 5e14 wei; the cap is converted at each use, as the feed moves.
    rate = [Fraction(10**18, 2000)]
    caps = PriceCaps(Fraction(1, 100), per_model, frozenset(usd | {OVERALL}), wei_per_usd=lambda: rate[0])
    assert caps.cap("llm", "any") == Fraction(2, 1000) * 10**18 / 2000
    assert caps.cap("text-to-image", "m") == Fraction(10**16, 2000)
    rate[0] = Fraction(10**18, 4000)
    assert caps.cap("text-to-image", "m") == Fraction(10**16, 4000)
    assert PriceCaps(Fraction(1), usd=frozenset({OVERALL})).cap("llm", "m") is None  # no rate yet: no cap
    args = build_parser().parse_args(["gateway", "-orchAddr", "o1:8935", "-maxPricePerUnit", "0.01USD"])
    with pytest.raises(ConfigError, match="USD need an on-chain price feed"):
        settings_from_args(args)
