"""WebRTC in and out of a live stream, end to end: a WHIP client → gateway → orchestrator → `noop` live runner
→ gateway → a WHEP client, all real processes on loopback.

The WHIP client is aiortc sending 64×64 frames numbered in binary (see tests/live_webrtc_clients.py); the
WHEP client reads the numbers back from the frames it is sent. What a user sees is checked: frames arrive in
order and are the ones published, the stream shows in the gateway's status, and DELETE on the WHIP resource
ends the stream and frees the orchestrator's live runner. The webcam page is checked as served (CSP, assets,
the pipeline list) and, when Chromium and Playwright are installed, driven in a headless browser whose fake
camera is published and played back.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import pytest
import requests

from live_webrtc_clients import NumberedTrack, close_peers, publish, view
from procs import GatewayProcess, OrchestratorProcess

T = TypeVar("T")
PIPELINE = "live-video-to-video"
PARAMS = {"width": 64, "height": 64}
CHROMIUM = Path("/usr/bin/chromium")


def run(coro: Awaitable[T], timeout: float = 90) -> T:
    async def bounded() -> T:
        try:
            return await asyncio.wait_for(coro, timeout)
        finally:
            await close_peers()

    return asyncio.run(bounded())


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def live_runners(orch: OrchestratorProcess) -> list[dict[str, Any]]:
    runners: list[dict[str, Any]] = [r for m in orch.status() if m["pipeline"] == PIPELINE for r in m["runners"]]
    return runners


@pytest.fixture(scope="module")
def orchestrator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrchestratorProcess]:
    root = tmp_path_factory.mktemp("orch")
    entry = {"pipeline": PIPELINE, "model_id": "noop", "warm": True, "capacity": 1}
    (root / "aiModels.json").write_text(json.dumps([entry]))
    (root / "models").mkdir()
    node = OrchestratorProcess(root / "aiModels.json", root / "models", root / "data")
    try:
        node.wait_ready()
        wait_for(lambda: any(r["state"] == "IDLE" for r in live_runners(node)), 120, "a warm noop live runner")
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def gateway(orchestrator: OrchestratorProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    node = GatewayProcess(tmp_path_factory.mktemp("gw"), "--orch-addr", orchestrator.base_url)
    try:
        wait_for(lambda: "noop" in requests.get(f"{node.base_url}/live/models.json", timeout=5).json()["models"], 60,
                 "the gateway to see the orchestrator's noop live pipeline")  # fmt: skip
        yield node
    finally:
        node.stop()


def status(gateway: GatewayProcess, stream: str) -> dict[str, Any]:
    answer = requests.get(f"{gateway.base_url}/live/video-to-video/{stream}/status", timeout=10)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_whip_frames_come_back_over_whep_through_the_noop_runner(
    gateway: GatewayProcess, orchestrator: OrchestratorProcess
) -> None:
    stream = "webrtc-e2e"
    base = f"{gateway.base_url}/live/video-to-video/{stream}"

    async def scenario() -> None:
        async with aiohttp.ClientSession() as http:
            track = NumberedTrack(limit=30 * 60)
            published = await publish(http, f"{base}/whip?pipeline=noop&params={quote(json.dumps(PARAMS))}", track)
            assert published.status == 201, published.body
            playback = published.headers["Livepeer-Playback-URL"]
            assert playback == f"{gateway.base_url}/live/video-to-video/{stream}-out/whep"
            viewer = await view(http, playback)
            assert viewer.answered.status == 201, viewer.answered.body
            numbers = await viewer.collect(45, timeout=60)
            assert len(numbers) >= 45, f"only {len(numbers)} frames came back"
            assert numbers == sorted(numbers), "frames must come back in order"
            assert numbers[0] > 0 and numbers[-1] <= track.sent, "frames must be the ones published"

            gateway_status = (await asyncio.to_thread(status, gateway, stream))["gateway_status"]
            assert gateway_status["pipeline"] == "noop" and gateway_status["input_segments"] > 0

            async with http.delete(published.headers["Location"]) as deleted:
                assert deleted.status == 200
            await asyncio.wait_for(viewer.task or asyncio.sleep(0), 30)  # playback ends with the stream

    run(scenario())
    ended = wait_for(lambda: status(gateway, stream)["gateway_status"]["ended_at"], 30, "the stream to end")
    assert ended
    wait_for(lambda: all(r["state"] == "IDLE" for r in live_runners(orchestrator)), 60, "the live runner to be freed")


def test_the_webcam_page_is_served_offline_with_a_strict_csp(gateway: GatewayProcess) -> None:
    page = requests.get(f"{gateway.base_url}/live", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert '<script src="/live/assets/live.js"' in page.text and "http" not in page.text.split("<body>")[0]
    for asset in ("live.js", "live.css"):
        assert requests.get(f"{gateway.base_url}/live/assets/{asset}", timeout=10).status_code == 200
    assert requests.get(f"{gateway.base_url}/live/assets/nope.js", timeout=10).status_code == 404
    models = requests.get(f"{gateway.base_url}/live/models.json", timeout=10).json()
    assert models == {"models": ["noop"], "keys": False}


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (apt-get install chromium)")
def test_the_webcam_page_publishes_a_camera_and_plays_the_output(gateway: GatewayProcess) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    args = [
        "--no-sandbox",
        "--use-fake-ui-for-media-stream",  # allow the camera without a prompt
        "--use-fake-device-for-media-stream",  # Chromium's test pattern stands in for a camera
    ]
    problems: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            page = browser.new_context().new_page()
            page.set_default_timeout(30_000)

            def console(message: Any) -> None:
                if message.type == "error":
                    problems.append(f"console: {message.text}")

            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", console)
            page.goto(f"{gateway.base_url.replace('127.0.0.1', 'localhost')}/live")
            page.wait_for_function("() => document.getElementById('pipeline').value === 'noop'")
            page.fill("#stream", "browser-cam")
            page.fill("#params", json.dumps(PARAMS))
            page.keyboard.press("Tab")
            page.focus("#start")
            page.keyboard.press("Enter")  # the page works from the keyboard
            page.wait_for_function("() => document.getElementById('output').videoWidth > 0", timeout=60_000)
            played = page.evaluate("document.getElementById('output').videoWidth")
            assert played == 64
            running = status(gateway, "browser-cam")["gateway_status"]
            assert running["pipeline"] == "noop" and running["input_segments"] > 0
            page.fill("#params", '{"width": 64, "height": 64, "prompt": "a cat"}')
            page.click("#update")
            page.wait_for_function("() => document.getElementById('status').textContent === 'Params sent.'")
            page.click("#stop")
            page.wait_for_function("() => document.getElementById('status').textContent === 'Stopped.'")
        finally:
            browser.close()
    assert problems == []
    wait_for(lambda: status(gateway, "browser-cam")["gateway_status"]["ended_at"], 30, "the stream to end")
