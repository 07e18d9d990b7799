"""What ticket code needs to know about the chain, as one small interface.

The sender and the recipient read rounds, blocks, gas prices and deposits through a :class:`ChainView`. The
real one (:mod:`lpnode.payments.chain_watcher`) keeps these values fresh from the chain in the background so
that reading them never blocks a job; only a sender seen for the first time costs a chain call.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol


class SenderInfo(NamedTuple):
    """``TicketBroker.getSenderInfo``: the sender's deposit, the round its unlock ends (0: locked), its reserve
    (``fundsRemaining``) and what recipients claimed from the reserve this round."""

    deposit: int
    withdraw_round: int
    reserve: int
    claimed_in_current_round: int = 0


class ChainView(Protocol):
    """Fresh chain facts, in wei, blocks and rounds. Addresses are 20 raw bytes."""

    def current_round(self) -> int:
        """``RoundsManager.currentRound()``."""
        ...

    def last_initialized_round(self) -> int:
        """``RoundsManager.lastInitializedRound()``: tickets are created in this round."""
        ...

    def round_block_hash(self) -> bytes:
        """The 32-byte block hash of :meth:`last_initialized_round` (``blockHashForRound``); go-livepeer falls
        back to the previous round when it is still zero."""
        ...

    def last_seen_l1_block(self) -> int:
        """The latest L1 block number seen (Arbitrum's ``l1BlockNumber``; the block number on other chains)."""
        ...

    def gas_price(self) -> int:
        """The current gas price in wei."""
        ...

    def transcoder_pool_size(self) -> int:
        """``BondingManager.getTranscoderPoolSize()`` (at least 1)."""
        ...

    def is_active(self, address: bytes) -> bool:
        """Whether ``address`` is an active orchestrator in the current round."""
        ...

    async def sender_info(self, sender: bytes) -> SenderInfo:
        """The sender's deposit and reserve (cached; fetched from the chain on first use and kept fresh)."""
        ...

    async def claimed_reserve(self, sender: bytes, recipient: bytes) -> int:
        """``TicketBroker.claimedReserve(sender, recipient)``: what ``recipient`` claimed from the reserve this
        round."""
        ...
