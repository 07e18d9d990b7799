"""AI capability numbers, and building the ``Capabilities`` and ``capabilities_prices`` an orchestrator advertises.

Capability numbers are go-livepeer's (``core/capabilities.go``); they travel as plain integers, so they
must never change. Everything here is a pure function of its arguments.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction

from lpnode import __version__
from lpnode.errors import ConfigError
from lpnode.pipelines import PIPELINES
from lpnode.protocol.lp_rpc_pb2 import Capabilities, PriceInfo

_INT64_MAX = 2**63 - 1
_UINT32_MAX = 2**32 - 1


class Capability(enum.IntEnum):
    """The AI capabilities of the Livepeer network (go-livepeer numbers 27–37)."""

    TEXT_TO_IMAGE = 27
    IMAGE_TO_IMAGE = 28
    IMAGE_TO_VIDEO = 29
    UPSCALE = 30
    AUDIO_TO_TEXT = 31
    SEGMENT_ANYTHING_2 = 32
    LLM = 33
    IMAGE_TO_TEXT = 34
    LIVE_VIDEO_TO_VIDEO = 35
    TEXT_TO_SPEECH = 36
    BYOC = 37


PIPELINE_CAPABILITIES: Mapping[str, Capability] = {name: Capability(p.capability) for name, p in PIPELINES.items()}
"""Pipeline name (as in aiModels.json and the job routes) -> capability. BYOC has no pipeline name."""

_CAPABILITY_PIPELINES: Mapping[Capability, str] = {cap: name for name, cap in PIPELINE_CAPABILITIES.items()}


def capability_for_pipeline(pipeline: str) -> Capability:
    """The capability number of ``pipeline``; ``ConfigError`` naming the known pipelines if there is none."""
    try:
        return PIPELINE_CAPABILITIES[pipeline]
    except KeyError:
        known = ", ".join(PIPELINE_CAPABILITIES)
        raise ConfigError(f"unknown pipeline {pipeline!r}; use one of: {known}") from None


def pipeline_for_capability(capability: int) -> str:
    """The pipeline name of an AI capability number; ``ValueError`` for BYOC and non-AI numbers."""
    try:
        return _CAPABILITY_PIPELINES[Capability(capability)]
    except (ValueError, KeyError):
        raise ValueError(f"capability {capability} is not an AI pipeline (AI pipelines are 27–36)") from None


@dataclass(frozen=True)
class ModelOffer:
    """One (pipeline, model) an orchestrator serves, with its state and price.

    ``price_per_unit`` is in wei per unit of work (pixels for images, tokens for LLM, ...), any
    non-negative rational; ``None`` means no price is set (off-chain).
    """

    pipeline: str
    model_id: str
    warm: bool
    capacity: int
    capacity_in_use: int = 0
    runner_version: str = ""
    price_per_unit: Fraction | None = None


def capability_bitstring(capabilities: Iterable[int]) -> list[int]:
    """The ``bitstring`` words for a set of capability numbers: bit ``c % 64`` of word ``c // 64``."""
    words: list[int] = []
    for cap in capabilities:
        if cap < 0:
            raise ValueError(f"capability numbers are non-negative, got {cap}")
        word, bit = divmod(cap, 64)
        words.extend([0] * (word + 1 - len(words)))
        words[word] |= 1 << bit
    return words


def capabilities_in_bitstring(bitstring: Iterable[int]) -> set[int]:
    """The capability numbers set in ``bitstring`` (the inverse of :func:`capability_bitstring`)."""
    return {word_index * 64 + bit for word_index, word in enumerate(bitstring) for bit in range(64) if word >> bit & 1}


def build_capabilities(offers: Iterable[ModelOffer], *, version: str = __version__) -> Capabilities:
    """The ``Capabilities`` message advertising ``offers``.

    Each offered pipeline's capability is set in ``bitstring``; ``capacities[cap]`` is the free capacity
    summed over its models; ``constraints.PerCapability[cap].models[model_id]`` carries warm, capacity,
    capacityInUse and runnerVersion. The same model listed twice is a configuration error.
    """
    message = Capabilities(version=version)
    seen: set[tuple[Capability, str]] = set()
    offered: set[int] = set()
    for offer in offers:
        cap = capability_for_pipeline(offer.pipeline)
        if (cap, offer.model_id) in seen:
            raise ConfigError(f"{offer.pipeline} model {offer.model_id!r} is listed twice; list each model once")
        seen.add((cap, offer.model_id))
        offered.add(cap)
        model = message.constraints.PerCapability[cap].models[offer.model_id]
        model.warm = offer.warm
        model.capacity = _uint32(offer.capacity, f"{offer.pipeline} {offer.model_id} capacity")
        model.capacityInUse = _uint32(offer.capacity_in_use, f"{offer.pipeline} {offer.model_id} capacity in use")
        model.runnerVersion = offer.runner_version
        message.capacities[cap] = _uint32(message.capacities[cap] + offer.capacity, f"{offer.pipeline} capacity")
    message.bitstring.extend(capability_bitstring(sorted(offered)))
    return message


def build_capabilities_prices(offers: Iterable[ModelOffer]) -> list[PriceInfo]:
    """One ``PriceInfo`` per priced offer, ``constraint`` = model id, as in ``OrchestratorInfo.capabilities_prices``.

    A whole-wei price is sent as go-livepeer sends it (``pixelsPerUnit`` 1). A fractional price is sent
    as its exact reduced fraction, where go-livepeer would round it down (to 0 for sub-wei prices).
    Offers without a price are left out.
    """
    prices: list[PriceInfo] = []
    for offer in offers:
        if offer.price_per_unit is None:
            continue
        price = price_info(offer.price_per_unit, offer.pipeline, offer.model_id)
        price.capability = capability_for_pipeline(offer.pipeline)
        price.constraint = offer.model_id
        prices.append(price)
    return prices


def price_info(price_per_unit: Fraction, pipeline: str = "", model_id: str = "") -> PriceInfo:
    """``price_per_unit`` (wei per unit) as a ``PriceInfo`` fraction; the names only label errors."""
    label = f"price of {pipeline} {model_id}".strip() if pipeline else "price"
    if price_per_unit < 0:
        raise ConfigError(f"{label} must not be negative, got {price_per_unit}")
    if price_per_unit.numerator > _INT64_MAX or price_per_unit.denominator > _INT64_MAX:
        raise ConfigError(f"{label} {price_per_unit} does not fit the wire format (64-bit numerator and denominator)")
    return PriceInfo(pricePerUnit=price_per_unit.numerator, pixelsPerUnit=price_per_unit.denominator)


def _uint32(value: int, what: str) -> int:
    if not 0 <= value <= _UINT32_MAX:
        raise ConfigError(f"{what} must be between 0 and {_UINT32_MAX}, got {value}")
    return value


def incompatibility(wanted: Capabilities, offered: Capabilities) -> str | None:
    """Why a gateway's ``wanted`` capabilities cannot be served by ``offered``, or ``None`` when they can.

    go-livepeer's ``CompatibleWith`` rules: every wanted capability is offered; the offer's mandatory
    capabilities are all wanted; for each capability both sides constrain, every wanted model is offered,
    a wanted warm model is offered warm, and the offered runner version is at least the wanted one.
    A minimum node version is checked too when the gateway sets one.
    """
    if wanted.constraints.minVersion and _version_key(offered.version) < _version_key(wanted.constraints.minVersion):
        return f"this node is version {offered.version or 'unknown'}, the gateway needs {wanted.constraints.minVersion}"
    missing = capabilities_in_bitstring(wanted.bitstring) - capabilities_in_bitstring(offered.bitstring)
    if missing:
        return "capabilities not offered here: " + ", ".join(_capability_name(c) for c in sorted(missing))
    unmet = capabilities_in_bitstring(offered.mandatories) - capabilities_in_bitstring(wanted.bitstring)
    if unmet:
        return "the gateway lacks mandatory capabilities: " + ", ".join(str(c) for c in sorted(unmet))
    for cap, wanted_models in wanted.constraints.PerCapability.items():
        if cap not in offered.constraints.PerCapability:
            continue
        offered_models = offered.constraints.PerCapability[cap].models
        for model_id, want in wanted_models.models.items():
            have = offered_models.get(model_id)
            if have is None:
                return f"{_capability_name(cap)} model {model_id!r} is not offered here"
            if want.warm and not have.warm:
                return f"{_capability_name(cap)} model {model_id!r} is offered cold, the gateway wants it warm"
            if want.runnerVersion and _version_key(have.runnerVersion) < _version_key(want.runnerVersion):
                return (
                    f"{_capability_name(cap)} model {model_id!r} runs runner version "
                    f"{have.runnerVersion or 'unknown'}, the gateway needs {want.runnerVersion}"
                )
    return None


def _capability_name(cap: int) -> str:
    try:
        return pipeline_for_capability(cap)
    except ValueError:
        return f"capability {cap}"


def _version_key(version: str) -> tuple[int, ...]:
    """A semver's (major, minor, patch) with any ``v`` prefix and prerelease/build suffix ignored; () if
    it does not parse (which sorts below every version, as go-livepeer treats an unknown version)."""
    core = version.strip().lstrip("v").split("-", 1)[0].split("+", 1)[0]
    parts = core.split(".")
    if not core or not all(p.isdigit() for p in parts):
        return ()
    return tuple(int(p) for p in parts) + (0,) * (3 - len(parts))
