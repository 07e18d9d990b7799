"""The output ring: the last output segments of a live stream, read by any number of followers.

The subscribe loop pushes each complete output segment; followers (``lpnode live play``'s output route,
WHEP viewers) start at the live edge and read every segment after it in order. The ring is bounded both in
segments and in bytes (the newest segment is always kept), so a stalled follower never holds memory: when
the segment it wants has been dropped, it skips ahead to the oldest one still held and its ``skipped`` count
grows.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

MAX_SEGMENTS = 16
MAX_BYTES = 5 * 1024 * 1024
"""go-livepeer's gateway keeps 5 MB of output (20–30 s at typical bitrates)."""


@dataclass
class Follower:
    """One reader's position; ``skipped`` counts segments it lost by falling behind."""

    next_index: int
    skipped: int = 0


class OutputRing:
    """Bounded output segments, numbered from 0 in push order."""

    def __init__(self, max_segments: int = MAX_SEGMENTS, max_bytes: int = MAX_BYTES) -> None:
        if max_segments < 1 or max_bytes < 1:
            raise ValueError("an output ring holds at least one segment and one byte")
        self.max_segments = max_segments
        self.max_bytes = max_bytes
        self._items: deque[tuple[int, bytes]] = deque()
        self._bytes = 0
        self._next = 0
        self._closed = False
        self._changed = asyncio.Event()

    @property
    def pushed(self) -> int:
        """Segments pushed so far (the index the next one gets)."""
        return self._next

    @property
    def held_bytes(self) -> int:
        return self._bytes

    @property
    def closed(self) -> bool:
        return self._closed

    def push(self, segment: bytes) -> None:
        """Add one complete segment, dropping the oldest beyond the bounds (never the newest)."""
        if self._closed:
            return
        self._items.append((self._next, segment))
        self._bytes += len(segment)
        self._next += 1
        while len(self._items) > 1 and (len(self._items) > self.max_segments or self._bytes > self.max_bytes):
            _, dropped = self._items.popleft()
            self._bytes -= len(dropped)
        self._wake()

    def close(self) -> None:
        """No more segments: followers finish what they can still read, then end."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def follower(self) -> Follower:
        """A position at the live edge: the next segment pushed is the first one read."""
        return Follower(self._next)

    def take(self, follower: Follower) -> bytes | None:
        """The follower's next segment if it is held now (moving it on), else None."""
        if not self._items:
            return None
        oldest = self._items[0][0]
        if follower.next_index < oldest:
            follower.skipped += oldest - follower.next_index
            follower.next_index = oldest
        if follower.next_index >= self._next:
            return None
        index, segment = self._items[follower.next_index - oldest]
        assert index == follower.next_index
        follower.next_index += 1
        return segment

    async def follow(self, follower: Follower | None = None) -> AsyncIterator[bytes]:
        """Every segment from the live edge (or ``follower``'s position) on, until the ring is closed."""
        position = follower or self.follower()
        while True:
            changed = self._changed
            segment = self.take(position)
            if segment is not None:
                yield segment
                continue
            if self._closed:
                return
            await changed.wait()
