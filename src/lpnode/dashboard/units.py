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
__all__ = ["OUTPUT_UNITS", "OutputUnit", "price_per_output", "wei_text"]


def wei_text(value: Fraction) -> str:
    """A wei amount as a plain decimal string: whole numbers exactly, fractions to 6 significant digits."""
    if value.denominator == 1:
        return str(value.numerator)
    with localcontext(prec=6):
        text = format((Decimal(value.numerator) / Decimal(value.denominator)).normalize(), "f")
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
