"""WHIP ingest and WHEP playback routes, in one process, on loopback UDP and HTTP.

The routes run under uvicorn in the test's event loop; aiortc clients publish numbered frames and play them
back. The live sessions behind the routes are an in-test stand-in (``EchoSessions``): each published segment
is handed straight back as output, the way the ``noop`` live pipeline would. It stands in only for the
orchestrator and runner so that these route checks stay fast; tests/integration/test_live_webrtc.py runs the
same clients through a real gateway, orchestrator and live runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import aiohttp
import av
import pytest
import uvicorn
from aiortc import AudioStreamTrack
from starlette.applications import Starlette

from live_webrtc_clients import NumberedTrack, close_peers, publish, view
from lpnode.errors import UnavailableError
from lpnode.gateway.live.webrtc_routes import WebRtcRoutes
from lpnode.gateway.live.whep import PlaybackClock

T = TypeVar("T")


class EchoSession:
    """A live session whose output is its input (a stand-in for orchestrator + noop runner)."""

    def __init__(self, stream: str, model_id: str, params: dict[str, Any]) -> None:
        self.stream, self.model_id, self.params = stream, model_id, params
        self.segments: list[bytes] = []
        self.stopped = asyncio.Event()
        self._readers: list[asyncio.Queue[bytes | None]] = []

    @property
    def ended(self) -> bool:
        return self.stopped.is_set()

    def publish(self, segment: bytes) -> None:
        self.segments.append(segment)
        for reader in self._readers:
            reader.put_nowait(segment)

    async def output(self) -> AsyncIterator[bytes]:
        reader: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._readers.append(reader)
        while (segment := await reader.get()) is not None:
            yield segment

    async def stop(self) -> None:
        self.stopped.set()
        for reader in self._readers:
            reader.put_nowait(None)


class EchoSessions:
    def __init__(self) -> None:
        self.sessions: dict[str, EchoSession] = {}
        self.refuse: str | None = None

    async def start(self, stream: str, model_id: str, params: dict[str, Any], *, stream_id: str = "") -> EchoSession:
        if self.refuse:
            raise UnavailableError(self.refuse)
        self.sessions[stream] = EchoSession(stream, model_id, params)
        return self.sessions[stream]

    def get(self, stream: str) -> EchoSession | None:
        session = self.sessions.get(stream)
        return None if session is None or session.ended else session


class Server:
    def __init__(self, routes: WebRtcRoutes) -> None:
        self.routes = routes
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}/live/video-to-video"
        config = uvicorn.Config(Starlette(routes=routes.routes()), loop="none", log_config=None, lifespan="off")
        self.server = uvicorn.Server(config)
        self.server.capture_signals = _no_signals  # type: ignore[method-assign]
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Server:
        self.task = asyncio.ensure_future(self.server.serve(sockets=[self.sock]))
        while not self.server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.routes.close()
        self.server.should_exit = True
        assert self.task is not None
        await self.task


def _no_signals() -> Any:
    return contextlib.nullcontext()  # the test owns the loop; uvicorn must not take SIGINT/SIGTERM


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        try:
            return await asyncio.wait_for(coro, 60)
        finally:
            await close_peers()

    return asyncio.run(bounded())


def test_whip_video_and_audio_come_back_over_whep_and_delete_stops_the_stream() -> None:
    async def scenario() -> None:
        sessions = EchoSessions()
        routes = WebRtcRoutes(lambda: sessions)
        async with Server(routes) as server, aiohttp.ClientSession() as http:
            track = NumberedTrack()
            url = f"{server.base}/cam/whip?pipeline=noop&params=%7B%22prompt%22%3A%22a%20cat%22%7D"
            published = await publish(http, url, track, audio=AudioStreamTrack())
            assert published.status == 201, published.body
            assert published.headers["Content-Type"].startswith("application/sdp")
            assert published.body.startswith("v=0") and "a=candidate:" in published.body
            location = published.headers["Location"]
            assert location.startswith(f"{server.base}/cam/whip/")
            assert published.headers["ETag"].startswith('"')
            assert published.headers["Livepeer-Playback-URL"] == f"{server.base}/cam-out/whep"
            assert "Livepeer-Playback-URL" in published.headers["Access-Control-Expose-Headers"]
            session = sessions.sessions["cam"]
            assert (session.model_id, session.params) == ("noop", {"prompt": "a cat"})

            viewer = await view(http, published.headers["Livepeer-Playback-URL"], audio=True)
            assert viewer.answered.status == 201, viewer.answered.body
            numbers = await viewer.collect(30, timeout=30)
            assert len(numbers) >= 30, f"only {len(numbers)} frames arrived"
            assert numbers == sorted(numbers), "frames must arrive in order"
            assert numbers[0] > 0 and numbers[-1] <= track.sent

            assert viewer.audio_frames > 0, "the microphone's audio must be played back too"
            for segment in session.segments:  # every input segment decodes alone and starts with an IDR
                with av.open(io.BytesIO(segment), "r", format="mpegts") as container:
                    assert container.streams.audio[0].codec_context.name == "aac"
                    first = next(container.decode(video=0))
                    assert first.key_frame

            async with http.delete(location) as deleted:
                assert deleted.status == 200
            await asyncio.wait_for(session.stopped.wait(), 10)
            await asyncio.wait_for(viewer.task or asyncio.sleep(0), 10)  # the viewer's track ends
            async with http.delete(location) as again:
                assert again.status == 404
            for _ in range(100):  # the viewer is forgotten once its peer connection has closed
                if not routes.viewers:
                    break
                await asyncio.sleep(0.1)
            assert routes.ingests == {} and routes.viewers == {}

    run(scenario())


def test_protocol_errors_get_clear_statuses() -> None:
    async def scenario() -> None:
        sessions = EchoSessions()
        routes = WebRtcRoutes(lambda: sessions, max_viewers=1)
        async with Server(routes) as server, aiohttp.ClientSession() as http:
            whip = f"{server.base}/cam/whip"
            async with http.post(whip, data=b"v=0", headers={"Content-Type": "application/json"}) as r:
                assert r.status == 415 and "application/sdp" in (await r.json())["error"]["message"]
            async with http.head(whip) as r:
                assert r.status == 405
            async with http.options(whip) as r:
                assert r.status == 204 and r.headers["Accept-Post"] == "application/sdp"
                assert r.headers["Access-Control-Allow-Origin"] == "*"
            async with http.get(whip) as r:
                assert r.status == 405
            async with http.post(whip, data=b"hello", headers={"Content-Type": "application/sdp"}) as r:
                assert r.status == 400
            async with http.post(whip, data=b"v=0\n" * 20_000, headers={"Content-Type": "application/sdp"}) as r:
                assert r.status == 413
            for bad_name in ("bad%20name", "cam-out"):
                async with http.post(f"{server.base}/{bad_name}/whip", data=b"v=0") as r:
                    assert r.status == 400
            bad_params = await publish(http, f"{whip}?params=%5B1%5D", NumberedTrack())
            assert bad_params.status == 400 and "JSON object" in bad_params.body
            sessions.refuse = "no orchestrator offers this live pipeline"
            refused = await publish(http, whip, NumberedTrack())
            assert refused.status == 503 and "no orchestrator" in refused.body
            sessions.refuse = None

            missing = await view(http, f"{server.base}/nobody/whep")
            assert missing.answered.status == 404
            async with http.patch(f"{server.base}/cam/whep") as r:
                assert r.status == 501

            first = await publish(http, whip, NumberedTrack())
            assert first.status == 201, first.body
            second = await publish(http, whip, NumberedTrack())
            assert second.status == 409
            sending = await publish(http, f"{server.base}/cam/whep", NumberedTrack())  # an offer that only sends
            assert sending.status == 400 and "receive video" in sending.body
            viewer = await view(http, f"{server.base}/cam/whep")
            assert viewer.answered.status == 201
            over = await view(http, f"{server.base}/cam-1234-out/whep")
            assert over.answered.status == 503 and over.answered.headers.get("Retry-After") == "10"
            async with http.delete(viewer.answered.headers["Location"]) as r:
                assert r.status == 200
            assert routes.viewers == {}

            assert first.pc is not None
            await first.pc.close()  # the publisher goes away without a DELETE: the stream stops
            await asyncio.wait_for(sessions.sessions["cam"].stopped.wait(), 20)

    run(scenario())


@pytest.mark.parametrize("content_type", [None, "text/plain"])
def test_whep_requires_sdp(content_type: str | None) -> None:
    async def scenario() -> None:
        sessions = EchoSessions()
        async with Server(WebRtcRoutes(lambda: sessions)) as server, aiohttp.ClientSession() as http:
            headers = {"Content-Type": content_type} if content_type else {}
            async with http.post(f"{server.base}/cam/whep", data=b"v=0", headers=headers) as r:
                assert r.status == 415

    run(scenario())


def test_the_playback_clock_keeps_pace_and_reanchors_on_lateness_and_jumps() -> None:
    clock = PlaybackClock()
    first = clock.due(10.0)
    assert clock.due(10.5) == pytest.approx(first + 0.5)  # later frames play later by their PTS distance
    assert clock.due(11.0) == pytest.approx(first + 1.0)
    jumped = clock.due(500.0)  # an orchestrator swap restarted the timestamps: play now, not in 489 s
    assert jumped - first < 5
    late = clock.due(499.0)  # a frame a second in the past is shown now rather than skipped in a rush
    assert late >= jumped
