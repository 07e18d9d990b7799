"""Capability numbers and the Capabilities / capabilities_prices an orchestrator advertises."""

from __future__ import annotations

from fractions import Fraction

import pytest

from lpnode.errors import ConfigError
from lpnode.protocol import (
    PIPELINE_CAPABILITIES,
    Capability,
    ModelOffer,
    build_capabilities,
    build_capabilities_prices,
    capabilities_in_bitstring,
    capability_bitstring,
    capability_for_pipeline,
    pipeline_for_capability,
)
from lpnode.protocol.lp_rpc_pb2 import Capabilities

GO_LIVEPEER_NUMBERS = {
    "text-to-image": 27,
    "image-to-image": 28,
    "image-to-video": 29,
    "upscale": 30,
    "audio-to-text": 31,
    "segment-anything-2": 32,
    "llm": 33,
    "image-to-text": 34,
    "live-video-to-video": 35,
    "text-to-speech": 36,
}


def test_pipeline_numbers_are_go_livepeers() -> None:
    assert {name: int(cap) for name, cap in PIPELINE_CAPABILITIES.items()} == GO_LIVEPEER_NUMBERS
    assert Capability.BYOC == 37


@pytest.mark.parametrize(("pipeline", "number"), sorted(GO_LIVEPEER_NUMBERS.items()))
def test_pipeline_and_capability_map_both_ways(pipeline: str, number: int) -> None:
    assert capability_for_pipeline(pipeline) == number
    assert pipeline_for_capability(number) == pipeline


def test_unknown_pipeline_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown pipeline 'text-to-music'; use one of: text-to-image, "):
        capability_for_pipeline("text-to-music")


@pytest.mark.parametrize("number", [0, 26, 37, 38, -1])
def test_non_pipeline_capability_has_no_pipeline(number: int) -> None:
    with pytest.raises(ValueError, match="not an AI pipeline"):
        pipeline_for_capability(number)


def test_bitstring_sets_bit_c_mod_64_of_word_c_div_64() -> None:
    assert capability_bitstring([27]) == [1 << 27]
    assert capability_bitstring([27, 33, 35]) == [(1 << 27) | (1 << 33) | (1 << 35)]
    assert capability_bitstring([1, 64, 130]) == [2, 1, 1 << 2]
    assert capability_bitstring([]) == []
    assert capabilities_in_bitstring(capability_bitstring([0, 12, 27, 64, 130])) == {0, 12, 27, 64, 130}


def test_capabilities_carry_each_model_state_and_total_capacity() -> None:
    offers = [
        ModelOffer("text-to-image", "stabilityai/sd-turbo", warm=True, capacity=2, runner_version="0.14.1"),
        ModelOffer("text-to-image", "ByteDance/SDXL-Lightning", warm=False, capacity=1),
        ModelOffer("live-video-to-video", "streamdiffusion", warm=True, capacity=3, capacity_in_use=1),
    ]
    caps = Capabilities.FromString(build_capabilities(offers, version="0.9.0").SerializeToString())
    assert caps.version == "0.9.0"
    assert capabilities_in_bitstring(caps.bitstring) == {27, 35}
    assert dict(caps.capacities) == {27: 3, 35: 3}
    assert list(caps.mandatories) == []
    t2i = caps.constraints.PerCapability[27].models
    assert set(t2i) == {"stabilityai/sd-turbo", "ByteDance/SDXL-Lightning"}
    turbo = t2i["stabilityai/sd-turbo"]
    assert (turbo.warm, turbo.capacity, turbo.runnerVersion, turbo.capacityInUse) == (True, 2, "0.14.1", 0)
    assert t2i["ByteDance/SDXL-Lightning"].warm is False
    live = caps.constraints.PerCapability[35].models["streamdiffusion"]
    assert (live.capacity, live.capacityInUse) == (3, 1)


def test_same_model_twice_is_a_config_error() -> None:
    offer = ModelOffer("llm", "m", warm=True, capacity=1)
    with pytest.raises(ConfigError, match="listed twice"):
        build_capabilities([offer, offer])


def test_negative_capacity_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="llm m capacity must be between 0 and"):
        build_capabilities([ModelOffer("llm", "m", warm=True, capacity=-1)])


def test_prices_are_one_entry_per_priced_model_with_the_model_as_constraint() -> None:
    offers = [
        ModelOffer("text-to-image", "sd-turbo", warm=True, capacity=1, price_per_unit=Fraction(4768371, 1000)),
        ModelOffer("llm", "llama", warm=True, capacity=1, price_per_unit=Fraction(21, 3)),
        ModelOffer("upscale", "free-when-unset", warm=True, capacity=1),
    ]
    prices = build_capabilities_prices(offers)
    assert [(p.capability, p.constraint, p.pricePerUnit, p.pixelsPerUnit) for p in prices] == [
        (27, "sd-turbo", 4768371, 1000),
        (33, "llama", 7, 1),
    ]


def test_price_that_does_not_fit_int64_is_a_config_error() -> None:
    offer = ModelOffer("llm", "m", warm=True, capacity=1, price_per_unit=Fraction(2**63))
    with pytest.raises(ConfigError, match="does not fit the wire format"):
        build_capabilities_prices([offer])


def test_negative_price_is_a_config_error() -> None:
    offer = ModelOffer("llm", "m", warm=True, capacity=1, price_per_unit=Fraction(-1))
    with pytest.raises(ConfigError, match="price of llm m must not be negative"):
        build_capabilities_prices([offer])
