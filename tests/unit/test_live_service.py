"""The live runner's service between streams, driven by a made-up clock (no sleeping, no pipeline process).

The pipeline process and the stream's trickle loops are stand-ins: what is under test is the service's
monitor (:meth:`LiveService._check`) deciding from the state machine whether a stream goes on.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lpnode.live import service as service_module
from lpnode.live.registry import builtin_pipeline_spec
from lpnode.live.service import LiveService
from lpnode.live.status import PipelineState
from lpnode.live.streamer import StreamRequest

T0 = 1_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class FakeProcess:
    """A loaded pipeline process that never fails."""

    ready = True
    logs: tuple[str, ...] = ()

    def alive(self) -> bool:
        return True

    def drain(self) -> list[tuple[float, str]]:
        return []

    def update_params(self, params: dict[str, Any], request_id: str) -> None:
        pass

    def stop(self, timeout: float = 0) -> None:
        pass


class FakeStreamer:
    """Records whether the service stopped it; feeds the tracker nothing by itself."""

    def __init__(self, request: StreamRequest, key: str, width: int, height: int, service: LiveService) -> None:
        self.request = request
        self.key = key
        self.service = service
        self.stopped_because = ""

    def start(self) -> None:
        pass

    async def stop(self, reason: str) -> None:
        self.stopped_because = reason
        self.service.tracker.stream_stopped()

    def emit(self, event: dict[str, Any]) -> None:
        pass

    def emit_error(self, message: str) -> None:
        pass

    def status_soon(self) -> None:
        pass


@pytest.fixture
def live(monkeypatch: pytest.MonkeyPatch) -> tuple[LiveService, FakeClock]:
    monkeypatch.setattr(service_module, "Streamer", FakeStreamer)
    spec = builtin_pipeline_spec("noop")
    assert spec is not None
    clock = FakeClock()
    svc = LiveService(spec, clock=clock)
    svc.process = FakeProcess()  # type: ignore[assignment]
    return svc, clock


def request(name: str) -> StreamRequest:
    return StreamRequest(subscribe_url=f"http://in/{name}", publish_url=f"http://out/{name}", request_id=name)


async def stream_for(svc: LiveService, clock: FakeClock, name: str, seconds: int) -> FakeStreamer:
    """Start a stream and run it for ``seconds`` at 24 fps in and out, the monitor ticking every second."""
    await svc.start_stream(request(name), {})
    streamer = svc.streamer
    assert isinstance(streamer, FakeStreamer)
    for _ in range(seconds):
        for i in range(24):
            svc.tracker.input_frame(clock.now + i / 24)
            svc.tracker.output_frame(clock.now + i / 24 + 0.01)
        clock.now += 1
        await svc._check()
    return streamer


def test_a_stream_started_minutes_after_the_last_one_keeps_running(live: tuple[LiveService, FakeClock]) -> None:
    asyncio.run(asyncio.wait_for(second_stream_after_two_quiet_minutes(*live), 10))


async def second_stream_after_two_quiet_minutes(svc: LiveService, clock: FakeClock) -> None:
    await svc._check()  # the monitor sees the process ready
    first = await stream_for(svc, clock, "first", 5)
    await svc.stream_ended(first, "input ended")
    clock.now += 120  # two quiet minutes: past both the 60 s stop and the 90 s ERROR of rule 4
    await svc._check()
    assert svc.tracker.state is PipelineState.OFFLINE

    await svc.start_stream(request("second"), {})
    second = svc.streamer
    assert isinstance(second, FakeStreamer)
    clock.now += 1  # the monitor's first tick, before the new stream's first segment arrives
    await svc._check()

    assert svc.streamer is second and second.stopped_because == ""
    assert svc.tracker.state is not PipelineState.ERROR and svc.health() == "OK"
    assert svc.tracker.restart_count == 0


def test_a_new_stream_without_input_stops_60_s_after_its_own_start(live: tuple[LiveService, FakeClock]) -> None:
    asyncio.run(asyncio.wait_for(second_stream_without_input(*live), 10))


async def second_stream_without_input(svc: LiveService, clock: FakeClock) -> None:
    await svc._check()
    first = await stream_for(svc, clock, "first", 3)
    await svc.stream_ended(first, "input ended")
    clock.now += 300
    await svc.start_stream(request("second"), {})
    second = svc.streamer
    assert isinstance(second, FakeStreamer)
    for _ in range(59):
        clock.now += 1
        await svc._check()
    assert svc.streamer is second  # 59 s without input: still waiting for it
    clock.now += 2
    await svc._check()
    assert second.stopped_because == "no input for 60 s" and svc.streamer is None
    assert svc.tracker.state is not PipelineState.ERROR and svc.tracker.restart_count == 0
