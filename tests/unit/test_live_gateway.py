"""The gateway's live stream pieces: the output ring, the swap and stall rules, the publish-drop rule and the
media loops against a real trickle server on loopback, and a session's status."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import pytest
import uvicorn

from lpnode.errors import BadRequestError, ConfigError
from lpnode.gateway.live import LiveSessions, LiveSettings
from lpnode.gateway.live.media_loops import Attempt
from lpnode.gateway.live.orch_start import LiveUrls
from lpnode.gateway.live.policy import StallWatch, SwapBudget
from lpnode.gateway.live.ring import OutputRing, OutputSegment
from lpnode.gateway.live.sessions import LiveSession
from lpnode.trickle import TrickleServer, TrickleSubscriber

T = TypeVar("T")
STEP = 10.0


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, 30)

    return asyncio.run(bounded())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the output ring --------------------------------------------------------------------------------------


def test_ring_followers_start_at_the_live_edge_and_read_every_later_segment_in_order() -> None:
    async def main() -> None:
        ring = OutputRing(max_segments=8)
        ring.push(b"before")
        readers = [asyncio.ensure_future(_collect(ring.follow())) for _ in range(2)]
        await asyncio.sleep(0)
        for n in range(3):
            ring.push(b"s%d" % n)
            await asyncio.sleep(0)
        ring.close()
        got = await asyncio.wait_for(asyncio.gather(*readers), STEP)
        assert got == [[b"s0", b"s1", b"s2"]] * 2

    run(main())


def test_output_bytes_reach_followers_before_their_segment_ends() -> None:
    async def main() -> None:
        ring = OutputRing()
        streamed = ring.follow_bytes()
        whole = ring.follow()
        first = asyncio.ensure_future(anext(streamed))
        complete = asyncio.ensure_future(anext(whole))
        await asyncio.sleep(0)
        segment = ring.start()
        segment.append(b"head")
        assert await asyncio.wait_for(first, STEP) == b"head"  # the segment is still open
        assert not complete.done()
        segment.append(b"tail")
        segment.finish()
        assert await asyncio.wait_for(complete, STEP) == b"headtail"
        assert await asyncio.wait_for(anext(streamed), STEP) == b"tail"
        cut = ring.start()
        cut.append(b"partial")
        ring.close()  # an open segment is cut off: whole-segment readers skip it and nobody waits
        assert await asyncio.wait_for(_collect(whole), STEP) == []

    run(main())


def test_ring_is_bounded_and_a_lagging_follower_skips_to_the_oldest_segment_held() -> None:
    ring = OutputRing(max_segments=3, max_bytes=10_000)
    follower = ring.follower()
    for n in range(6):
        ring.push(bytes([n]) * 10)
    assert ring.pushed == 6 and ring.held_bytes == 30
    taken = ring.take(follower)
    assert taken is not None and taken.data == bytes([3]) * 10
    assert follower.skipped == 3
    by_bytes = OutputRing(max_segments=10, max_bytes=25)
    for n in range(4):
        by_bytes.push(bytes([n]) * 10)
    assert by_bytes.held_bytes == 20
    huge = OutputRing(max_segments=10, max_bytes=5)
    huge.push(b"x" * 100)  # the newest segment is kept whatever its size
    assert huge.take(huge.follower()) is None and huge.held_bytes == 100


def test_closing_the_ring_ends_its_followers() -> None:
    async def main() -> list[bytes]:
        ring = OutputRing()
        reader = asyncio.ensure_future(_collect(ring.follow()))
        await asyncio.sleep(0)
        ring.push(b"last")
        ring.close()
        ring.push(b"ignored")
        return await asyncio.wait_for(reader, STEP)

    assert run(main()) == [b"last"]


async def _collect(segments: AsyncIterator[bytes]) -> list[bytes]:
    return [s async for s in segments]


# --- swap and stall rules ---------------------------------------------------------------------------------


def test_at_most_two_swaps_in_three_minutes() -> None:
    clock = Clock()
    budget = SwapBudget(2, 180.0, clock)
    assert budget.take()
    clock.now += 100
    assert budget.take()
    clock.now += 79
    assert not budget.take()
    clock.now += 2  # the first swap is now older than the window, the second is not
    assert budget.take()
    assert not budget.take()


def test_output_gap_counts_only_while_input_is_recent_and_event_gap_always() -> None:
    clock = Clock()
    watch = StallWatch(output_gap=30, event_gap=30, clock=clock)
    clock.now += 20
    watch.event()
    assert watch.problem(last_input=clock.now) is None
    clock.now += 11  # 31 s without output, input still arriving
    problem = watch.problem(last_input=clock.now - 1)
    assert problem is not None and "segments" in problem
    assert watch.problem(last_input=clock.now - 40) is None  # input stopped: no output is expected
    clock.now += 20  # 31 s since the last event
    problem = watch.problem(last_input=clock.now - 40)
    assert problem is not None and "events" in problem


def test_settings_come_from_lpnode_live_variables() -> None:
    settings = LiveSettings.from_env({"LPNODE_LIVE_OUTPUT_GAP": "2.5", "LPNODE_LIVE_MAX_SWAPS": "4"})
    assert settings.output_gap == 2.5 and settings.max_swaps == 4 and settings.event_gap == 30.0
    with pytest.raises(ConfigError, match="LPNODE_LIVE_EVENT_GAP"):
        LiveSettings.from_env({"LPNODE_LIVE_EVENT_GAP": "soon"})
    with pytest.raises(ConfigError, match="positive"):
        LiveSettings.from_env({"LPNODE_LIVE_MAX_IN_FLIGHT": "0"})


# --- media loops against a real trickle server ------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.last_input = asyncio.get_running_loop().time()
        self.ring = OutputRing()
        self.events: list[dict[str, Any]] = []
        self.drops = 0

    @property
    def outputs(self) -> list[bytes]:
        """The complete output segments received so far."""
        return [s.data for _, s in self.ring._items if s.done and not s.cut and s.size]

    def output_start(self) -> OutputSegment:
        return self.ring.start()

    def event(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def dropped(self, count: int = 1) -> None:
        self.drops += count


class TrickleOnLoopback:
    """A trickle server (the orchestrator's kind, channels made in-process) served by uvicorn on loopback."""

    def __init__(self) -> None:
        self.trickle = TrickleServer()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.trickle, host="127.0.0.1", port=self.port, log_config=None, lifespan="off")
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> TrickleOnLoopback:
        self.task = asyncio.ensure_future(self.server.serve())
        while not self.server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
            await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.trickle.close()
        self.server.should_exit = True
        assert self.task is not None
        await asyncio.wait_for(self.task, STEP)

    def urls(self, mid: str) -> LiveUrls:
        for suffix, mime in (("", "video/MP2T"), ("-out", "video/MP2T"), ("-control", "application/json"),
                             ("-events", "application/json")):  # fmt: skip
            self.trickle.create_channel(mid + suffix, mime)
        base = f"http://127.0.0.1:{self.port}/{mid}"
        return LiveUrls("http://orch", base, base + "-out", base + "-control", base + "-events", mid)


def test_publish_sends_at_most_three_segments_at_once_dropping_the_rest_in_order() -> None:
    async def main() -> None:
        async with TrickleOnLoopback() as server:
            urls = server.urls("m1")
            sink = Sink()
            attempt = Attempt(urls, sink, LiveSettings())
            # No await between the calls: the first three are still being sent when the others arrive.
            accepted = [attempt.publish(b"segment %d" % n) for n in range(5)]
            assert accepted == [True, True, True, False, False]
            assert attempt.in_flight == 3
            async with TrickleSubscriber(urls.publish_url, start_seq=0) as sub:
                got = []
                for _ in range(3):
                    segment = await asyncio.wait_for(sub.next(), STEP)
                    assert segment is not None
                    got.append(await segment.read())
            assert got == [b"segment 0", b"segment 1", b"segment 2"]
            assert attempt.publish(b"segment 5")  # room again once they were sent
            await attempt.close()
            assert server.trickle.channels.get("m1") is None  # closing deleted the input channel

    run(main())


def test_output_events_and_control_flow_and_a_deleted_channel_fails_the_attempt() -> None:
    async def main() -> None:
        async with TrickleOnLoopback() as server:
            urls = server.urls("m2")
            sink = Sink()
            attempt = Attempt(urls, sink, LiveSettings(keepalive=0.2))
            attempt.start()
            control = TrickleSubscriber(urls.control_url, start_seq=0)
            await attempt.send_control(b'{"prompt": "x"}')
            first = await asyncio.wait_for(control.next(), STEP)
            assert first is not None and await first.read() == b'{"prompt": "x"}'
            keepalive = await asyncio.wait_for(control.next(), STEP)
            assert keepalive is not None and await keepalive.read() == b'{"keep":"alive"}'
            await control.close()
            from lpnode.trickle import TricklePublisher

            async with TricklePublisher(urls.subscribe_url, delete_on_close=False) as out:
                await out.write(b"out 0")
                await out.write(b"out 1")
            async with TricklePublisher(urls.events_url, "application/json", delete_on_close=False) as events:
                await events.write(json.dumps({"event": {"type": "status", "state": "ONLINE"}}).encode())
            for _ in range(200):
                if len(sink.outputs) == 2 and sink.events:
                    break
                await asyncio.sleep(0.02)
            assert sink.outputs == [b"out 0", b"out 1"]
            assert sink.events == [{"event": {"type": "status", "state": "ONLINE"}}]
            server.trickle.delete_channel("m2-out")
            reason = await asyncio.wait_for(attempt.failed(), STEP)
            assert "output channel" in reason
            await attempt.close()

    run(main())


# --- a session's own state --------------------------------------------------------------------------------


def test_status_keeps_last_params_the_runner_sends_only_once() -> None:
    async def main() -> None:
        session = LiveSession(LiveSessions(LiveSettings()), "cam", "noop", {})
        session.event({"event": {"type": "status", "inference_status": {"last_params": {"p": 1}}},
                       "queue_event_type": "ai_stream_events"})  # fmt: skip
        session.event({"type": "status", "state": "ONLINE", "inference_status": {"last_params": None, "fps": 24}})
        status = session.status()
        assert status["state"] == "ONLINE"
        assert status["inference_status"] == {"last_params": {"p": 1}, "fps": 24}
        assert status["gateway_status"]["stream"] == "cam" and status["gateway_status"]["state"] == "starting"
        session.publish(b"no orchestrator yet")
        assert session.status()["gateway_status"]["input_dropped"] == 1
        with pytest.raises(BadRequestError):
            await session.update(b"[1, 2]")
        with pytest.raises(BadRequestError):
            await session.update(b"not json")
        await session.update(b'{"prompt": "kept for the next orchestrator"}')
        assert session.last_params == b'{"prompt": "kept for the next orchestrator"}'
        await session.stop()
        assert session.ended and session.status()["gateway_status"]["state"] == "ended"
        assert [s async for s in session.output()] == []

    run(main())
