"""What one typical output of each pipeline costs in billing units, so a price per unit can be shown as a
price per image, per audio minute or per thousand tokens.

The units are go-livepeer's (``research`` §4.3): pixels for images and video, ``seconds × 1000`` for audio,
``max_tokens`` for llm, ``1000 × characters`` for text-to-speech, 720p30 pixels per second for live video,
seconds of compute for BYOC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction
from types import MappingProxyType


@dataclass(frozen=True)
class OutputUnit:
    """``units`` billing units make one ``label`` (e.g. 1,048,576 units = one 1024×1024 image)."""

    label: str
    units: int


_MEGAPIXEL_IMAGE = OutputUnit("1024×1024 image", 1024 * 1024)
OUTPUT_UNITS: Mapping[str, OutputUnit] = MappingProxyType(
    {
        "text-to-image": _MEGAPIXEL_IMAGE,
        "image-to-image": _MEGAPIXEL_IMAGE,
        "upscale": OutputUnit("512×512 input image", 512 * 512),
        "image-to-video": OutputUnit("1024×576 video (25 frames)", 1024 * 576 * 25),
        "audio-to-text": OutputUnit("audio minute", 60 * 1000),
        "segment-anything-2": _MEGAPIXEL_IMAGE,
        "llm": OutputUnit("1k tokens", 1000),
        "image-to-text": _MEGAPIXEL_IMAGE,
        "text-to-speech": OutputUnit("1k characters", 1000 * 1000),
        "live-video-to-video": OutputUnit("minute of 720p30 video", 1280 * 720 * 30 * 60),
        "byoc": OutputUnit("second of compute", 1),
    }
)


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
