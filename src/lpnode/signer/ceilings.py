"""Price ceilings: the most a signer pays an orchestrator per billing unit (go-livepeer #4014).

All prices are exact wei per unit (a second for ``live``, a pixel for ``lv2v`` and raw pixels, a call for
``fixed``); the orchestrator's price is ``pricePerUnit / pixelsPerUnit`` of the ``OrchestratorInfo`` in the
request. Four ceilings may apply, the lowest wins, and equality passes:

- the **configured maximum price** (``-maxPricePerUnit / -pixelsPerUnit``, or for a request whose capabilities
  name pipeline/model pairs, the sum of the matching ``-maxPricePerCapability`` entries);
- the request's ``maxPrice`` ``{price, currency: "wei", unit}``;
- the session's **initial price** (a state pins the price its first payment was made at);
- the auth webhook's ``maxPrice`` (checked after the webhook answered).

A price above the effective ceiling is a 481 ``orchestrator price X exceeds <source> ceiling Y`` (three decimals,
go's words); a malformed ``maxPrice`` is a 400 with go's message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

from lpnode.errors import ConfigError
from lpnode.payments.capability_prices import read_capability_prices
from lpnode.protocol.capabilities import pipeline_for_capability
from lpnode.protocol.go_rat import float_string
from lpnode.protocol.lp_rpc_pb2 import Capabilities
from lpnode.protocol.remote_signer import PRICE_UNITS

CONFIGURED = "configured maximum price"
REQUEST = "request maxPrice"
INITIAL = "initial session price"
WEBHOOK = "auth webhook maxPrice"


class CeilingError(Exception):
    """A price ceiling refused the request; ``status`` is 481 (above a ceiling) or 400 (a malformed maxPrice)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_max_price(value: object, payment_type: str) -> Fraction | None:
    """A ``maxPrice`` object in wei per unit (None when absent); ``ValueError`` with go's message otherwise."""
    if value is None:
        return None
    obj = {str(k).lower(): v for k, v in value.items()} if isinstance(value, dict) else {}
    if not isinstance(value, dict):
        raise ValueError("maxPrice must be an object {price, currency, unit}")
    raw = obj.get("price")
    try:
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise ValueError
        price = Fraction(str(raw).strip())
    except (ValueError, ZeroDivisionError):
        price = Fraction(0)
    if price <= 0:
        raise ValueError("maxPrice.price must be a positive decimal")
    if str(obj.get("currency") or "").strip().lower() != "wei":
        raise ValueError("maxPrice.currency must be wei")
    unit = PRICE_UNITS.get(payment_type)
    if unit is None:
        raise ValueError("maxPrice requires payment type live, lv2v, or fixed")
    if str(obj.get("unit") or "").strip().lower() != unit:
        raise ValueError(f"maxPrice.unit must be {unit} for payment type {payment_type}")
    return price


def check(price: Fraction, *ceilings: tuple[str, Fraction | None]) -> None:
    """Raise a 481 :class:`CeilingError` when ``price`` is above the lowest of ``ceilings`` (``(source, wei)``;
    None: that ceiling does not apply)."""
    present = [(source, limit) for source, limit in ceilings if limit is not None]
    if not present:
        return
    source, limit = min(present, key=lambda item: item[1])
    if price > limit:
        raise CeilingError(
            481, f"orchestrator price {float_string(price, 3)} exceeds {source} ceiling {float_string(limit, 3)}"
        )


@dataclass
class ConfiguredPrices:
    """``-maxPricePerUnit``/``-pixelsPerUnit`` and ``-maxPricePerCapability``. Amounts in USD are kept as USD and
    converted with ``usd_to_wei`` when a request is checked (the feed moves)."""

    global_max: Fraction | None = None
    global_usd: bool = False
    per_capability: dict[tuple[str, str], tuple[Fraction, bool]] = field(default_factory=dict)
    usd_to_wei: Callable[[Fraction], Fraction] | None = None

    def _wei(self, amount: Fraction, usd: bool) -> Fraction:
        if not usd:
            return amount
        if self.usd_to_wei is None:
            raise CeilingError(500, "no ETH/USD price feed to convert a USD maximum price")
        return self.usd_to_wei(amount)

    def global_wei(self) -> Fraction | None:
        """The global maximum in wei per unit (None: any price)."""
        return None if self.global_max is None else self._wei(self.global_max, self.global_usd)

    def for_capabilities(self, caps: Capabilities | None) -> Fraction | None:
        """The configured maximum for a request naming ``caps``: the sum of the entries that match its
        pipeline/model pairs (``default`` matches any model), else the global maximum."""
        total, matched = Fraction(0), False
        if caps is not None and self.per_capability:
            for cap, constraints in caps.constraints.PerCapability.items():
                try:
                    pipeline = pipeline_for_capability(cap)
                except ValueError:
                    continue
                for model in constraints.models or {"": None}:
                    found = self.per_capability.get((pipeline, model)) or self.per_capability.get((pipeline, "default"))
                    if found is not None:
                        total += self._wei(*found)
                        matched = True
        return total if matched else self.global_wei()


def parse_price_flag(text: str, flag: str) -> tuple[Fraction, bool] | None:
    """``<number>[wei|eth|usd]`` (go's ``-maxPricePerUnit``; ``0`` means no maximum): the amount (wei, or USD
    when the flag is True), or None for no maximum. ConfigError for anything else."""
    value = text.strip().lower()
    scale, usd = 1, False
    for suffix, factor in (("wei", 1), ("eth", 10**18), ("usd", 1)):
        if value.endswith(suffix):
            value, scale, usd = value[: -len(suffix)].strip(), factor, suffix == "usd"
            break
    try:
        amount = Fraction(value) * scale
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"{flag} {text!r} is not a number with an optional wei, eth or USD suffix") from None
    if amount < 0:
        raise ConfigError(f"{flag} must not be negative, got {text!r}")
    return None if amount == 0 else (amount, usd)


def parse_capability_prices(text: str) -> dict[tuple[str, str], tuple[Fraction, bool]]:
    """``-maxPricePerCapability``: go-livepeer's JSON, or a file holding it::

        {"capabilities_prices": [{"pipeline": "live-video-to-video", "model_id": "default",
          "price_per_unit": 100, "pixels_per_unit": 1, "currency": "wei"}]}

    Keys are ``(pipeline, model_id)``; values ``(wei or USD per unit, in USD)``. ConfigError on bad input."""
    if not text.strip():
        return {}
    prices: dict[tuple[str, str], tuple[Fraction, bool]] = {}
    for entry in read_capability_prices(text, "-maxPricePerCapability"):
        if not isinstance(entry.raw.get("pipeline"), str) or not entry.raw["pipeline"]:
            raise ConfigError(f"{entry.where}: needs a pipeline name")
        if entry.price <= 0 or entry.pixels <= 0:
            raise ConfigError(f"{entry.where}: price_per_unit and pixels_per_unit must be above 0")
        prices[(entry.raw["pipeline"], entry.model_id)] = (entry.per_unit(), entry.currency == "usd")
    return prices
