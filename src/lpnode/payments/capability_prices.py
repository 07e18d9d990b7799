"""go-livepeer's ``-maxPricePerCapability`` document, read the one way the gateway and the signer both need::

    {"capabilities_prices": [{"pipeline": "text-to-image", "model_id": "stabilityai/sd-turbo",
      "price_per_unit": 1000, "pixels_per_unit": 1, "currency": "wei"}]}

The flag holds the JSON itself or the path of a file holding it. Each role then applies its own rules (which
pipelines it knows, what a missing price means).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from lpnode.errors import ConfigError

CURRENCIES = ("wei", "eth", "usd")


@dataclass(frozen=True)
class CapabilityPriceEntry:
    """One entry: ``where`` names it in errors (``-flag entry N``); ``price`` and ``pixels`` as written (0 and 1
    when left out); ``currency`` lower-cased, one of :data:`CURRENCIES`."""

    where: str
    raw: dict[str, Any]
    price: Fraction
    pixels: Fraction
    currency: str

    @property
    def model_id(self) -> str:
        """The entry's model, ``default`` when it names none (go's key for every model of the pipeline)."""
        return str(self.raw.get("model_id") or "default")

    def per_unit(self) -> Fraction:
        """Wei (USD for a ``usd`` entry) per unit: ETH in wei, divided by ``pixels_per_unit`` (1 when not above 0)."""
        scale = 10**18 if self.currency == "eth" else 1
        return self.price * scale / (self.pixels if self.pixels > 0 else 1)


def read_capability_prices(text: str, flag: str) -> list[CapabilityPriceEntry]:
    """Every entry of the document in ``text`` (JSON or a file's path); ConfigError naming ``flag`` when the
    document, an entry's currency or its numbers cannot be read."""
    path = Path(text).expanduser()
    raw = path.read_text() if path.is_file() else text
    try:
        data: Any = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{flag} is not valid JSON: {exc}") from None
    entries = data.get("capabilities_prices") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f'{flag} must be {{"capabilities_prices": [...]}}')
    read = []
    for index, entry in enumerate(entries, 1):
        where = f"{flag} entry {index}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be an object with a pipeline and a price")
        currency = str(entry.get("currency") or "wei").strip().lower()
        if currency not in CURRENCIES:
            raise ConfigError(f"{where}: currency {currency!r} is not wei, eth or USD")
        try:
            price = Fraction(str(entry.get("price_per_unit") or 0))
            pixels = Fraction(str(entry.get("pixels_per_unit") or 1))
        except (ValueError, ZeroDivisionError):
            raise ConfigError(f"{where}: price_per_unit and pixels_per_unit must be numbers") from None
        read.append(CapabilityPriceEntry(where, entry, price, pixels, currency))
    return read
