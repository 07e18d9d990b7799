"""A test double of the chain for fast unit tests of tickets: a :class:`~lpnode.payments.chain_view.ChainView`
whose rounds, blocks, gas price, pool and deposits are plain attributes the test sets. The real chain (anvil with
the project's contracts) is exercised by the integration tests."""

from __future__ import annotations

from dataclasses import dataclass, field

from lpnode.payments.chain_view import SenderInfo

ETH = 10**18
GWEI = 10**9


@dataclass
class FixedChain:
    """Chain facts frozen until the test changes them. ``senders`` maps a 20-byte address to its SenderInfo
    (unknown senders have nothing); ``active`` lists active orchestrators; ``claimed`` maps (sender, recipient)."""

    round: int = 100
    block_hash: bytes = bytes.fromhex("7624778dedc75f8b322b9fa1632a610d40b85e106c7d9bf0e743a9ce291b9c6f")
    l1_block: int = 5_000
    gas: int = 1 * GWEI // 10  # 0.1 gwei, Arbitrum-like
    pool_size: int = 10
    senders: dict[bytes, SenderInfo] = field(default_factory=dict)
    active: set[bytes] = field(default_factory=set)
    claimed: dict[tuple[bytes, bytes], int] = field(default_factory=dict)
    sender_info_calls: int = 0

    def current_round(self) -> int:
        return self.round

    def last_initialized_round(self) -> int:
        return self.round

    def round_block_hash(self) -> bytes:
        return self.block_hash

    def last_seen_l1_block(self) -> int:
        return self.l1_block

    def gas_price(self) -> int:
        return self.gas

    def transcoder_pool_size(self) -> int:
        return self.pool_size

    def is_active(self, address: bytes) -> bool:
        return address in self.active

    async def sender_info(self, sender: bytes) -> SenderInfo:
        self.sender_info_calls += 1
        return self.senders.get(sender, SenderInfo(0, 0, 0, 0))

    async def claimed_reserve(self, sender: bytes, recipient: bytes) -> int:
        return self.claimed.get((sender, recipient), 0)

    def fund(self, sender: bytes, deposit: int = 1 * ETH, reserve: int = 1 * ETH, withdraw_round: int = 0) -> None:
        """Give ``sender`` a deposit and reserve (and an unlock ending at ``withdraw_round``, 0 for none)."""
        self.senders[sender] = SenderInfo(deposit, withdraw_round, reserve, 0)
