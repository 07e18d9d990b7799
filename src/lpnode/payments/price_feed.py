"""ETH priced in another currency (USD) through a Chainlink aggregator, for prices and caps set in USD.

go-livepeer reads ``latestRoundData()`` and ``decimals()`` of an ETH/USD aggregator (``-priceFeedAddr``) at start
and then every hour; so does :class:`PriceFeed`. A price of ``p`` USD per unit is ``p × wei_per_unit()`` wei.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from fractions import Fraction
from typing import Any

from lpnode.payments import abi
from lpnode.payments.chain_client import ChainClient
from lpnode.payments.chain_errors import ChainError

log = logging.getLogger(__name__)

REFRESH_SECONDS = 3600.0
_RETRY_SECONDS = 30.0
WEI_PER_ETH = 10**18


class PriceFeed:
    """The ETH price in a currency from the aggregator at ``address``. :meth:`start` reads it once (raising
    :class:`ChainError` when it cannot), then a background loop refreshes it hourly, retrying from 30 s on
    failure and keeping the last good value meanwhile."""

    def __init__(self, client: ChainClient, address: str, refresh_seconds: float = REFRESH_SECONDS) -> None:
        self.client = client
        self.address = address
        self.refresh_seconds = refresh_seconds
        self.description = ""
        self.currency = "USD"
        self._decimals = 0
        self._answer = 0
        self._updated_at = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def eth_price(self) -> Fraction:
        """The price of one ETH in the currency (e.g. 3150.25 USD)."""
        if self._answer <= 0:
            raise ChainError(f"the price feed {self.address} has no price yet")
        return Fraction(self._answer, 10**self._decimals)

    def wei_per_unit(self) -> Fraction:
        """Wei per one unit of the currency: 1e18 × 10^decimals / answer."""
        if self._answer <= 0:
            raise ChainError(f"the price feed {self.address} has no price yet")
        return Fraction(WEI_PER_ETH * 10**self._decimals, self._answer)

    def to_wei(self, amount: Fraction | int) -> Fraction:
        """``amount`` in the currency (a price per unit, a cap) converted to wei."""
        return Fraction(amount) * self.wei_per_unit()

    def snapshot(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "description": self.description,
            "eth_price": str(float(self.eth_price)) if self._answer > 0 else None,
            "updated_at": self._updated_at,
        }

    async def refresh(self) -> None:
        """Read the aggregator now."""
        if not self._decimals:
            self._decimals = int(await self.client.call(self.address, abi.AGGREGATOR, "decimals"))
            with contextlib.suppress(ChainError):
                self.description = str(await self.client.call(self.address, abi.AGGREGATOR, "description"))
            # "ETH / USD": the quote currency is the second part of the pair.
            if "/" in self.description:
                self.currency = self.description.split("/")[-1].strip().upper() or "USD"
        _, answer, _, updated_at, _ = await self.client.call(self.address, abi.AGGREGATOR, "latestRoundData")
        if int(answer) <= 0:
            raise ChainError(f"the price feed {self.address} answered a price of {answer}")
        self._answer, self._updated_at = int(answer), int(updated_at)

    async def start(self) -> None:
        await self.refresh()
        log.info("price feed %s: 1 ETH = %s %s", self.address, float(self.eth_price), self.currency)
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="price-feed")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        delay = self.refresh_seconds
        while True:
            await asyncio.sleep(delay)
            try:
                await self.refresh()
            except ChainError as exc:
                log.warning("price feed %s: %s (keeping the last price)", self.address, exc)
                delay = _RETRY_SECONDS if delay >= self.refresh_seconds else min(delay * 2, self.refresh_seconds)
                continue
            delay = self.refresh_seconds
