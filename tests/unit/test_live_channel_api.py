"""Upstream's ``POST /live-video-to-video`` on the gateway: a client that speaks an orchestrator's live API gets
four trickle channels from the gateway, and its segments, params and events flow through a live session.

The gateway's live routes and a stand-in orchestrator (a trickle server whose "runner" answers each input
segment with ``processed:<segment>``) are served by uvicorn on loopback, in process; the orchestrator
selection is replaced by a starter that always picks it (selection has tests of its own)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Awaitable, Collection
from typing import Any, TypeVar

import aiohttp
import uvicorn
from livepeer_ai import Livepeer
from starlette.applications import Starlette
from starlette.routing import Mount

from lpnode.gateway.directory import Offer
from lpnode.gateway.live import LiveSessions, LiveSettings
from lpnode.gateway.live.channel_api import channel_segments
from lpnode.gateway.live.orch_start import LiveUrls, StartRequest
from lpnode.gateway.live.routes import LiveRoutes
from lpnode.trickle import TricklePublisher, TrickleServer, TrickleSubscriber

T = TypeVar("T")
STEP = 10.0


class StandInOrchestrator:
    """Starts streams on its own trickle server (mounted at ``/orch``) and processes their segments."""

    def __init__(self) -> None:
        self.trickle = TrickleServer()
        self.base = ""
        self.started: list[StartRequest] = []
        self.control: list[bytes] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, job: StartRequest, avoid: Collection[str] = ()) -> tuple[Offer, LiveUrls]:
        self.started.append(job)
        mid = f"orch{len(self.started)}"
        for suffix, mime in (("", "video/MP2T"), ("-out", "video/MP2T"), ("-control", "application/json"),
                             ("-events", "application/json")):  # fmt: skip
            self.trickle.create_channel(mid + suffix, mime)
        self._tasks += [asyncio.ensure_future(self._run(mid)), asyncio.ensure_future(self._read_control(mid))]
        offer = Offer(self.base, "live-video-to-video", job.model_id, True, 1, 0, None, self.base)
        url = f"{self.base}/orch/{mid}"
        return offer, LiveUrls(self.base, url, url + "-out", url + "-control", url + "-events", mid)

    async def _run(self, mid: str) -> None:
        async with TricklePublisher(f"{self.base}/orch/{mid}-events", "application/json") as events:
            await events.write(json.dumps({"event": {"type": "status", "state": "ONLINE"}}).encode())
            async with TricklePublisher(f"{self.base}/orch/{mid}-out", "video/MP2T") as out:
                channel = self.trickle.channels.get(mid)
                assert channel is not None
                async for segment in channel_segments(channel):
                    await out.write(b"processed:" + segment)

    async def _read_control(self, mid: str) -> None:
        channel = self.trickle.channels.get(mid + "-control")
        assert channel is not None
        async for message in channel_segments(channel):
            self.control.append(message)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.trickle.close()


async def next_segment(sub: TrickleSubscriber) -> bytes:
    segment = await asyncio.wait_for(sub.next(), STEP)
    assert segment is not None
    return await asyncio.wait_for(segment.read(), STEP)


async def eventually(check: Any) -> None:
    for _ in range(250):
        if check():
            return
        await asyncio.sleep(0.02)
    assert check()


async def scenario() -> None:
    orchestrator = StandInOrchestrator()
    live = LiveSessions(LiveSettings(keepalive=0.2))
    live._starter = orchestrator  # type: ignore[assignment]  # always this orchestrator
    app = Starlette(routes=[*LiveRoutes(live).routes(), Mount("/orch", app=orchestrator.trickle)])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    orchestrator.base = live.public_url = base
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
            await asyncio.sleep(0.01)
        async with aiohttp.ClientSession() as http:
            body = {"model_id": "noop", "params": {"prompt": "a cat"}, "subscribe_url": "", "publish_url": "",
                    "stream_id": "cam-1", "gateway_request_id": "req-1"}  # fmt: skip
            async with http.post(base + "/live-video-to-video", json=body) as answer:
                assert answer.status == 200, await answer.text()
                urls = await answer.json()
            async with http.post(base + "/live-video-to-video", data=b"[1]") as refused:
                assert refused.status == 400 and "JSON object" in (await refused.json())["error"]["message"]

        mid = urls["manifest_id"]
        assert len(mid) == 16 and urls["request_id"] == "req-1"
        assert urls["publish_url"] == f"{base}/ai/trickle/{mid}"
        assert (urls["subscribe_url"], urls["control_url"], urls["events_url"]) == tuple(
            f"{base}/ai/trickle/{mid}{suffix}" for suffix in ("-out", "-control", "-events")
        )
        [job] = orchestrator.started
        assert (job.model_id, job.params, job.stream_id) == ("noop", {"prompt": "a cat"}, "cam-1")

        output = TrickleSubscriber(urls["subscribe_url"], start_seq=-1)
        events = TrickleSubscriber(urls["events_url"], start_seq=0)
        async with TricklePublisher(urls["publish_url"], "video/MP2T") as publisher:
            first = asyncio.ensure_future(next_segment(output))
            await asyncio.sleep(0.1)
            await publisher.write(b"segment 0")
            assert await first == b"processed:segment 0"
            await publisher.write(b"segment 1")
            assert await next_segment(output) == b"processed:segment 1"

            event = json.loads(await next_segment(events))
            assert event == {"event": {"type": "status", "state": "ONLINE"}}

            async with TricklePublisher(urls["control_url"], "application/json", delete_on_close=False) as control:
                await control.write(b'{"keep":"alive"}')  # ignored, as a runner ignores it
                await control.write(b'{"prompt": "a dog"}')
            await eventually(lambda: b'{"prompt": "a dog"}' in orchestrator.control)
            status = live.get(mid)
            assert status is not None and status.last_params == b'{"prompt": "a dog"}'
        # Leaving the publisher deleted the input channel: the stream stops and its channels go.
        await output.close()
        await events.close()
        session = live.get(mid)
        assert session is not None
        await eventually(lambda: session.ended)
        assert session.status()["gateway_status"]["stream_id"] == "cam-1"
        assert all(live.trickle.channels.get(mid + s) is None for s in ("", "-out", "-control", "-events"))

        # Livepeer's own SDK starts a stream the same way and reads the answer.
        async with Livepeer(http_bearer="none", server_url=base) as sdk:
            res = await sdk.generate.live_video_to_video_async(
                request={"subscribe_url": "", "publish_url": "", "model_id": "noop", "params": {}}
            )
        answer = res.live_video_to_video_response
        assert answer is not None and answer.publish_url.startswith(f"{base}/ai/trickle/")
        assert answer.subscribe_url == answer.publish_url + "-out"
        assert answer.control_url == answer.publish_url + "-control"
    finally:
        await live.close()
        await orchestrator.close()
        server.should_exit = True
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(serving, STEP)
        sock.close()


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, 30)

    return asyncio.run(bounded())


def test_upstream_live_start_gives_trickle_channels_that_reach_the_stream() -> None:
    run(scenario())
