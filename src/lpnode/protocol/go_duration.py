"""Go's duration strings (``5s``, ``500ms``, ``1m30s``), read and written as go-livepeer's flags, headers and JSON
carry them."""

from __future__ import annotations

import re
from typing import Final

_UNITS: Final = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str, *, bare_seconds: bool = False) -> float:
    """Seconds in a Go duration string (``"5s"``, ``"1m30s"``, ``"-1.5h"``, ``"0"``); with ``bare_seconds`` a plain
    number is seconds too (flags written for people). ``ValueError`` otherwise."""
    value = text.strip()
    if bare_seconds:
        try:
            return float(value)
        except ValueError:
            pass
    sign = 1.0
    if value[:1] in ("+", "-"):
        sign = -1.0 if value[0] == "-" else 1.0
        value = value[1:]
    if value == "0":
        return 0.0
    if not value:
        raise ValueError(f"invalid duration {text!r}")
    total, pos = 0.0, 0
    while pos < len(value):
        match = _PART.match(value, pos)
        if match is None:
            raise ValueError(f"invalid duration {text!r}")
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return sign * total


def format_go_duration(seconds: float) -> str:
    """A Go duration string for a whole or fractional number of seconds (``5.0`` → ``"5s"``, ``90`` → ``"1m30s"``)."""
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    rest = abs(seconds)
    hours, rest = divmod(rest, 3600.0)
    minutes, rest = divmod(rest, 60.0)
    secs = f"{rest:.9f}".rstrip("0").rstrip(".") + "s"
    out = ""
    if hours:
        out += f"{int(hours)}h"
    if hours or minutes:
        out += f"{int(minutes)}m"
    return sign + out + secs
