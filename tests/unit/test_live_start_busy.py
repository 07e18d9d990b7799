"""A live start while every orchestrator is at capacity waits and tries again (a stream that just ended frees its
runner seconds later) instead of failing at once; a start that stays refused ends with the 503 after the wait.

The orchestrator is a small scripted ASGI app (a go-livepeer node cannot run here) behind the gateway's real
directory, selector, tries loop and transport.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from lpnode.errors import UnavailableError
from lpnode.gateway.directory import Directory
from lpnode.gateway.live.orch_start import OrchestratorStarter, StartRequest
from lpnode.gateway.selection import LatencySelector, Stats
from lpnode.gateway.settings import PriceCaps
from lpnode.gateway.transport import AsgiTransport
from lpnode.protocol.auth_token import AuthTokens
from lpnode.protocol.capabilities import ModelOffer, build_capabilities
from lpnode.protocol.lp_rpc_pb2 import OrchestratorInfo

URL = "http://orch.test:8935"
URLS = {
    "publish_url": f"{URL}/ai/trickle/abc",
    "subscribe_url": f"{URL}/ai/trickle/abc-out",
    "control_url": f"{URL}/ai/trickle/abc-control",
    "events_url": f"{URL}/ai/trickle/abc-events",
    "manifest_id": "abc",
}


class BusyOrchestrator:
    """Answers ``insufficient capacity`` to the first ``busy`` starts, then starts the stream."""

    def __init__(self, busy: int) -> None:
        self.busy = busy
        self.starts = 0
        self.tokens = AuthTokens()

        async def start(request: Request) -> Response:
            self.starts += 1
            await request.body()
            if self.starts <= self.busy:
                return PlainTextResponse("insufficient capacity\n", status_code=503)
            return JSONResponse(URLS)

        self.app = Starlette(routes=[Route("/live-video-to-video", start, methods=["POST"])])

    async def get_info(self, url: str, request: Any = None, timeout: float = 5.0) -> OrchestratorInfo:
        offers = [ModelOffer("live-video-to-video", "noop", warm=True, capacity=1, capacity_in_use=1)]
        return OrchestratorInfo(transcoder=URL, capabilities=build_capabilities(offers), auth_token=self.tokens.issue())


def start(orch: BusyOrchestrator, busy_wait: float) -> tuple[Any, float]:
    async def scenario() -> tuple[Any, float]:
        directory = Directory(orch, [URL])  # type: ignore[arg-type]
        await directory.refresh()
        async with aiohttp.ClientSession() as session:
            starter = OrchestratorStarter(
                directory, LatencySelector(), Stats(), PriceCaps(), session,
                transport=AsgiTransport({URL: orch.app}), busy_wait=busy_wait,
            )  # fmt: skip
            began = time.monotonic()
            try:
                result: Any = await starter.start(StartRequest("noop", {}, "stream", "request"))
            except UnavailableError as exc:
                result = exc
            return result, time.monotonic() - began

    return asyncio.run(scenario())


def test_a_start_while_every_runner_is_busy_waits_for_one_to_free() -> None:
    orch = BusyOrchestrator(busy=3)
    (offer, urls), _ = start(orch, busy_wait=10.0)
    assert offer.url == URL and urls.manifest_id == "abc"
    assert orch.starts == 4


@pytest.mark.parametrize("busy_wait", [0.0, 1.2])
def test_a_start_that_stays_refused_gets_the_503_after_the_wait(busy_wait: float) -> None:
    orch = BusyOrchestrator(busy=1000)
    result, took = start(orch, busy_wait=busy_wait)
    assert isinstance(result, UnavailableError) and "insufficient capacity" in str(result)
    assert took < busy_wait + 1.0
    assert orch.starts >= 1 + int(busy_wait / 0.5) - 1
