"""Trickle channel state: segments, the 5-slot ring of each channel, and the set of channels.

This module holds no HTTP; the server (:mod:`lpnode.trickle.server`) turns requests into calls here, and an
in-process user (the orchestrator's live route) can create channels and publish or read segments directly.
Everything runs on one event loop, so no locks are needed: state changes between ``await`` points only.

The rules are go-livepeer's trickle server's:

- A channel keeps the last :data:`RING_SIZE` segments; segment ``seq`` lives in slot ``seq % RING_SIZE``.
- ``next_write`` is the seq after the last segment whose first byte arrived (the publisher's live edge).
- Reading seq ``-1`` means ``next_write`` (wait for the next segment); ``-2`` means the segment being written
  (``next_write - 1``, or 0 before any write).
- A read of a missing seq that is the next one to be written (or seq 1 before anything was written, a grace
  for a reader one ahead of the publisher's first preconnect) creates the segment empty, and the reader waits
  for its first byte. Any other missing seq is *gone* (too old, or too far ahead).
- A write to seq reuses the slot's segment when it holds that seq and nothing was written to it yet (a
  reader or a preconnect created it); otherwise the slot's segment is closed and replaced.

Bounded memory: a segment holds at most ``max_segment_bytes``; a write past it marks the segment
*aborted* and closes it (readers see their body cut off), so a channel holds at most
``RING_SIZE * max_segment_bytes`` plus segments already evicted that a reader is still sending.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

RING_SIZE = 5
"""Segments kept per channel (go-livepeer ``maxSegmentsPerStream``)."""
NEXT_SEQ = -1
"""Read alias: the next segment to be written (the live edge)."""
CURRENT_SEQ = -2
"""Read alias: the segment being written now, from its first byte."""
DEFAULT_MAX_SEGMENT_BYTES = 32 * 1024 * 1024
DEFAULT_IDLE_TIMEOUT = 300.0
DEFAULT_SWEEP_INTERVAL = 60.0
DEFAULT_MAX_CHANNELS = 1024


class SegmentFullError(Exception):
    """A write would make a segment larger than its channel's ``max_segment_bytes``."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"a segment may hold at most {limit} bytes")
        self.limit = limit


class Segment:
    """One segment: bytes appended by one publisher, readable from the start by any number of readers,
    while it is still being written."""

    def __init__(self, seq: int, max_bytes: int = DEFAULT_MAX_SEGMENT_BYTES) -> None:
        self.seq = seq
        self.max_bytes = max_bytes
        self.size = 0
        self.closed = False
        self.aborted = False
        """The segment did not end cleanly (too large, or its publisher went away): readers are cut off."""
        self._chunks: list[bytes] = []
        self._changed = asyncio.Event()

    @property
    def fresh(self) -> bool:
        """Nothing written and not closed: a preconnected slot a publisher may still take."""
        return not self.closed and self.size == 0

    def write(self, data: bytes) -> None:
        """Append ``data`` and wake readers. Raises :class:`SegmentFullError` (after cutting and closing
        the segment) when the segment would pass ``max_bytes``; writes to a closed segment are dropped."""
        if self.closed or not data:
            return
        if self.size + len(data) > self.max_bytes:
            self.abort()
            raise SegmentFullError(self.max_bytes)
        self._chunks.append(data)
        self.size += len(data)
        self._wake()

    def close(self) -> None:
        """End the segment: readers get EOF once they have read what was written."""
        if not self.closed:
            self.closed = True
            self._wake()

    def abort(self) -> None:
        """End the segment as broken: readers' bodies are cut off instead of ending cleanly."""
        if not self.closed:
            self.aborted = True
            self.close()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_closed(self) -> None:
        while not self.closed:
            await self._changed.wait()

    async def chunks(self) -> AsyncIterator[bytes]:
        """Every chunk from the first, waiting for more until the segment is closed."""
        index = 0
        while True:
            while index < len(self._chunks):
                yield self._chunks[index]
                index += 1
            if self.closed:
                return
            await self._changed.wait()

    def data(self) -> bytes:
        """What was written so far."""
        return b"".join(self._chunks)


@dataclass
class ReadSlot:
    """The answer to a read: the segment (``None`` when the seq is gone) and the channel's state then."""

    seq: int
    segment: Segment | None
    next_write: int
    closed: bool


@dataclass
class Channel:
    """One named stream of segments."""

    name: str
    mime_type: str = ""
    max_segment_bytes: int = DEFAULT_MAX_SEGMENT_BYTES
    clock: Callable[[], float] = time.monotonic
    next_write: int = 0
    closed: bool = False
    write_time: float = 0.0
    """When the last segment got its first byte (or the channel was made): the idle sweep's clock."""
    _ring: list[Segment | None] = field(default_factory=lambda: [None] * RING_SIZE)

    def __post_init__(self) -> None:
        self.write_time = self.clock()

    def segment(self, seq: int) -> Segment | None:
        """The segment ``seq`` if the ring still holds it."""
        if seq < 0:
            return None
        held = self._ring[seq % RING_SIZE]
        return held if held is not None and held.seq == seq else None

    def segments(self) -> Iterator[Segment]:
        return (s for s in self._ring if s is not None)

    def resolve_read(self, seq: int) -> int:
        if seq == NEXT_SEQ:
            return self.next_write
        if seq == CURRENT_SEQ:
            return max(self.next_write - 1, 0)
        return seq

    def for_read(self, seq: int) -> ReadSlot:
        """Resolve ``seq`` (``-1``/``-2`` aliases) and find its segment, creating it when a reader is just
        ahead of the publisher."""
        seq = self.resolve_read(seq)
        found = self.segment(seq)
        leading = seq == self.next_write or (self.next_write == 0 and seq == 1)
        if found is None and leading and not self.closed and seq >= 0:
            found = self._put(Segment(seq, self.max_segment_bytes))
        return ReadSlot(seq, found, self.next_write, self.closed)

    def for_write(self, seq: int) -> Segment:
        """The segment a publisher writes ``seq`` into (``-1``: the next one): the slot's own if it is fresh,
        else a new one replacing (and closing) what the slot held."""
        if seq == NEXT_SEQ:
            seq = self.next_write
        held = self.segment(seq)
        if held is not None and held.fresh:
            return held
        return self._put(Segment(seq, self.max_segment_bytes))

    def _put(self, segment: Segment) -> Segment:
        slot = segment.seq % RING_SIZE
        old = self._ring[slot]
        if old is not None:
            old.close()
        self._ring[slot] = segment
        return segment

    def started(self, seq: int) -> None:
        """Segment ``seq`` got its first byte: the live edge moves just past it (back, too, when a
        publisher restarts at a lower seq)."""
        self.next_write = seq + 1
        self.write_time = self.clock()

    def given_up(self, seq: int) -> None:
        """A publisher's wait on segment ``seq`` ended with no byte (the segment was closed under it): the
        live edge moves past it anyway, so that publisher's next seq is not refused, but never backwards."""
        if self.next_write <= seq:
            self.next_write = seq + 1
        self.write_time = self.clock()

    def reset_before(self, seq: int) -> None:
        """A publisher restarted at ``seq``: close older segments so readers stuck on them move on."""
        for segment in self.segments():
            if segment.seq < seq:
                segment.close()

    def close_segment(self, seq: int) -> bool:
        """Close segment ``seq``; False if the ring does not hold it."""
        found = self.segment(seq)
        if found is None:
            return False
        found.close()
        return True

    def close(self) -> None:
        """Close the channel and every segment in it; the ring is emptied."""
        self.closed = True
        for segment in self.segments():
            segment.close()
        self._ring = [None] * RING_SIZE

    def idle_for(self) -> float:
        return self.clock() - self.write_time


class TooManyChannelsError(Exception):
    """Creating a channel would pass the registry's ``max_channels``."""


@dataclass
class ChannelRegistry:
    """Every channel of one server, by name."""

    max_segment_bytes: int = DEFAULT_MAX_SEGMENT_BYTES
    max_channels: int = DEFAULT_MAX_CHANNELS
    clock: Callable[[], float] = time.monotonic
    _channels: dict[str, Channel] = field(default_factory=dict)

    def get(self, name: str) -> Channel | None:
        return self._channels.get(name)

    def names(self) -> list[str]:
        return sorted(self._channels)

    def create(self, name: str, mime_type: str = "") -> Channel:
        """The channel ``name``, made with ``mime_type`` if it does not exist (an existing channel keeps its
        own MIME type). Raises :class:`TooManyChannelsError` at ``max_channels``."""
        found = self._channels.get(name)
        if found is not None:
            return found
        if len(self._channels) >= self.max_channels:
            raise TooManyChannelsError(f"this server holds its maximum of {self.max_channels} channels")
        channel = Channel(name, mime_type, self.max_segment_bytes, self.clock)
        self._channels[name] = channel
        return channel

    def delete(self, name: str) -> bool:
        """Close and forget ``name``; False if there is no such channel."""
        channel = self._channels.pop(name, None)
        if channel is None:
            return False
        channel.close()
        return True

    def sweep(self, idle_timeout: float) -> list[str]:
        """Delete channels with no new segment for ``idle_timeout`` seconds (names starting with ``_`` are
        kept); the names deleted."""
        idle = [
            name
            for name, channel in self._channels.items()
            if not name.startswith("_") and channel.idle_for() > idle_timeout
        ]
        for name in idle:
            self.delete(name)
        return idle

    def close_all(self) -> None:
        for name in list(self._channels):
            self.delete(name)
