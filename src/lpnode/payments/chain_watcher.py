"""The chain watched in the background: rounds, blocks, gas, the active set and senders' deposits.

:class:`ChainWatcher` is the real :class:`~lpnode.payments.chain_view.ChainView`. A background loop polls the
chain every ``poll_seconds`` (go-livepeer polls blocks every 5 s), so the sync getters the ticket code calls on
every payment return the latest values without touching the network. When the chain cannot be reached the last
values stay and the loop retries; :meth:`ChainWatcher.snapshot` says how old they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from lpnode.payments.chain_client import ChainClient
from lpnode.payments.chain_errors import ChainError
from lpnode.payments.chain_view import SenderInfo
from lpnode.payments.signatures import checksum

log = logging.getLogger(__name__)

DEFAULT_POLL_SECONDS = 5.0
# Senders nobody asked about for this long stop being refreshed (and are fetched again on next use).
_SENDER_IDLE_SECONDS = 600.0


class ChainWatcher:
    """Fresh chain facts for the sender and the recipient. Start it with :meth:`start` (which reads everything
    once before returning) and stop it with :meth:`close`.

    The wallet's own address (``client.address``) is always watched for :meth:`is_active`; other addresses are
    watched from the first time they are asked about (False until their first read).
    """

    def __init__(self, client: ChainClient, poll_seconds: float = DEFAULT_POLL_SECONDS) -> None:
        self.client = client
        self.poll_seconds = poll_seconds
        self._block = 0
        self._l1_block = 0
        self._gas_price = 0
        self._current_round = 0
        self._round_initialized = False
        self._last_initialized_round = 0
        self._round_block_hash = bytes(32)
        self._pool_size = 1
        self._active: dict[bytes, bool] = {}
        if client.address is not None:
            self._active[client.address] = False
        self._senders: dict[bytes, SenderInfo] = {}
        self._claimed: dict[tuple[bytes, bytes], int] = {}
        self._last_use: dict[bytes, float] = {}
        self._updated_at = 0.0
        self._last_error = ""
        self._task: asyncio.Task[None] | None = None

    # -- ChainView ----------------------------------------------------------------------------------------------

    def current_round(self) -> int:
        return self._current_round

    def last_initialized_round(self) -> int:
        """The round tickets are created in. When that round's block hash is still zero on chain, the previous
        round (with its hash), as go-livepeer does."""
        return self._last_initialized_round

    def round_block_hash(self) -> bytes:
        return self._round_block_hash

    def last_seen_l1_block(self) -> int:
        return self._l1_block

    def gas_price(self) -> int:
        return self._gas_price

    def transcoder_pool_size(self) -> int:
        return max(1, self._pool_size)

    def is_active(self, address: bytes) -> bool:
        if address not in self._active:
            self._active[address] = False  # watched from now on; read on the next poll
        return self._active[address]

    async def sender_info(self, sender: bytes) -> SenderInfo:
        self._last_use[sender] = time.monotonic()
        info = self._senders.get(sender)
        if info is None:
            info = await self.client.sender_info(sender)
            self._senders[sender] = info
        return info

    async def claimed_reserve(self, sender: bytes, recipient: bytes) -> int:
        self._last_use[sender] = time.monotonic()
        key = (sender, recipient)
        claimed = self._claimed.get(key)
        if claimed is None:
            claimed = await self.client.claimed_reserve(sender, recipient)
            self._claimed[key] = claimed
        return claimed

    # -- beyond ChainView -----------------------------------------------------------------------------------------

    def current_round_initialized(self) -> bool:
        return self._round_initialized

    def block_number(self) -> int:
        return self._block

    async def refresh_sender(self, sender: bytes) -> SenderInfo:
        """Read a sender's deposit and reserve now (after funding it, or redeeming one of its tickets)."""
        self._last_use[sender] = time.monotonic()
        info = await self.client.sender_info(sender)
        self._senders[sender] = info
        for key in [k for k in self._claimed if k[0] == sender]:
            self._claimed[key] = await self.client.claimed_reserve(*key)
        return info

    def snapshot(self) -> dict[str, Any]:
        """The watched values for status pages and metrics (JSON-ready)."""
        return {
            "block": self._block,
            "l1_block": self._l1_block,
            "gas_price": self._gas_price,
            "current_round": self._current_round,
            "current_round_initialized": self._round_initialized,
            "last_initialized_round": self._last_initialized_round,
            "round_block_hash": "0x" + self._round_block_hash.hex(),
            "transcoder_pool_size": self.transcoder_pool_size(),
            "active": {checksum(a): v for a, v in self._active.items()},
            "senders_watched": len(self._senders),
            "age_seconds": round(time.monotonic() - self._updated_at, 1) if self._updated_at else None,
            "last_error": self._last_error,
        }

    # -- the loop -------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Read every value once (raising :class:`ChainError` if the chain cannot be read), then keep them fresh."""
        await self.refresh()
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="chain-watcher")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def refresh(self) -> None:
        """Poll the chain once."""
        c = self.client
        now = time.monotonic()
        for sender in [s for s, used in self._last_use.items() if now - used > _SENDER_IDLE_SECONDS]:
            self._last_use.pop(sender, None)
            self._senders.pop(sender, None)
            for key in [k for k in self._claimed if k[0] == sender]:
                del self._claimed[key]
        # One JSON-RPC batch for everything read every period (a watcher's CPU is mostly per request).
        polled = await c.poll(list(self._active), list(self._senders), list(self._claimed))
        last_init, current_round = polled.last_initialized_round, polled.current_round
        if last_init != self._last_initialized_round or not any(self._round_block_hash):
            round_number, block_hash = last_init, await c.block_hash_for_round(last_init)
            if not any(block_hash) and last_init > 0:
                round_number, block_hash = last_init - 1, await c.block_hash_for_round(last_init - 1)
            self._last_initialized_round, self._round_block_hash = round_number, block_hash
        if current_round != self._current_round or not self._updated_at:
            self._pool_size = await c.transcoder_pool_size()
        self._active.update(polled.active)
        self._senders.update({s: i for s, i in polled.senders.items() if s in self._senders})
        self._claimed.update({k: v for k, v in polled.claimed.items() if k in self._claimed})
        self._block, self._l1_block, self._gas_price = polled.block, polled.l1_block, polled.gas_price
        self._current_round, self._round_initialized = current_round, polled.initialized
        self._updated_at = time.monotonic()

    async def _loop(self) -> None:
        delay = self.poll_seconds
        while True:
            await asyncio.sleep(delay)
            try:
                await self.refresh()
            except ChainError as exc:
                if str(exc) != self._last_error:
                    log.warning("chain watcher: %s (keeping the last values, retrying)", exc)
                self._last_error = str(exc)
                delay = min(max(delay * 2, self.poll_seconds), 60.0)
                continue
            if self._last_error:
                log.info("chain watcher: the chain answers again")
                self._last_error = ""
            delay = self.poll_seconds
