"""lpnode runners as Live Runner apps, end to end on loopback: ``lpnode runner ... --live-runner-orch`` registers
by heartbeat with a real ``lpnode orchestrator -useLiveRunners`` and is called only through the orchestrator.

- a batch pipeline (tiny text-to-image) is a single-shot app: listed in ``GET /discovery`` once (and only once)
  its model is loaded, ``POST /apps/<id>/app/text-to-image`` answers the ai-runner JSON, and SIGTERM
  unregisters it at once (well before the 20 s TTL);
- a live pipeline (``noop``) is a persistent app: a reserved session starts a stream on trickle channels the
  orchestrator holds, frames go in and come out through them, and stopping the session releases it.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Awaitable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import av
import numpy as np
import pytest
import requests

from lpnode.trickle import TricklePublisher, TrickleSubscriber
from procs import OrchestratorProcess, RunnerProcess, child_env

T = TypeVar("T")
SECRET = "runner-app-secret"
MODEL = "lpnode/tiny-text-to-image"
FPS = 24


def run(coro: Awaitable[T], limit: float = 60) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, limit)

    return asyncio.run(bounded())


@pytest.fixture(scope="module")
def orchestrator(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrchestratorProcess]:
    data = tmp_path_factory.mktemp("orch")
    node = OrchestratorProcess("", models_dir, data, "--orch-secret", SECRET, "-useLiveRunners")
    try:
        try:
            node.wait_ready(timeout=60)
        except AssertionError:
            if "unrecognized arguments" in node.log():
                pytest.skip("this orchestrator has no -useLiveRunners yet")
            raise
        yield node
    finally:
        node.stop()


def discovered(orch: OrchestratorProcess) -> list[dict[str, Any]]:
    answer = orch.get("/discovery", timeout=10)
    assert answer.status_code == 200, answer.text
    return [runner for entry in answer.json() for runner in entry.get("runners", [])]


def wait_listed(orch: OrchestratorProcess, app: str, runner: RunnerProcess, timeout: float = 90) -> dict[str, Any]:
    """The app's discovery entry once it is listed; by then the runner's /health must say it can serve."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert runner.proc.poll() is None, runner.log()
        listed = [r for r in discovered(orch) if r["app"] == app]
        if listed:
            assert runner.health() in {"IDLE", "OK"}, "listed while the runner could not serve"
            return listed[0]
        time.sleep(0.1)
    raise AssertionError(f"{app} never listed in discovery:\n{runner.log()}\n{orch.log()}")


def wait_unlisted(orch: OrchestratorProcess, app: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(r["app"] == app for r in discovered(orch)):
        assert time.monotonic() < deadline, f"{app} still listed after {timeout:g}s"
        time.sleep(0.1)


def as_app(orch: OrchestratorProcess) -> tuple[str, ...]:
    return ("--live-runner-orch", orch.base_url, "--orch-secret", SECRET)


def test_batch_pipeline_is_a_single_shot_app(orchestrator: OrchestratorProcess, start_runner: Any) -> None:
    runner: RunnerProcess = start_runner("text-to-image", MODEL, *as_app(orchestrator), "--runner-version", "9.9.9")
    app = f"text-to-image/{MODEL}"
    entry = wait_listed(orchestrator, app, runner)
    assert entry["mode"] == "single-shot"
    assert entry["version"] == "9.9.9"
    assert entry["capacity"] == 1 and entry["capacity_used"] == 0
    assert entry["url"].startswith(orchestrator.base_url + "/apps/runner_") and entry["url"].endswith("/app")
    assert "price_info" not in entry and "runner_url" not in entry  # off-chain; the runner stays private

    body = {"prompt": "a lighthouse", "seed": 7, "width": 64, "height": 64, "num_inference_steps": 2}
    answer = orchestrator.post(entry["url"].removeprefix(orchestrator.base_url) + "/text-to-image", json=body)
    assert answer.status_code == 200, answer.text
    images = answer.json()["images"]
    assert len(images) == 1 and images[0]["seed"] == 7 and images[0]["nsfw"] is False
    assert images[0]["url"].startswith("data:image/png;base64,")

    refused = orchestrator.post(entry["url"].removeprefix(orchestrator.base_url) + "/text-to-image", json={})
    assert refused.status_code == 422  # the runner's own answer to a bad body, passed through

    assert runner.stop() in (0, -15), runner.log()
    wait_unlisted(orchestrator, app, timeout=5)  # unregistered, not left to expire after the 20 s TTL
    assert "runner app unregistered" in runner.log()


def test_custom_pipeline_class_is_a_single_shot_app_under_its_own_name(
    orchestrator: OrchestratorProcess, tmp_path: Path
) -> None:
    tests = Path(__file__).parents[1]
    flags = ["--pipeline-class", "custom_pipelines.text_stats:WordCountPipeline", *as_app(orchestrator)]
    flags += ["--app-name", "acme/word-count", "--app-capacity", "3", "--app-price", "0.01/fixed"]
    runner = RunnerProcess(flags, tmp_path / "runner.log", env=child_env(PYTHONPATH=str(tests)))
    try:
        entry = wait_listed(orchestrator, "acme/word-count", runner)
        assert (entry["mode"], entry["capacity"]) == ("single-shot", 3)
        assert json.loads(entry["metadata"]) == {
            "pipeline": "word-count",
            "model_id": "word-count",
            "path": "/word-count",
        }
        path = entry["url"].removeprefix(orchestrator.base_url) + "/word-count"
        answer = orchestrator.post(path, json={"text": "cat owl cat", "top": 1})
        assert answer.status_code == 200, answer.text
        assert answer.json()["top"] == [["cat", 2]]
    finally:
        runner.stop()


# -- the live pipeline --------------------------------------------------------------------------------------


def input_segments(seconds: int, size: int = 64) -> list[bytes]:
    """``seconds`` MPEG-TS segments of FPS grey frames each, H.264, an IDR at the start of each."""
    segments = []
    for s in range(seconds):
        buffer = io.BytesIO()
        with av.open(buffer, mode="w", format="mpegts") as out:
            video = out.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "tune": "zerolatency"})
            video.width, video.height, video.pix_fmt = size, size, "yuv420p"
            video.codec_context.time_base = Fraction(1, 90000)
            for i in range(FPS):
                number = s * FPS + i
                frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), number % 256, np.uint8), format="rgb24")
                frame.pts, frame.time_base = number * (90000 // FPS), Fraction(1, 90000)
                out.mux(video.encode(frame))
            out.mux(video.encode(None))
        segments.append(buffer.getvalue())
    return segments


def count_frames(segments: list[bytes]) -> int:
    frames = 0
    for segment in segments:
        with av.open(io.BytesIO(segment), mode="r", format="mpegts") as container:
            for _ in container.decode(video=0):
                frames += 1
    return frames


async def stream_through(publish_url: str, subscribe_url: str) -> list[bytes]:
    """Publish a few seconds of video and read the output until its first segment is complete."""
    output: list[bytes] = []

    async def read() -> None:
        async with TrickleSubscriber(subscribe_url, start_seq=0) as sub:
            async for segment in sub:
                output.append(await segment.read())
                return

    reader = asyncio.create_task(read())
    async with TricklePublisher(publish_url, "video/MP2T", delete_on_close=False) as pub:
        for data in input_segments(4):
            if reader.done():
                break
            async with pub.segment() as seg:
                step = -(-len(data) // FPS)
                for offset in range(0, len(data), step):
                    await seg.write(data[offset : offset + step])
                    await asyncio.sleep(1 / FPS)
    await asyncio.wait_for(reader, 30)
    return output


def test_live_pipeline_is_a_persistent_app(orchestrator: OrchestratorProcess, start_runner: Any) -> None:
    runner: RunnerProcess = start_runner("live-video-to-video", "noop", *as_app(orchestrator))
    app = "live-video-to-video/noop"
    entry = wait_listed(orchestrator, app, runner)
    assert entry["mode"] == "persistent" and entry["capacity"] == 1
    reserve_path = entry["url"].removeprefix(orchestrator.base_url)
    assert reserve_path.endswith("/session")

    reserved = orchestrator.post(reserve_path)
    assert reserved.status_code == 200, reserved.text
    session = reserved.json()
    assert orchestrator.post(reserve_path).status_code == 503  # capacity 1: one stream at a time
    assert next(r for r in discovered(orchestrator) if r["app"] == app)["capacity_used"] == 1

    # without the session headers the orchestrator adds, the app route refuses
    direct = runner.post("/stream/start", json={})
    assert direct.status_code == 400 and "app_url" in direct.text

    started = requests.post(
        session["app_url"] + "/stream/start",
        json={"params": {"width": 64, "height": 64}},
        verify=orchestrator.verify,
        timeout=30,
    )
    assert started.status_code == 200, started.text
    urls = started.json()
    assert urls["session_id"] == session["session_id"]
    for key in ("publish_url", "subscribe_url", "control_url", "events_url"):
        assert urls[key].startswith(orchestrator.base_url + "/ai/trickle/" + session["session_id"] + "-"), urls
    runner.wait_status({"OK"}, timeout=20)

    output = run(stream_through(urls["publish_url"], urls["subscribe_url"]))
    assert count_frames(output) > 0

    stopped = requests.post(session["control_url"] + "/stop", verify=orchestrator.verify, timeout=10)
    assert stopped.status_code == 204, stopped.text
    runner.wait_status({"IDLE"}, timeout=20)  # the release reached the runner: its stream ended
    assert next(r for r in discovered(orchestrator) if r["app"] == app)["capacity_used"] == 0
    gone = requests.get(urls["subscribe_url"] + "/next", verify=orchestrator.verify, timeout=10)
    assert gone.status_code == 404  # the session's channels closed with it
    assert "session released" in runner.log() or "live stream stopping" in runner.log()
