"""Go's ``big.Rat`` formatting, as go-livepeer prints prices and ratios in its messages and JSON."""

from __future__ import annotations

import math
from fractions import Fraction


def float_string(value: Fraction, places: int = 5) -> str:
    """go's ``big.Rat.FloatString``: ``places`` decimals, the last rounded half away from zero."""
    scaled = abs(value) * 10**places
    whole = math.floor(scaled)
    if scaled - whole >= Fraction(1, 2):
        whole += 1
    integer, decimals = divmod(whole, 10**places)
    sign = "-" if value < 0 and whole else ""
    return f"{sign}{integer}.{decimals:0{places}d}" if places else f"{sign}{integer}"
