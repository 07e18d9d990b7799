"""The trickle ring and sequence rules (go-livepeer's), on channel state without HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from lpnode.trickle.channels import (
    CURRENT_SEQ,
    NEXT_SEQ,
    RING_SIZE,
    Channel,
    ChannelRegistry,
    Segment,
    SegmentFullError,
    TooManyChannelsError,
)


def publish(channel: Channel, seq: int, data: bytes = b"x") -> Segment:
    segment = channel.for_write(seq)
    channel.started(segment.seq)
    segment.write(data)
    segment.close()
    return segment


def test_ring_keeps_the_last_five_segments() -> None:
    channel = Channel("c")
    for seq in range(7):
        publish(channel, seq, str(seq).encode())
    assert RING_SIZE == 5
    assert [seq for seq in range(7) if channel.segment(seq)] == [2, 3, 4, 5, 6]
    assert channel.next_write == 7
    assert channel.segment(6) is not None and channel.segment(6).data() == b"6"  # type: ignore[union-attr]


def test_evicted_seq_is_gone_and_reports_the_live_edge() -> None:
    channel = Channel("c")
    for seq in range(7):
        publish(channel, seq)
    found = channel.for_read(1)
    assert found.segment is None and found.seq == 1 and found.next_write == 7 and not found.closed


def test_minus_one_is_the_next_segment_and_is_precreated() -> None:
    channel = Channel("c")
    publish(channel, 0)
    found = channel.for_read(NEXT_SEQ)
    assert found.seq == 1 and found.segment is not None and found.segment.fresh
    # The publisher's POST for seq 1 takes the precreated segment, so the waiting reader gets its bytes.
    assert channel.for_write(1) is found.segment


def test_minus_two_is_the_segment_being_written() -> None:
    channel = Channel("c")
    assert channel.for_read(CURRENT_SEQ).seq == 0  # nothing written: seq 0
    publish(channel, 0)
    publish(channel, 1, b"one")
    found = channel.for_read(CURRENT_SEQ)
    assert found.seq == 1 and found.segment is not None and found.segment.data() == b"one"


def test_grace_for_seq_one_before_anything_is_written() -> None:
    channel = Channel("c")
    assert channel.for_read(1).segment is not None
    assert channel.for_read(2).segment is None  # further ahead: gone (470)


def test_far_ahead_seq_is_gone() -> None:
    channel = Channel("c")
    publish(channel, 0)
    assert channel.for_read(3).segment is None


def test_closed_channel_precreates_nothing() -> None:
    channel = Channel("c")
    channel.close()
    found = channel.for_read(NEXT_SEQ)
    assert found.segment is None and found.closed


def test_write_minus_one_goes_to_the_next_seq() -> None:
    channel = Channel("c")
    publish(channel, 0)
    assert channel.for_write(NEXT_SEQ).seq == 1


def test_a_written_segment_is_replaced_not_appended_on_a_second_post() -> None:
    channel = Channel("c")
    first = publish(channel, 0, b"old")
    second = channel.for_write(0)
    assert second is not first and first.closed and second.fresh


def test_reset_closes_older_segments_and_keeps_ahead_ones() -> None:
    channel = Channel("c")
    publish(channel, 0)
    stuck = channel.for_write(1)  # written to, never finished
    stuck.write(b"partial")
    ahead = channel.for_read(3)  # nothing there yet
    channel.reset_before(2)
    assert stuck.closed
    assert ahead.segment is None or not ahead.segment.closed


def test_first_byte_moves_the_live_edge_even_backwards() -> None:
    channel = Channel("c")
    publish(channel, 0)
    publish(channel, 1)
    channel.started(0)  # a publisher restarting at 0
    assert channel.next_write == 1


def test_given_up_segment_moves_the_edge_only_forwards() -> None:
    channel = Channel("c")
    channel.given_up(0)
    assert channel.next_write == 1
    publish(channel, 3)
    channel.given_up(1)
    assert channel.next_write == 4


def test_segment_over_its_limit_is_aborted() -> None:
    segment = Segment(0, max_bytes=10)
    segment.write(b"12345")
    with pytest.raises(SegmentFullError):
        segment.write(b"1234567")
    assert segment.closed and segment.aborted and segment.data() == b"12345"
    segment.write(b"more")  # dropped
    assert segment.size == 5


def test_readers_get_bytes_while_the_segment_is_written() -> None:
    async def scenario() -> tuple[list[bytes], list[bytes]]:
        segment = Segment(0)
        early: list[bytes] = []
        got_first = asyncio.Event()

        async def read_early() -> None:
            async for chunk in segment.chunks():
                early.append(chunk)
                got_first.set()

        reader = asyncio.ensure_future(read_early())
        segment.write(b"a")
        await asyncio.wait_for(got_first.wait(), 5)  # before the segment ends
        assert not segment.closed
        segment.write(b"b")
        late = [chunk async for chunk in _until_closed(segment, after=b"c")]
        await asyncio.wait_for(reader, 5)
        return early, late

    early, late = asyncio.run(scenario())
    assert early == [b"a", b"b", b"c"]
    assert late == [b"a", b"b", b"c"]  # a late reader starts from the first byte


async def _until_closed(segment: Segment, after: bytes) -> AsyncIterator[bytes]:
    segment.write(after)
    segment.close()
    async for chunk in segment.chunks():
        yield chunk


def test_registry_keeps_mime_type_and_limits_channels() -> None:
    registry = ChannelRegistry(max_channels=2)
    registry.create("a", "video/MP2T")
    assert registry.create("a", "application/json").mime_type == "video/MP2T"
    registry.create("b")
    with pytest.raises(TooManyChannelsError):
        registry.create("c")
    assert registry.delete("a") and not registry.delete("a")


def test_sweep_deletes_idle_channels_but_not_internal_ones() -> None:
    now = [100.0]
    registry = ChannelRegistry(clock=lambda: now[0])
    idle = registry.create("idle")
    registry.create("_changes")
    busy = registry.create("busy")
    now[0] += 10
    publish(busy, 0)
    now[0] += 5
    assert registry.sweep(idle_timeout=12) == ["idle"]
    assert idle.closed and registry.names() == ["_changes", "busy"]
