"""What one typical output of each pipeline costs in billing units, so a price per unit can be shown as a
price per image, per audio minute or per thousand tokens.

The units are go-livepeer's (``research`` §4.3): pixels for images and video, ``seconds × 1000`` for audio,
``max_tokens`` for llm, ``1000 × characters`` for text-to-speech, 720p30 pixels per second for live video
(each network pipeline's :attr:`~lpnode.pipelines.PipelineSpec.output_unit`), and seconds of compute for
BYOC.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, localcontext
from fractions import Fraction
from types import MappingProxyType

from lpnode.pipelines import PIPELINES, OutputUnit

BYOC_OUTPUT_UNIT = OutputUnit("second of compute", 1)
OUTPUT_UNITS: Mapping[str, OutputUnit] = MappingProxyType(
    {**{name: spec.output_unit for name, spec in PIPELINES.items()}, "byoc": BYOC_OUTPUT_UNIT}
)
"""Pipeline name (``byoc`` for every BYOC capability) -> its typical output."""
__all__ = ["OUTPUT_UNITS", "OutputUnit", "eth_text", "price_per_output", "readable_wei", "wei_text"]
WEI_PER_ETH = 10**18


def wei_text(value: Fraction) -> str:
    """A wei amount as a plain decimal string: whole numbers exactly, fractions to 6 significant digits."""
    if value.denominator == 1:
        return str(value.numerator)
    with localcontext(prec=6):
        text = format((Decimal(value.numerator) / Decimal(value.denominator)).normalize(), "f")
    return text


def readable_wei(amount: str | int | Fraction) -> str:
    """A wei amount as a person reads it: ETH from 0.001 ETH up, gwei from 1 gwei up, else wei; whole
    numbers with thousands separators, fractions to 4 significant digits. ``readable_wei(50_000 * 10**9)``
    is ``"50,000 gwei"``, ``readable_wei("4768371")`` is ``"4,768,371 wei"``; ``""`` for ``""``, and a text
    that is not a number is returned as it is."""
    if amount == "":
        return ""
    try:
        value = Fraction(amount)
    except (ValueError, ZeroDivisionError):
        return str(amount)
    for scale, unit in ((10**18, "ETH"), (10**9, "gwei"), (1, "wei")):
        if abs(value) >= scale * (Fraction(1, 1000) if unit == "ETH" else 1) or unit == "wei":
            return f"{_grouped(value / scale)} {unit}"
    raise AssertionError("unreachable")


def eth_text(amount: str | int | Fraction) -> str:
    """A wei amount in ETH, for balances, deposits and earnings: 6 significant digits, never an exponent,
    thousands separated. ``eth_text(10**18)`` is ``"1 ETH"``, ``eth_text("199940820319723")`` is
    ``"0.000199941 ETH"``, ``eth_text(0)`` is ``"0 ETH"``; ``""`` for ``""``. A fraction (``"3/2"``) is read
    exactly; a text that is not a number is returned as it is."""
    if amount == "":
        return ""
    try:
        value = Fraction(amount) / WEI_PER_ETH
    except (ValueError, ZeroDivisionError, TypeError):
        return str(amount)
    if value == 0:
        return "0 ETH"
    with localcontext(prec=6):
        text = format((Decimal(value.numerator) / Decimal(value.denominator)).normalize(), ",f")
    return f"{text} ETH"


def _grouped(value: Fraction) -> str:
    if value.denominator == 1 or abs(value) >= 1000:
        return f"{round(value):,}"
    with localcontext(prec=4):
        text = format((Decimal(value.numerator) / Decimal(value.denominator)).normalize(), ",f")
    return text


def price_per_output(pipeline: str, price_per_unit: Fraction | None) -> tuple[str, str]:
    """``(wei per output, output label)`` for ``pipeline``; ``("", label)`` without a price, ``("", "")`` for a
    pipeline whose output has no typical size."""
    unit = OUTPUT_UNITS.get(pipeline)
    if unit is None:
        return "", ""
    if price_per_unit is None:
        return "", unit.label
    return wei_text(price_per_unit * unit.units), unit.label
