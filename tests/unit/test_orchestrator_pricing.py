"""What an orchestrator on chain asks a gateway to pay: go-livepeer's ``PriceInfoForCaps`` (the sum of the
requested models' prices), cut to 3 decimals as ``PriceToFixed`` does, and prices in USD converted through a
price feed (off-chain they are not advertised at all)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from lpnode.orchestrator.ai_models import AIModelConfig
from lpnode.orchestrator.info import PriceBook, fixed_price, requested_price
from lpnode.protocol.capabilities import Capability, capability_bitstring
from lpnode.protocol.lp_rpc_pb2 import Capabilities

GATEWAY = "0x" + "ab" * 20


def config(pipeline: str, model_id: str, price: int, currency: str = "", gateway: str = "default") -> AIModelConfig:
    return AIModelConfig(
        pipeline=pipeline, model_id=model_id, price_per_unit=Fraction(price), currency=currency, gateway=gateway
    )


def request_for(*wanted: tuple[Capability, str], capacity: bool = True) -> Capabilities:
    caps = Capabilities(bitstring=capability_bitstring([int(c) for c, _ in wanted]))
    for cap, model in wanted:
        if capacity:
            caps.capacities[int(cap)] = 1
        caps.constraints.PerCapability[int(cap)].models[model].warm = False
    return caps


def test_the_price_is_the_sum_of_the_requested_models_for_that_gateway() -> None:
    book = PriceBook(
        [
            config("text-to-image", "a", 10),
            config("text-to-image", "b", 7),
            config("llm", "c", 3),
            config("llm", "c", 2, gateway=GATEWAY),
        ]
    )
    wanted = request_for((Capability.TEXT_TO_IMAGE, "a"), (Capability.LLM, "c"))
    assert requested_price(wanted, book) == 13
    assert requested_price(wanted, book, GATEWAY) == 12
    # A capability without a capacity entry is not priced (go reads the request's capacities map).
    assert requested_price(request_for((Capability.TEXT_TO_IMAGE, "a"), capacity=False), book) == 0
    assert requested_price(request_for((Capability.UPSCALE, "unknown")), book) == 0


@pytest.mark.parametrize(
    ("price", "expected"),
    [
        (Fraction(1010), Fraction(1010)),
        (Fraction(4768371, 1000) * Fraction(101, 100), Fraction(4816054, 1000)),  # 4816.05471 cut to 4816.054
        (Fraction(1, 3), Fraction(333, 1000)),
        (Fraction(1, 2000), Fraction(0)),
    ],
)
def test_prices_are_cut_to_three_decimals(price: Fraction, expected: Fraction) -> None:
    info = fixed_price(price)
    assert Fraction(info.pricePerUnit, info.pixelsPerUnit) == expected
    assert (info.pricePerUnit, info.pixelsPerUnit) == expected.as_integer_ratio()  # reduced, as go sends it


def test_usd_prices_are_converted_with_the_feed_and_dropped_without_one() -> None:
    configs = [config("text-to-image", "a", 2, currency="USD"), config("llm", "c", 5, currency="eth")]
    assert PriceBook(configs).price("text-to-image", "a") is None
    assert PriceBook(configs).price("llm", "c") == 5 * 10**18
    rate = {"USD": Fraction(10**18, 2500)}  # ETH at 2500 USD
    book = PriceBook(configs, lambda currency: rate[currency])
    assert book.price("text-to-image", "a") == 2 * Fraction(10**18, 2500)
    rate["USD"] = Fraction(10**18, 5000)  # the feed moved: the next lookup follows it
    assert book.price("text-to-image", "a") == 2 * Fraction(10**18, 5000)


def test_a_price_feed_without_a_rate_leaves_the_model_unpriced() -> None:
    def no_rate(currency: str) -> Fraction:
        raise RuntimeError("no price yet")

    book = PriceBook([config("text-to-image", "a", 2, currency="USD")], no_rate)
    assert book.price("text-to-image", "a") is None
