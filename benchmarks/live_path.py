"""Live video-to-video: how fast, how late and how costly is one stream through lpnode's live path?

In one run, on one machine: ONE ``lpnode orchestrator`` (TLS, its default) whose aiModels.json holds one
warm ``live-video-to-video`` entry for ``noop`` (so it starts one ``lpnode runner --pipeline
live-video-to-video --model-id noop``, which runs its pipeline in a child process), and ONE ``lpnode
gateway`` with ``--orch-addr`` pointing at it. The input is a synthetic 512×512 H.264 clip (``--fps`` 30,
``--seconds`` 16) whose frame n shows n in binary (a 4×4 grid of black or white blocks), cut into MPEG-TS
segments of one second, each starting at an IDR, by the same segmenter ``lpnode live play`` uses. The
segments are prepared before the measurement and published in real time: segment k is sent when its
last frame has been "captured", i.e. ``t0 + (k + 1)`` seconds. Input frame n is due at ``t0 + n / fps``.

Three modes, in interleaved rounds (``--rounds``, the first mode rotating):

(a) in-process: the runner's own media loop with nothing around it: the segments' bytes go into a
    :class:`lpnode.live.media.Decoder` (24 fps cap, fit to 512×512), each frame waits for its
    presentation time in a :class:`lpnode.live.pacing.FramePacer` (as the runner's ingress does) and goes
    straight into a :class:`lpnode.live.media.SegmentEncoder` (as the runner's egress does); no pipeline
    process, no network;
(b) in-process without the pacer: the same, frames encoded as soon as they are decoded;
(c) end to end: ``POST /live/video-to-video/{stream}/start`` on the gateway, each segment sent with
    ``POST .../segment``, the output read from ``GET .../output``; gateway → orchestrator → runner →
    pipeline process and back, on loopback.

In every mode the output bytes, as they arrive, go to one decoder thread that reads each output frame's
number from its pixels and stamps it with the arrival of its last byte. Per-frame added latency is that
arrival minus the time input frame n was due; it and the output frame rate are taken over the steady
state (frames due after the first ``WARMUP`` seconds and before the last ``TAIL``). CPU: for (a) and
(b) the media thread's CPU time; for (c) the /proc utime + stime deltas of the gateway, the orchestrator,
the runner and its pipeline child, from the first segment sent until the output has stopped arriving.

Usage::

    python benchmarks/live_path.py                # print the table
    python benchmarks/live_path.py --write-docs   # also update docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import datetime as dt
import itertools
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import aiohttp
import av
import numpy as np

from _common import (
    Deadline,
    free_port,
    log_tail,
    machine_info,
    met,
    nearest_rank,
    process_cpu_seconds,
    sigterm_as_interrupt,
    start_lpnode,
    stop_process,
    write_docs,
)
from lpnode.gateway.live.play import encode_segments
from lpnode.live.media import (
    DEMUX_OPTIONS,
    GOP_SECONDS,
    MAX_FRAMERATE,
    VIDEO_TIME_BASE,
    ByteStream,
    DecodedFrame,
    Decoder,
    FrameRateCap,
    SegmentEncoder,
)
from lpnode.live.pacing import FramePacer

START_MARK = "<!-- live_path:start -->"
END_MARK = "<!-- live_path:end -->"
SIZE = 512
GRID = 4  # GRID × GRID blocks, one bit each
BLOCK = SIZE // GRID
WARMUP = 2.0
"""Seconds at the start of the clip left out of the steady state (stream start, first segment)."""
TAIL = GOP_SECONDS
"""Seconds at the end left out: the runner's last output segment is only finished when the stream ends."""
DRAIN_QUIET = 3.0
DRAIN_MAX = 20.0
TARGET_FPS = 30.0
TARGET_ADDED_MS = 100.0
IN_PROCESS, NO_PACER, E2E = "in-process", "in-process, no pacer", "end to end"
LABELS = {
    IN_PROCESS: "in-process (decode → pacer → encode)",
    NO_PACER: "in-process, no pacer",
    E2E: "end to end (gateway → orchestrator → runner)",
}

Segments = list[tuple[float, bytes]]


# -- the numbered clip ------------------------------------------------------------------------------


def write_clip(path: Path, seconds: float, fps: int) -> int:
    """An H.264 MP4 whose frame n shows n in binary; its frame count."""
    frames = round(seconds * fps)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"g": str(fps), "bf": "0", "crf": "18"})
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        for n in range(frames):
            picture = np.zeros((SIZE, SIZE, 3), np.uint8)
            for bit in range(GRID * GRID):
                if n >> bit & 1:
                    row, col = divmod(bit, GRID)
                    picture[row * BLOCK : (row + 1) * BLOCK, col * BLOCK : (col + 1) * BLOCK] = 255
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts, frame.time_base = n, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return frames


def frame_number(frame: av.VideoFrame) -> int:
    """The number a frame of the clip shows, read from its luma plane (no colour conversion)."""
    plane = frame.planes[0]
    luma = np.frombuffer(memoryview(plane), np.uint8).reshape(frame.height, plane.line_size)[:, : frame.width]
    bh, bw = frame.height // GRID, frame.width // GRID
    value = 0
    for bit in range(GRID * GRID):
        row, col = divmod(bit, GRID)
        if luma[row * bh + 8 : (row + 1) * bh - 8, col * bw + 8 : (col + 1) * bw - 8].mean() > 128:
            value |= 1 << bit
    return value


CAP = [MAX_FRAMERATE]
"""The runner's frame-rate cap for this run (``--max-fps``, passed to the stack as LPNODE_LIVE_MAX_FPS)."""


def capped_count(frames: int, fps: int) -> int:
    """How many of ``frames`` input frames the runner's frame-rate cap keeps."""
    cap = FrameRateCap(CAP[0])
    return sum(cap.keep(n / fps) for n in range(frames))


# -- reading the output -----------------------------------------------------------------------------


class StampedStream(ByteStream):
    """A :class:`ByteStream` that remembers when each of its bytes was fed."""

    def __init__(self) -> None:
        super().__init__()
        self.ends: list[int] = []
        self.times: list[float] = []

    def feed(self, data: bytes) -> None:
        now = time.monotonic()
        super().feed(data)
        if data:
            self.ends.append(self.fed)
            self.times.append(now)

    def time_at(self, offset: int) -> float:
        """When the byte at ``offset`` arrived (now, if it has not)."""
        i = bisect.bisect_left(self.ends, offset)
        return self.times[i] if i < len(self.times) else time.monotonic()


class OutputReader:
    """Decodes an MPEG-TS byte stream fed from anywhere and stamps each frame with its number and the
    time its last byte arrived. The time comes from the packet's byte position, not from when the
    decoder returns the frame: an MPEG-TS demuxer only knows a frame is complete when the next one
    starts, and the decoder holds a frame more, which would otherwise count as latency."""

    def __init__(self) -> None:
        self.bytes = StampedStream()
        self.stamps: list[tuple[int, float]] = []
        self.error = ""
        self._thread = threading.Thread(target=self._run, name="output-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        arrived: dict[int, float] = {}
        try:
            with av.open(self.bytes, mode="r", format="mpegts", options=DEMUX_OPTIONS) as container:
                for packet in container.demux(video=0):
                    if packet.pts is not None and packet.pos is not None and packet.pos >= 0:
                        arrived[packet.pts] = self.bytes.time_at(packet.pos + packet.size)
                    for frame in packet.decode():
                        at = arrived.pop(frame.pts, time.monotonic()) if frame.pts is not None else time.monotonic()
                        self.stamps.append((frame_number(frame), at))
        except (av.FFmpegError, OSError) as exc:
            self.error = str(exc)

    def finish(self, timeout: float = 10.0) -> None:
        self.bytes.close()
        self._thread.join(timeout)

    def last_arrival(self) -> float:
        return self.bytes.times[-1] if self.bytes.times else 0.0


class _ReaderSink:
    """A :class:`SegmentEncoder` sink that hands the segments' bytes to an :class:`OutputReader`."""

    def __init__(self, reader: OutputReader) -> None:
        self.reader = reader

    def start(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.reader.bytes.feed(data)

    def end(self) -> None:
        pass


# -- one measured stream ----------------------------------------------------------------------------


@dataclass
class Run:
    mode: str
    frames_sent: int
    expected: int
    fps: int
    seconds: float
    t0: float = 0.0
    stamps: list[tuple[int, float]] = field(default_factory=list)
    cpu: float = 0.0
    cpu_by: dict[str, float] = field(default_factory=dict)
    input_dropped: int = 0
    note: str = ""

    def arrivals(self) -> dict[int, float]:
        """Each output frame's number → its first arrival, seconds after t0."""
        first: dict[int, float] = {}
        for n, at in self.stamps:
            first.setdefault(n, at - self.t0)
        return first

    def missing(self) -> list[int]:
        """The frames the runner's frame-rate cap keeps that never came out."""
        cap, out = FrameRateCap(CAP[0]), self.arrivals()
        return [n for n in range(self.frames_sent) if cap.keep(n / self.fps) and n not in out]

    def out_of_order(self) -> int:
        numbers = [n for n, _ in self.stamps]
        return sum(1 for a, b in itertools.pairwise(numbers) if b <= a)

    def latencies(self) -> list[float]:
        """Added latency (s) of each steady-state output frame: arrival minus the time it was due."""
        return [at - n / self.fps for n, at in self.arrivals().items() if self.steady(n)]

    def steady(self, n: int) -> bool:
        return WARMUP <= n / self.fps < self.seconds - TAIL

    def steady_fps(self) -> float:
        """Output frames per second of the clip's steady state."""
        return sum(1 for n in self.arrivals() if self.steady(n)) / (self.seconds - WARMUP - TAIL)


def in_process(segments: Segments, frames: int, fps: int, seconds: float, pacer: bool) -> Run:
    run = Run(NO_PACER if not pacer else IN_PROCESS, frames, capped_count(frames, fps), fps, seconds)
    reader = OutputReader()
    source = ByteStream()
    encoder = SegmentEncoder(SIZE, SIZE, _ReaderSink(reader))
    pace = FramePacer()
    failure: list[BaseException] = []

    def on_video(frame: DecodedFrame) -> None:
        if pacer:
            pace.wait(frame.seconds)
        encoder.add_video(frame.array, round(frame.pts * frame.time_base / VIDEO_TIME_BASE))

    def work() -> None:
        started = time.thread_time()
        try:
            Decoder(SIZE, SIZE, on_video, max_fps=CAP[0]).run(source)
            encoder.close()
        except BaseException as exc:  # reported after the run
            failure.append(exc)
        finally:
            run.cpu = time.thread_time() - started

    worker = threading.Thread(target=work, name="media", daemon=True)
    worker.start()
    run.t0 = time.monotonic()
    for due, segment in segments:
        wait = run.t0 + due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        source.feed(segment)
    source.close()
    worker.join(DRAIN_MAX)
    reader.finish()
    if failure:
        raise RuntimeError(f"{run.mode}: the media loop failed: {failure[0]!r}")
    run.stamps = list(reader.stamps)
    run.note = reader.error
    return run


@dataclass
class Stack:
    gateway_url: str
    gateway: subprocess.Popen[bytes]
    orchestrator: subprocess.Popen[bytes]

    def pids(self) -> dict[str, list[int]]:
        """The stack's processes by role: the orchestrator's children are runners, theirs pipelines."""
        roles: dict[str, list[int]] = {"gateway": [self.gateway.pid], "orchestrator": [self.orchestrator.pid]}
        runners = children(self.orchestrator.pid)
        roles["runner"] = runners
        roles["pipeline"] = [p for r in runners for p in descendants(r)]
        return roles


def children(pid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(stat[1]) == pid:
            found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    found, todo = [], children(pid)
    while todo:
        child = todo.pop()
        found.append(child)
        todo += children(child)
    return found


def cpu_by_role(roles: dict[str, list[int]]) -> dict[str, float]:
    return {role: sum(process_cpu_seconds(p) for p in pids) for role, pids in roles.items()}


async def end_to_end(stack: Stack, segments: Segments, frames: int, fps: int, seconds: float, name: str) -> Run:
    run = Run(E2E, frames, capped_count(frames, fps), fps, seconds)
    base = f"{stack.gateway_url}/live/video-to-video/{name}"
    reader = OutputReader()
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        body = {"model_id": "noop", "params": {"width": SIZE, "height": SIZE}}
        async with http.post(f"{base}/start", json=body, timeout=aiohttp.ClientTimeout(total=90)) as answer:
            if answer.status != 200:
                raise RuntimeError(f"the gateway refused the stream: {answer.status} {await answer.text()}")

        async def read_output() -> None:
            async with http.get(f"{base}/output") as answer:
                if answer.status != 200:
                    raise RuntimeError(f"GET output answered {answer.status}")
                async for chunk in answer.content.iter_any():
                    reader.bytes.feed(chunk)

        reading = asyncio.ensure_future(read_output())
        try:
            roles = stack.pids()
            before = cpu_by_role(roles)
            run.t0 = time.monotonic()
            for due, segment in segments:
                wait = run.t0 + due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                post = http.post(f"{base}/segment", data=segment, timeout=aiohttp.ClientTimeout(total=30))
                async with post as answer:
                    if answer.status != 200:
                        raise RuntimeError(f"POST segment answered {answer.status}: {await answer.text()}")
                    run.input_dropped += bool((await answer.json()).get("dropped"))
            sent = time.monotonic()
            while time.monotonic() - sent < DRAIN_MAX and not reading.done():
                if time.monotonic() - max(reader.last_arrival(), sent) > DRAIN_QUIET:
                    break
                await asyncio.sleep(0.1)
            after = cpu_by_role(roles)
            run.cpu_by = {role: after[role] - before[role] for role in roles}
            run.cpu = sum(run.cpu_by.values())
        finally:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.post(f"{base}/stop", timeout=aiohttp.ClientTimeout(total=30)) as answer:
                    await answer.read()
            reading.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(reading, 10)
            reader.finish()
    run.stamps = list(reader.stamps)
    run.note = reader.error
    return run


# -- the processes ----------------------------------------------------------------------------------


def fetch(url: str, timeout: float = 5) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the orchestrator's own certificate
    with urllib.request.urlopen(url, timeout=timeout, context=context) as answer:
        data: bytes = answer.read()
        return data


def wait_until(
    check: Callable[[], bool], proc: subprocess.Popen[bytes], log_path: Path, what: str, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"a process exited with {proc.returncode}:\n{log_tail(log_path)}")
        try:
            if check():
                return
        except (OSError, ValueError, KeyError, IndexError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout:g}s:\n{log_tail(log_path)}")


def runner_idle(orch_url: str) -> bool:
    models = json.loads(fetch(f"{orch_url}/status"))["models"]
    (live,) = [m for m in models if m["pipeline"] == "live-video-to-video"]
    return bool(live["runners"]) and live["runners"][0]["state"] == "IDLE"


# -- reporting --------------------------------------------------------------------------------------


@dataclass
class Summary:
    mode: str
    runs: list[Run]

    def total(self, attr: str) -> int:
        return sum(int(getattr(r, attr)) for r in self.runs)

    @property
    def frames_out(self) -> int:
        return sum(len(r.arrivals()) for r in self.runs)

    @property
    def latencies(self) -> list[float]:
        return [x for r in self.runs for x in r.latencies()]

    def p(self, q: float) -> float:
        values = self.latencies
        return nearest_rank(values, q) * 1000 if values else float("nan")

    @property
    def fps(self) -> float:
        return min(r.steady_fps() for r in self.runs)

    @property
    def cpu_per_video_second(self) -> float:
        return sum(r.cpu for r in self.runs) / sum(r.seconds for r in self.runs)


def report(summaries: dict[str, Summary], fps: int) -> tuple[str, dict[str, float]]:
    """The table and verdict lines, and the figures the closing paragraph quotes."""
    lines = [
        f"| mode | streams | frames in | kept by the {CAP[0]:g} fps cap | frames out | dropped | out of order "
        "| output fps (steady, worst stream) | added latency p50 (ms) | p95 (ms) | CPU s per s of video |"
    ]
    lines += ["|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in summaries.values():
        lines.append(
            f"| {LABELS[s.mode]} | {len(s.runs)} | {s.total('frames_sent')} | {s.total('expected')} | "
            f"{s.frames_out} | {s.total('expected') - s.frames_out} | "
            f"{sum(r.out_of_order() for r in s.runs)} | {s.fps:.1f} | {s.p(0.5):.0f} | {s.p(0.95):.0f} | "
            f"{s.cpu_per_video_second:.2f} |"
        )
    e2e, base = summaries[E2E], summaries[IN_PROCESS]
    video = sum(r.seconds for r in e2e.runs)
    roles = ("gateway", "orchestrator", "runner", "pipeline")
    by_role = {role: sum(r.cpu_by.get(role, 0.0) for r in e2e.runs) / video for role in roles}
    added = {"p50": e2e.p(0.5) - base.p(0.5), "p95": e2e.p(0.95) - base.p(0.95)}
    cap = min(float(fps), CAP[0])
    lines += [
        "",
        f"Added by the stack (end to end − in-process): p50 {added['p50']:+.0f} ms, p95 {added['p95']:+.0f} ms. "
        "The pacer's own share (in-process − in-process without it): "
        f"p50 {base.p(0.5) - summaries[NO_PACER].p(0.5):+.0f} ms.",
        "",
        "End-to-end CPU seconds per second of video, by process: "
        + ", ".join(f"{role} {value:.2f}" for role, value in by_role.items())
        + ".",
        "",
        f"Targets: ≥ {TARGET_FPS:.0f} fps sustained for one {SIZE}×{SIZE} stream: {met(e2e.fps >= TARGET_FPS)}, "
        f"{e2e.fps:.1f} fps, {e2e.fps / cap:.0%} of the {cap:g} fps the runner's frame-rate cap lets through. "
        f"≤ {TARGET_ADDED_MS:.0f} ms added at p50 over the in-process loop: {met(added['p50'] <= TARGET_ADDED_MS)}, "
        f"{added['p50']:+.0f} ms.",
    ]
    facts = {
        "base50": base.p(0.5), "nopacer50": summaries[NO_PACER].p(0.5), "add50": added["p50"], "add95": added["p95"],
        "e2e_cpu": e2e.cpu_per_video_second, "base_cpu": base.cpu_per_video_second,
        "drops": e2e.total("expected") - e2e.frames_out, "expected": e2e.total("expected"), **by_role,
        "edge_drops": sum(1 for r in e2e.runs for n in r.missing() if n % fps in (0, fps - 1)), "cap": CAP[0],
    }  # fmt: skip
    return "\n".join(lines), facts


def where_the_time_goes(f: dict[str, float]) -> str:
    return (
        "Where the time goes. Every mode first waits for the input segment to be complete: a frame is 0–1 s old "
        "when its one-second segment is sent. The runner's `FramePacer` then holds each frame until its "
        "presentation time, counted from the first frame it decoded, so every frame leaves the media loop about "
        f"one segment after it was due, wherever it sits in its segment (in-process p50 {f['base50']:.0f} ms, "
        f"against {f['nopacer50']:.0f} ms without the pacer); the pacer is what keeps a whole segment arriving "
        "at once from becoming a burst that the one-frame queue into the pipeline would drop. End to end adds "
        f"{f['add50']:.0f} ms at p50 ({f['add95']:.0f} ms at p95) to that: the loopback hops (the gateway's "
        "segment route, TLS to the orchestrator's trickle channels, the runner reading and writing them) and "
        "the trip through the runner's pipeline process; output bytes are relayed by every hop as they are "
        "written, so no hop waits for an output segment to end. The output rate is bounded by the runner's "
        f"frame-rate cap ({f['cap']:g} fps in this run; ai-runner's is 24, `LPNODE_LIVE_MAX_FPS` changes it). "
        f"CPU: end to end costs {f['e2e_cpu']:.2f} CPU s per second of video against {f['base_cpu']:.2f} for the "
        f"bare media loop: the runner process (trickle in and out, decode, encode) {f['runner']:.2f}, the noop "
        f"pipeline process {f['pipeline']:.2f} (every frame crosses to it and back and is converted to a float "
        f"tensor and back), the orchestrator {f['orchestrator']:.2f} and the gateway {f['gateway']:.2f}. Frames "
        f"lost end to end: {f['drops']:.0f} of {f['expected']:.0f} ({f['edge_drops']:.0f} of them the first or "
        "last frame of an input segment, which the demuxer releases only when the next segment's bytes arrive). "
        "A load average above 1 means other work shared the 2 cores."
    )


async def measure(
    stack: Stack, segments: Segments, frames: int, args: argparse.Namespace, deadline: Deadline
) -> dict[str, Summary]:
    summaries = {mode: Summary(mode, []) for mode in (IN_PROCESS, NO_PACER, E2E)}
    order = list(summaries)
    for r in range(args.rounds):
        for mode in order[r % len(order) :] + order[: r % len(order)]:
            deadline.check(f"round {r + 1}, {mode}")
            if mode == E2E:
                run = await end_to_end(stack, segments, frames, args.fps, args.seconds, f"bench-{r}")
            else:
                run = await asyncio.to_thread(in_process, segments, frames, args.fps, args.seconds, mode == IN_PROCESS)
            print(
                f"round {r + 1} {mode}: {len(run.arrivals())}/{run.expected} frames out, "
                f"p50 {nearest_rank(run.latencies(), 0.5) * 1000 if run.latencies() else float('nan'):.0f} ms, "
                f"{run.steady_fps():.1f} fps, CPU {run.cpu:.1f} s" + (f" ({run.note})" if run.note else ""),
                flush=True,
            )
            summaries[mode].runs.append(run)
            await asyncio.sleep(2)  # the stream's end settles before the next mode
    return summaries


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=16.0, help="length of the clip (default 16)")
    parser.add_argument("--fps", type=int, default=30, help="frame rate of the clip (default 30)")
    parser.add_argument(
        "--max-fps", type=float, default=MAX_FRAMERATE,
        help=f"the runner's frame-rate cap, LPNODE_LIVE_MAX_FPS (default {MAX_FRAMERATE:g}, as ai-runner)",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=2, help="rounds; each streams the clip once per mode")
    parser.add_argument("--budget", type=float, default=600, help="seconds the whole run may take")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument("--dump", type=Path, help="also write every output frame's number and arrival here (JSON)")
    args = parser.parse_args()
    CAP[0] = args.max_fps
    if args.seconds < WARMUP + TAIL + 4 or args.fps <= 0 or args.rounds <= 0:
        parser.error(f"--seconds must be at least {WARMUP + TAIL + 4:g}; --fps and --rounds positive")
    signal.signal(signal.SIGTERM, sigterm_as_interrupt)
    deadline = Deadline(args.budget)
    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="live-bench-") as tmp:
        work = Path(tmp)
        frames = write_clip(work / "clip.mp4", args.seconds, args.fps)
        segments = list(encode_segments(work / "clip.mp4", 1.0))
        entry = {"pipeline": "live-video-to-video", "model_id": "noop", "warm": True, "capacity": 1}
        (work / "aiModels.json").write_text(json.dumps([entry]))
        (work / "models").mkdir()
        ports = {name: free_port() for name in ("orch", "http", "cli")}
        orch_url = f"https://127.0.0.1:{ports['orch']}"
        procs: list[subprocess.Popen[bytes]] = []
        try:
            log = work / "orch.log"
            orch = ["orchestrator", "--ai-models", str(work / "aiModels.json"), "--models-dir", str(work / "models")]
            orch += ["--service-addr", f"127.0.0.1:{ports['orch']}", "--data-dir", str(work / "orch")]
            procs.append(start_lpnode(orch, log, env={"LPNODE_LIVE_MAX_FPS": f"{CAP[0]:g}"}))
            wait_until(lambda: fetch(f"{orch_url}/healthz") is not None, procs[-1], log, "orchestrator", 120)
            wait_until(lambda: runner_idle(orch_url), procs[-1], log, "the live runner", 180)
            orchestrator = procs[-1]
            log = work / "gateway.log"
            gateway = ["gateway", "--orch-addr", f"127.0.0.1:{ports['orch']}", "--data-dir", str(work / "gw")]
            gateway += ["--http-addr", f"127.0.0.1:{ports['http']}", "--cli-addr", f"127.0.0.1:{ports['cli']}"]
            procs.append(start_lpnode([*gateway, "--log-level", "warning"], log))
            gateway_url = f"http://127.0.0.1:{ports['http']}"
            wait_until(lambda: fetch(f"{gateway_url}/healthz") is not None, procs[-1], log, "gateway", 60)
            stack = Stack(gateway_url, procs[-1], orchestrator)
            summaries = asyncio.run(measure(stack, segments, frames, args, deadline))
        finally:
            for proc in reversed(procs):
                stop_process(proc)
    table, facts = report(summaries, args.fps)
    if args.dump:
        runs = [
            {"mode": r.mode, "arrivals": r.arrivals(), "cpu_by": r.cpu_by} for s in summaries.values() for r in s.runs
        ]
        args.dump.write_text(json.dumps(runs))
    print(table)
    if args.write_docs:
        write_section(table, where_the_time_goes(facts), args, load_at_start)
        print("wrote docs/benchmarks.md")
    return 0


def write_section(table: str, paragraph: str, args: argparse.Namespace, load_at_start: float) -> None:
    info = machine_info()
    section = "\n".join(
        [
            START_MARK,
            "## Live video: gateway → orchestrator → live runner, against the runner's media loop alone",
            "",
            f"`benchmarks/live_path.py` streams a synthetic {SIZE}×{SIZE} H.264 clip ({args.fps} fps, "
            f"{args.seconds:g} s, an IDR each second, frame n showing n in its pixels) as one-second MPEG-TS "
            "segments, each sent when its last frame is due (real time, as `lpnode live play` does). "
            "*In-process* is the live runner's media loop with nothing around it: "
            f"`Decoder` ({CAP[0]:g} fps cap, fit to {SIZE}×{SIZE}), `FramePacer` (each frame waits for its "
            "presentation time, as in the runner's "
            "ingress) and `SegmentEncoder` in one thread, no pipeline process, no network; the same without "
            "the pacer (frames encoded as soon as they are decoded) is shown too. *End to end* is `lpnode gateway` "
            "→ `lpnode orchestrator` (TLS) → `lpnode runner --pipeline live-video-to-video --model-id noop` (warm, "
            "its pipeline in a child process) on loopback: `POST .../start`, each segment with `POST .../segment`, "
            "the output read from `GET .../output`. In every mode the output is decoded as its bytes arrive and "
            "each frame is stamped with the arrival of its last byte; *added latency* is that arrival minus the "
            "time input frame n was due "
            f"(`t0 + n / {args.fps}`), so it includes waiting for the one-second input segment to be complete. "
            f"Latency and output fps cover the steady state (frames due after the first {WARMUP:g} s and before the "
            f"last {TAIL:g} s, whose output segment is only finished when the stream ends). CPU is "
            "the media thread's for the in-process modes, and the sum of the gateway's, orchestrator's, "
            "runner's and pipeline process's /proc utime + stime for end to end, per second of video. "
            f"The modes run in interleaved rounds ({args.rounds} rounds, the first mode rotating).",
            "",
            "Command: `.venv/bin/python benchmarks/live_path.py"
            + (f" --max-fps {CAP[0]:g}" if CAP[0] != MAX_FRAMERATE else "")
            + " --write-docs`",
            "",
            f"Date: {dt.date.today().isoformat()}. Machine: {info['nproc']} CPUs ({info['cpu']}), "
            f"{info['os']}, Python {info['python']}. Load average (1 min) at the start: {load_at_start:.2f}.",
            "",
            table,
            "",
            paragraph,
            END_MARK,
        ]
    )
    write_docs(section, START_MARK, END_MARK)


if __name__ == "__main__":
    sys.exit(main())
