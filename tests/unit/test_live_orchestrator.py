"""The orchestrator's ``POST /live-video-to-video``: credentials, capacity, the four trickle channels, the call to
the runner, and the end of a stream.

The route runs in-process over a real runner pool. The runner is a stand-in served on loopback that speaks the
live runner's HTTP contract (``/health``, ``/version``, ``/live-video-to-video``) and records what it was asked,
so the test can also make it fail; the real live runner is exercised end to end in
tests/integration/test_live_path.py.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import httpx
from aiohttp import web
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.routing import Route

from lpnode.orchestrator.ai_models import AIModelConfig
from lpnode.orchestrator.info import PriceBook, offers
from lpnode.orchestrator.live import LiveRoute, LiveTimings
from lpnode.orchestrator.pool import PoolTimings, ProcessSettings, RunnerPool
from lpnode.protocol.auth_token import AuthTokens
from lpnode.protocol.capabilities import build_capabilities
from lpnode.protocol.job_hop import encode_segment as segment_header
from lpnode.trickle import TrickleServer

T = TypeVar("T")
PIPELINE = "live-video-to-video"


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, 60)

    return asyncio.run(bounded())


class StandInRunner:
    """The live runner's HTTP contract, on loopback."""

    def __init__(self) -> None:
        self.state = "IDLE"
        self.calls: list[dict[str, Any]] = []
        self.fail_with = 0
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/version", self._version)
        app.router.add_post("/live-video-to-video", self._start)
        self.runner = web.AppRunner(app)

    async def __aenter__(self) -> StandInRunner:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": self.state})

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"pipeline": PIPELINE, "model_id": "noop", "version": "0.0.1"})

    async def _start(self, request: web.Request) -> web.Response:
        self.calls.append(await request.json())
        if self.fail_with:
            return web.Response(status=self.fail_with, text="pipeline exploded")
        self.state = "OK"
        return web.json_response({"publish_url": "", "subscribe_url": "", "control_url": ""})


def headers(tokens: AuthTokens, payment: str = "") -> dict[str, str]:
    return {"Livepeer-Segment": segment_header(tokens.issue(), PIPELINE, "noop"), "Livepeer-Payment": payment}


def test_live_route_checks_credentials_and_capacity_and_runs_a_stream_until_its_input_is_deleted(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with StandInRunner() as runner, aiohttp.ClientSession() as session:
            config = AIModelConfig(PIPELINE, "noop", url=runner.url, capacity=1, warm=True)
            timings = PoolTimings(health_interval=0.2, ready_poll=0.1)
            pool = RunnerPool([config], ProcessSettings(models_dir=tmp_path), tmp_path, timings=timings)
            assert await pool.start() == []
            tokens = AuthTokens()
            trickle = TrickleServer()
            prices = PriceBook([config])
            live = LiveRoute(
                pool, trickle, tokens, lambda: build_capabilities(offers(pool.snapshot(), prices)), lambda: session,
                "https://orch.example:8935", CollectorRegistry(), LiveTimings(poll=0.1, busy_grace=1.0, stop_wait=2.0),
            )  # fmt: skip
            app = Starlette(routes=[Route("/live-video-to-video", live.handle, methods=["POST"])])
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://o")
            body = {"model_id": "noop", "params": {"prompt": "x"}, "gateway_request_id": "r1", "stream_id": "s1"}

            answer = await client.post("/live-video-to-video", json=body, headers=headers(tokens, payment="%%%"))
            assert answer.status_code == 402
            answer = await client.post("/live-video-to-video", json=body)
            assert answer.status_code == 403 and "Livepeer-Segment" in answer.text
            answer = await client.post("/live-video-to-video", content=b"[1]", headers=headers(tokens))
            assert answer.status_code == 400

            answer = await client.post("/live-video-to-video", json=body, headers=headers(tokens))
            assert answer.status_code == 200, answer.text
            urls = answer.json()
            mid = urls["manifest_id"]
            base = "https://orch.example:8935/ai/trickle/"
            assert urls == {
                "publish_url": base + mid,
                "subscribe_url": base + mid + "-out",
                "control_url": base + mid + "-control",
                "events_url": base + mid + "-events",
                "manifest_id": mid,
            }
            mimes = {name: trickle.channels.get(name).mime_type for name in trickle.channels.names()}  # type: ignore[union-attr]
            assert mimes == {
                mid: "video/MP2T",
                mid + "-out": "video/MP2T",
                mid + "-control": "application/json",
                mid + "-events": "application/json",
            }
            (call,) = runner.calls
            assert call["subscribe_url"] == base + mid and call["publish_url"] == base + mid + "-out"
            assert call["params"] == {"prompt": "x"} and call["manifest_id"] == mid
            assert call["stream_id"] == "s1" and call["gateway_request_id"] == "r1" and call["model_id"] == "noop"
            assert pool.snapshot()[(PIPELINE, "noop")].in_use == 1
            assert [s["manifest_id"] for s in live.status()] == [mid]

            answer = await client.post("/live-video-to-video", json=body, headers=headers(tokens))
            assert answer.status_code == 503 and answer.text.strip() == "insufficient capacity"

            # The gateway stops: it deletes the input channel; the runner's input ends and it is IDLE again.
            trickle.delete_channel(mid)
            runner.state = "IDLE"
            for _ in range(100):
                if not live.streams and pool.snapshot()[(PIPELINE, "noop")].in_use == 0:
                    break
                await asyncio.sleep(0.05)
            assert live.status() == [] and trickle.channels.names() == []
            assert pool.snapshot()[(PIPELINE, "noop")].in_use == 0

            runner.fail_with = 500
            answer = await client.post("/live-video-to-video", json=body, headers=headers(tokens))
            assert answer.status_code == 500 and "pipeline exploded" in answer.text
            assert trickle.channels.names() == [] and pool.snapshot()[(PIPELINE, "noop")].in_use == 0
            runner.fail_with = 400  # the runner refuses the params: the caller's mistake, passed on as 400
            answer = await client.post("/live-video-to-video", json=body, headers=headers(tokens))
            assert answer.status_code == 400 and "pipeline exploded" in answer.text
            assert trickle.channels.names() == [] and pool.snapshot()[(PIPELINE, "noop")].in_use == 0

            await client.aclose()
            await live.close()
            await pool.close()

    run(main())
