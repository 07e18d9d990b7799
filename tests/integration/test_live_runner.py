"""The live runner, end to end on loopback: a standalone ``lpnode trickle serve`` carries the four channels
and ``lpnode runner --pipeline live-video-to-video`` serves them, as an orchestrator would have it do.

The input is a synthetic H.264 + AAC MPEG-TS stream made here with PyAV (24 fps, one segment per second,
each starting at an IDR). Every frame shows its number as four horizontal grey bands (base-4 digits), so
the output, read back from the output channel and decoded, says which input frame each output frame was.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import av
import numpy as np
import pytest
import requests

from lpnode.trickle import TricklePublisher, TrickleSubscriber
from procs import LPNODE, ChildProcess, RunnerProcess, child_env, free_port

T = TypeVar("T")
TOKEN = "live-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FPS = 24
FRAME_PTS = 90000 // FPS
IN_W, IN_H = 96, 64  # wider than the output: the runner scales and centre-crops
BAND_LEVELS = (0, 85, 170, 255)


def run(coro: Awaitable[T], limit: float = 90) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, limit)

    return asyncio.run(bounded())


# -- the synthetic stream --------------------------------------------------------------------------


def numbered_frame(number: int, width: int = IN_W, height: int = IN_H) -> np.ndarray:
    """Frame ``number`` (< 256): four horizontal bands, each a base-4 digit shown as a grey level."""
    image = np.zeros((height, width, 3), np.uint8)
    band = height // 4
    for i in range(4):
        digit = (number >> (2 * (3 - i))) & 3
        image[i * band : (i + 1) * band] = BAND_LEVELS[digit]
    return image


def read_number(rgb: np.ndarray) -> int:
    height, width = rgb.shape[:2]
    band = height // 4
    number = 0
    for i in range(4):
        middle = rgb[i * band + band // 4 : (i + 1) * band - band // 4, width // 4 : 3 * width // 4]
        number = number * 4 + round(float(middle.mean()) / 85)
    return number


def input_segments(first: int, seconds: int) -> list[bytes]:
    """``seconds`` MPEG-TS segments of 24 numbered frames each (numbers from ``first``), H.264 with an IDR
    at the start of each, plus AAC audio; PTS continue across segments."""
    segments = []
    for s in range(seconds):
        buffer = io.BytesIO()
        with av.open(buffer, mode="w", format="mpegts") as out:
            video = out.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "tune": "zerolatency"})
            video.width, video.height, video.pix_fmt = IN_W, IN_H, "yuv420p"
            video.codec_context.time_base = Fraction(1, 90000)
            audio = out.add_stream("aac", rate=48000, layout="mono")
            for i in range(FPS):
                number = first + s * FPS + i
                frame = av.VideoFrame.from_ndarray(numbered_frame(number), format="rgb24")
                frame.pts, frame.time_base = number * FRAME_PTS, Fraction(1, 90000)
                out.mux(video.encode(frame))
                samples = np.zeros((1, 2000), np.float32)
                sound = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
                # AAC primes 1024 samples before the first: start there so no PTS goes negative (the
                # muxer would shift every PTS of the segment to avoid it)
                sound.sample_rate, sound.pts, sound.time_base = 48000, 1024 + number * 2000, Fraction(1, 48000)
                out.mux(audio.encode(sound))
            out.mux(video.encode(None))
            out.mux(audio.encode(None))
        segments.append(buffer.getvalue())
    return segments


def decode_output(segments: list[bytes]) -> tuple[list[tuple[int, int, tuple[int, int]]], set[str]]:
    """(number, pts, (width, height)) of each output frame, and the codecs of the output streams."""
    frames = []
    codecs: set[str] = set()
    for segment in segments:
        with av.open(io.BytesIO(segment), format="mpegts") as container:
            codecs |= {s.codec_context.name for s in container.streams}
            for frame in container.decode(video=0):
                frames.append((read_number(frame.to_ndarray(format="rgb24")), frame.pts, (frame.width, frame.height)))
    return frames, codecs


# -- processes -------------------------------------------------------------------------------------


class TrickleServerProcess(ChildProcess):
    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*LPNODE, "trickle", "serve", "--listen", f"127.0.0.1:{self.port}"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=child_env(),
        )
        for _ in range(200):
            assert self.proc.poll() is None, self.log()
            try:
                if requests.get(f"{self.base}/none/next", timeout=2).status_code == 404:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"trickle server not ready:\n{self.log()}")


@pytest.fixture(scope="module")
def trickle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrickleServerProcess]:
    server = TrickleServerProcess(tmp_path_factory.mktemp("trickle") / "serve.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def noop_runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProcess]:
    logs = tmp_path_factory.mktemp("runner")
    env = child_env(PIPELINE="live-video-to-video", MODEL_ID="noop", AUTH_TOKEN=TOKEN)
    runner = RunnerProcess([], logs / "runner.log", env=env)  # configured by env, as ai-runner is
    try:
        runner.wait_status({"IDLE"}, timeout=60)
        yield runner
    finally:
        assert runner.stop() in (0, -15), runner.log()  # uvicorn re-raises the SIGTERM it handled


# -- one stream, driven like an orchestrator and a gateway would ------------------------------------


class Stream:
    """The four channels of one stream, with readers collecting the output and the events."""

    def __init__(self, base: str, name: str) -> None:
        self.urls = {
            "subscribe_url": f"{base}/{name}",
            "publish_url": f"{base}/{name}-out",
            "control_url": f"{base}/{name}-control",
            "events_url": f"{base}/{name}-events",
        }
        self.output: list[bytes] = []
        self.events: list[dict[str, Any]] = []
        self.output_end: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.got_event = asyncio.Event()

    async def create(self) -> None:
        for key, mime in (
            ("subscribe_url", "video/MP2T"),
            ("publish_url", "video/MP2T"),
            ("control_url", "application/json"),
            ("events_url", "application/json"),
        ):
            async with TricklePublisher(self.urls[key], mime, delete_on_close=False) as pub:
                await pub.create()
        self._tasks = [asyncio.create_task(self._read_output()), asyncio.create_task(self._read_events())]

    async def _read_output(self) -> None:
        async with TrickleSubscriber(self.urls["publish_url"], start_seq=0) as sub:
            async for segment in sub:
                self.output.append(await segment.read())
            self.output_end = sub.end

    async def _read_events(self) -> None:
        async with TrickleSubscriber(self.urls["events_url"], start_seq=0) as sub:
            async for segment in sub:
                self.events.append(json.loads(await segment.read()))
                self.got_event.set()

    async def publish_input(
        self, segments: list[bytes], before: dict[int, Callable[[], Awaitable[None]]] | None = None
    ) -> None:
        """Each segment at the pace of a live source (a chunk per frame time), ``before[i]`` awaited before
        segment i; then close the channel."""
        async with TricklePublisher(self.urls["subscribe_url"], "video/MP2T") as pub:
            for index, data in enumerate(segments):
                if before and index in before:
                    await before[index]()
                async with pub.segment() as seg:
                    step = -(-len(data) // FPS)
                    for offset in range(0, len(data), step):
                        await seg.write(data[offset : offset + step])
                        await asyncio.sleep(1 / FPS)

    async def control(self, message: dict[str, Any]) -> None:
        url = self.urls["control_url"]
        async with TricklePublisher(url, "application/json", start_seq=-1, delete_on_close=False) as pub:
            await pub.write(json.dumps(message).encode())

    async def finish(self, limit: float = 30) -> None:
        await asyncio.wait_for(asyncio.gather(*self._tasks), limit)

    def statuses(self) -> list[dict[str, Any]]:
        return [e["event"] for e in self.events if e.get("event", {}).get("type") == "status"]


async def start_stream(runner: RunnerProcess, stream: Stream, params: dict[str, Any], **extra: str) -> None:
    body = {**stream.urls, "model_id": "noop", "params": params, "gateway_request_id": "req-1", **extra}
    answer = await asyncio.to_thread(runner.post, "/live-video-to-video", json=body, headers=AUTH, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["publish_url"] == "" and answer.json()["subscribe_url"] == ""


def wait_idle(runner: RunnerProcess) -> None:
    runner.wait_status({"IDLE"}, timeout=30)


# -- tests -----------------------------------------------------------------------------------------


def test_noop_stream_passes_every_frame_in_order_and_applies_params(
    trickle: TrickleServerProcess, noop_runner: RunnerProcess
) -> None:
    update = {"width": 64, "height": 64, "marker": "after-update"}

    async def scenario() -> Stream:
        stream = Stream(trickle.base, "s1")
        await stream.create()
        await start_stream(noop_runner, stream, {"width": 64, "height": 64})
        await asyncio.wait_for(stream.got_event.wait(), 20)  # the runner is on its channels
        segments = input_segments(0, 3)
        publishing = asyncio.create_task(stream.publish_input(segments))
        await stream.control({"keep": "alive"})
        await stream.control(update)
        await publishing
        await stream.finish()
        return stream

    stream = run(scenario())
    frames, codecs = decode_output(stream.output)
    numbers = [n for n, _, _ in frames]
    dropped = sorted(set(range(72)) - set(numbers))
    print(f"output frames: {len(frames)} of 72; dropped: {dropped}")
    assert len(frames) >= 48, numbers  # a frame finding the pipeline busy is dropped, by design
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers), numbers  # order kept, no repeats
    assert all(size == (64, 64) for _, _, size in frames)
    assert all(pts == n * FRAME_PTS for n, pts, _ in frames), frames[:5]  # the input's PTS, in 1/90000
    assert {"h264", "opus"} <= codecs  # audio passes through (re-encoded to Opus)
    assert stream.output_end in {"closed", "not found"}  # the runner closed the output channel

    statuses = stream.statuses()
    assert statuses, stream.events
    first = statuses[0]
    assert first["pipeline"] == "noop" and {"state", "input_status", "inference_status", "start_time"} <= set(first)
    assert any(s["inference_status"]["last_params"] == update for s in statuses), statuses
    assert any(s["input_status"]["fps"] > 0 for s in statuses)
    assert all(e["queue_event_type"] in {"ai_stream_events", "stream_trace"} for e in stream.events)
    traces = {e["event"]["type"] for e in stream.events if e["queue_event_type"] == "stream_trace"}
    assert {"runner_receive_stream_request", "runner_receive_first_ingest_segment"} <= traces
    wait_idle(noop_runner)


def test_a_second_stream_on_the_same_runner_works(trickle: TrickleServerProcess, noop_runner: RunnerProcess) -> None:
    async def scenario() -> Stream:
        stream = Stream(trickle.base, "s2")
        await stream.create()
        await start_stream(noop_runner, stream, {"width": 128, "height": 128})
        await asyncio.wait_for(stream.got_event.wait(), 20)
        await stream.publish_input(input_segments(100, 1))
        await stream.finish()
        return stream

    stream = run(scenario())
    frames, _ = decode_output(stream.output)
    assert len(frames) >= 18 and all(size == (128, 128) for _, _, size in frames)
    assert [n for n, _, _ in frames] == sorted(n for n, _, _ in frames)
    wait_idle(noop_runner)


def test_a_new_stream_replaces_the_running_one(trickle: TrickleServerProcess, noop_runner: RunnerProcess) -> None:
    async def scenario() -> tuple[Stream, Stream]:
        first, second = Stream(trickle.base, "r1"), Stream(trickle.base, "r2")
        await first.create()
        await second.create()
        await start_stream(noop_runner, first, {"width": 64, "height": 64})
        await asyncio.wait_for(first.got_event.wait(), 20)
        await start_stream(noop_runner, second, {"width": 64, "height": 64})
        await first.finish()  # the first stream's output and events channels were closed
        assert noop_runner.health() == "OK"
        await second.publish_input(input_segments(0, 1))
        await second.finish()
        return first, second

    first, second = run(scenario())
    assert first.output_end in {"closed", "not found"}
    assert len(decode_output(second.output)[0]) >= 18
    wait_idle(noop_runner)


def test_refusals(noop_runner: RunnerProcess) -> None:
    body = {"subscribe_url": "http://127.0.0.1:9/a", "publish_url": "http://127.0.0.1:9/b"}
    wrong = noop_runner.post("/live-video-to-video", json={**body, "model_id": "comfyui"}, headers=AUTH)
    assert wrong.status_code == 400
    assert wrong.json() == {"detail": {"msg": "pipeline configured with noop but called with comfyui."}}
    unauthorized = noop_runner.post("/live-video-to-video/", json=body)
    assert unauthorized.status_code == 401 and unauthorized.headers["WWW-Authenticate"] == "Bearer"
    bad_params = noop_runner.post("/live-video-to-video", json={**body, "params": {"width": 7}}, headers=AUTH)
    assert bad_params.status_code == 400 and "width" in bad_params.json()["detail"]["msg"]
    missing = noop_runner.post("/live-video-to-video", json={"publish_url": "x"}, headers=AUTH)
    assert missing.status_code == 422
    assert noop_runner.get("/version").json() == {
        "pipeline": "live-video-to-video",
        "model_id": "noop",
        "version": noop_runner.get("/version").json()["version"],
    }
    assert noop_runner.get("/hardware/info").json()["pipeline"] == "live-video-to-video"
    assert "lpnode_runner_state" in noop_runner.get("/metrics").text
    assert noop_runner.health() == "IDLE"


def test_img2img_pipeline_runs_on_cpu_at_tiny_size(
    trickle: TrickleServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    base = tmp_path_factory.mktemp("img2img")
    env = child_env(MODEL_DIR=str(base / "models"))
    runner = RunnerProcess(
        ["--pipeline", "live-video-to-video", "--model-id", "img2img", "--threads", "1"], base / "r.log", env=env
    )
    try:
        runner.wait_status({"IDLE"}, timeout=120)  # builds the tiny model on first start

        async def scenario() -> Stream:
            stream = Stream(trickle.base, "img")
            await stream.create()
            body = {**stream.urls, "model_id": "img2img", "params": {"width": 64, "height": 64, "prompt": "a fox"}}
            answer = await asyncio.to_thread(runner.post, "/live-video-to-video", json=body, timeout=30)
            assert answer.status_code == 200, answer.text
            await asyncio.wait_for(stream.got_event.wait(), 20)
            await stream.publish_input(input_segments(0, 2))
            await stream.finish()
            return stream

        stream = run(scenario(), limit=120)
        frames, _ = decode_output(stream.output)
        print(f"img2img output frames: {len(frames)} of 48")
        assert frames, runner.log()
        assert all(size == (64, 64) for _, _, size in frames)
        pts = [p for _, p, _ in frames]
        assert pts == sorted(pts) and all(p % FRAME_PTS == 0 for p in pts)  # input PTS carried through
        wait_idle(runner)
    finally:
        assert runner.stop() in (0, -15), runner.log()  # uvicorn re-raises the SIGTERM it handled


def test_example_pipeline_class_follows_params_updates(
    trickle: TrickleServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """examples/live-pipeline served with --pipeline-class: a control message switches inversion on."""
    example = Path(__file__).parents[2] / "examples" / "live-pipeline"
    logs = tmp_path_factory.mktemp("example")
    env = child_env(PYTHONPATH=str(example))
    runner = RunnerProcess(
        ["--pipeline", "live-video-to-video", "--pipeline-class", "invert_pipeline:InvertPipeline"],
        logs / "r.log",
        env=env,
    )
    try:
        runner.wait_status({"IDLE"}, timeout=60)
        assert runner.get("/version").json()["model_id"] == "invert"

        async def scenario() -> Stream:
            stream = Stream(trickle.base, "inv")
            await stream.create()
            params = {"width": 64, "height": 64, "invert": False}
            body = {**stream.urls, "model_id": "invert", "params": params}
            answer = await asyncio.to_thread(runner.post, "/live-video-to-video", json=body, timeout=30)
            assert answer.status_code == 200, answer.text
            await asyncio.wait_for(stream.got_event.wait(), 20)

            async def invert() -> None:
                await stream.control({"width": 64, "height": 64, "invert": True})

            async def reload() -> None:  # the pipeline returns a 1 s Task: the loading overlay shows
                await stream.control({"width": 64, "height": 64, "invert": True, "warmup_seconds": 1.0})

            await stream.publish_input(input_segments(0, 4), before={1: invert, 2: reload})
            await stream.finish()
            return stream

        stream = run(scenario())
        kinds = []
        for segment in stream.output:
            with av.open(io.BytesIO(segment), format="mpegts") as container:
                for frame in container.decode(video=0):
                    rgb = frame.to_ndarray(format="rgb24")
                    number = (frame.pts or 0) // FRAME_PTS
                    overlay = int(np.abs(rgb[61, :, 0].astype(int) - 60).min()) < 10  # the overlay's bar row
                    plain, inverted = read_number(rgb) == number, read_number(255 - rgb) == number
                    kinds.append("overlay" if overlay else "plain" if plain else "inverted" if inverted else "?")
        phases = [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]  # runs collapsed
        assert phases == ["plain", "inverted", "overlay", "inverted"], kinds
        wait_idle(runner)
    finally:
        assert runner.stop() in (0, -15), runner.log()


CRASHING_PIPELINE = '''
import os
from pathlib import Path

from lpnode.live.pipelines.noop import Noop


class Crashing(Noop):
    """Noop whose first process dies at its first frame (a segfault, say); the restarted one works."""

    async def put_video_frame(self, frame, request_id):
        marker = Path(os.environ["CRASH_MARKER"])
        if not marker.exists():
            marker.write_text("crashed")
            os._exit(3)
        await super().put_video_frame(frame, request_id)
'''


def test_a_crashed_pipeline_process_is_restarted(
    trickle: TrickleServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    base = tmp_path_factory.mktemp("crash")
    (base / "crashing.py").write_text(CRASHING_PIPELINE)
    env = child_env(PYTHONPATH=str(base), CRASH_MARKER=str(base / "marker"))
    args = ["--pipeline", "live-video-to-video", "--pipeline-class", "crashing:Crashing", "--model-id", "crashy"]
    runner = RunnerProcess(args, base / "r.log", env=env)
    try:
        runner.wait_status({"IDLE"}, timeout=60)

        async def scenario() -> Stream:
            stream = Stream(trickle.base, "crash")
            await stream.create()
            body = {**stream.urls, "model_id": "crashy", "params": {"width": 64, "height": 64}}
            answer = await asyncio.to_thread(runner.post, "/live-video-to-video", json=body, timeout=30)
            assert answer.status_code == 200, answer.text
            await asyncio.wait_for(stream.got_event.wait(), 20)
            publishing = asyncio.create_task(stream.publish_input(input_segments(0, 2)))
            await stream.finish()  # the runner ends the stream on the crash: output and events close
            publishing.cancel()
            return stream

        stream = run(scenario())
        restarts = [e["event"] for e in stream.events if e["event"].get("type") == "restart"]
        assert restarts and restarts[0]["restart_count"] == 1 and restarts[0]["pipeline"] == "crashy", stream.events
        assert isinstance(restarts[0]["restart_logs"], list)
        assert stream.output_end in {"closed", "not found"}
        runner.wait_status({"IDLE"}, timeout=60)  # the new process loaded; the runner takes streams again
        assert "restarting the pipeline process" in runner.log()
    finally:
        assert runner.stop() in (0, -15), runner.log()
