"""The output ring: the last output segments of a live stream, read by any number of followers.

The subscribe loop opens a segment when the orchestrator starts sending one (:meth:`OutputRing.start`) and
appends its bytes as they arrive, so a follower never waits for a segment to end before it sees its
first frame: ``GET .../output`` relays the bytes as they come (:meth:`OutputRing.follow_bytes`), while
WHEP viewers, which demux whole segments, read complete ones (:meth:`OutputRing.follow`). Followers start
at the live edge and read every segment after it in order. The ring is bounded both in segments and in
bytes (the newest segment is always kept), so a stalled follower never holds memory: when the segment it
wants has been dropped, it skips ahead to the oldest one still held and its ``skipped`` count grows.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

MAX_SEGMENTS = 16
MAX_BYTES = 5 * 1024 * 1024
"""go-livepeer's gateway keeps 5 MB of output (20–30 s at typical bitrates)."""


@dataclass
class Follower:
    """One reader's position; ``skipped`` counts segments it lost by falling behind."""

    next_index: int
    skipped: int = 0


class OutputSegment:
    """One output segment, readable while it is being written."""

    def __init__(self, on_bytes: Callable[[int], None] = lambda n: None) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.done = False
        self.cut = False
        """Ended before its end (the orchestrator cut it off); whole-segment readers skip it."""
        self._on_bytes = on_bytes
        self._changed = asyncio.Event()

    def append(self, chunk: bytes) -> None:
        if self.done or not chunk:
            return
        self.chunks.append(chunk)
        self.size += len(chunk)
        self._on_bytes(len(chunk))
        self._wake()

    def finish(self, *, cut: bool = False) -> None:
        self.done, self.cut = True, cut
        self._wake()

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def whole(self) -> bytes | None:
        """The complete segment once it has ended; None when it was cut off."""
        while not self.done:
            await self._changed.wait()
        return None if self.cut else self.data

    async def stream(self) -> AsyncIterator[bytes]:
        """Its bytes as they arrive, until it ends."""
        sent = 0
        while True:
            changed = self._changed
            while sent < len(self.chunks):
                sent += 1
                yield self.chunks[sent - 1]
            if self.done:
                return
            await changed.wait()


class OutputRing:
    """Bounded output segments, numbered from 0 in the order they start."""

    def __init__(self, max_segments: int = MAX_SEGMENTS, max_bytes: int = MAX_BYTES) -> None:
        if max_segments < 1 or max_bytes < 1:
            raise ValueError("an output ring holds at least one segment and one byte")
        self.max_segments = max_segments
        self.max_bytes = max_bytes
        self._items: deque[tuple[int, OutputSegment]] = deque()
        self._bytes = 0
        self._next = 0
        self._closed = False
        self._changed = asyncio.Event()

    @property
    def pushed(self) -> int:
        """Segments started so far (the index the next one gets)."""
        return self._next

    @property
    def held_bytes(self) -> int:
        return self._bytes

    @property
    def closed(self) -> bool:
        return self._closed

    def start(self) -> OutputSegment:
        """Open the next segment; append to it as its bytes arrive, then finish it."""
        segment = OutputSegment(self._grew)
        if self._closed:
            segment.finish(cut=True)
            return segment
        self._items.append((self._next, segment))
        self._next += 1
        self._trim()
        self._wake()
        return segment

    def push(self, data: bytes) -> None:
        """Add one complete segment."""
        segment = self.start()
        segment.append(data)
        segment.finish()

    def _grew(self, size: int) -> None:
        self._bytes += size
        self._trim()

    def _trim(self) -> None:
        """Drop the oldest segments beyond the bounds (never the newest)."""
        while len(self._items) > 1 and (len(self._items) > self.max_segments or self._bytes > self.max_bytes):
            _, dropped = self._items.popleft()
            self._bytes -= dropped.size

    def close(self) -> None:
        """No more segments: followers finish what they can still read, then end (a segment still open is
        cut off here, so nobody waits for its end)."""
        self._closed = True
        for _, segment in self._items:
            if not segment.done:
                segment.finish(cut=True)
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def follower(self) -> Follower:
        """A position at the live edge: the next segment started is the first one read."""
        return Follower(self._next)

    def take(self, follower: Follower) -> OutputSegment | None:
        """The follower's next segment if it has started (moving the follower on), else None."""
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

    async def _segments(self, follower: Follower | None) -> AsyncIterator[OutputSegment]:
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

    async def follow(self, follower: Follower | None = None) -> AsyncIterator[bytes]:
        """Every complete segment from the live edge (or ``follower``'s position) on, until the ring is closed;
        segments cut off on the way are left out."""
        async for segment in self._segments(follower):
            data = await segment.whole()
            if data:
                yield data

    async def follow_bytes(self, follower: Follower | None = None) -> AsyncIterator[bytes]:
        """The bytes of every segment from the live edge on, as they arrive, until the ring is closed."""
        async for segment in self._segments(follower):
            async for chunk in segment.stream():
                yield chunk
