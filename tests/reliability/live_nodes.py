"""The live network the reliability suite breaks: a gateway in front of orchestrators A and B, each with one warm
``noop`` live runner (capacity 1), and the client a user would run against it, ``lpnode live play``.

A stream is a numbered clip (each frame shows its number as eight black or white blocks), so what came back
says how far the stream got. :class:`LiveClient` plays one clip in the background and records, by polling the
gateway's status, when each output segment arrived, so an outage shows as the longest gap between them.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import requests
from nodes import Answer, wait_until

from procs import LPNODE, GatewayProcess, OrchestratorProcess, child_env, wait_gone
from up_stack import pids_under

PIPELINE = "live-video-to-video"
MODEL = "noop"
SIZE = 64
FPS = 12
BITS = 8
PLAY_TIMEOUT = 120.0


def write_clip(path: Path, seconds: float) -> int:
    """An H.264 MP4 of ``seconds`` whose frame n shows n in binary; the frame count."""
    frames = round(seconds * FPS)
    assert frames <= 1 << BITS, "a frame number must fit its blocks"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS, options={"g": str(FPS), "bf": "0", "crf": "18"})
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        for n in range(frames):
            picture = np.zeros((SIZE, SIZE, 3), np.uint8)
            for bit in range(BITS):
                if n >> bit & 1:
                    row, col = divmod(bit, 4)
                    picture[row * 32 : (row + 1) * 32, col * 16 : (col + 1) * 16] = 255
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts, frame.time_base = n, Fraction(1, FPS)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return frames


def last_frame_number(path: Path) -> int:
    """The number the last decodable frame of ``path`` shows (-1 if none)."""
    number = -1
    try:
        with av.open(str(path)) as inp:
            for frame in inp.decode(video=0):
                gray = frame.to_ndarray(format="gray").astype(float)
                h, w = gray.shape
                number = 0
                for bit in range(BITS):
                    row, col = divmod(bit, 4)
                    block = gray[row * h // 2 : (row + 1) * h // 2, col * w // 4 : (col + 1) * w // 4]
                    if block[2:-2, 2:-2].mean() > 128:
                        number |= 1 << bit
    except (av.error.FFmpegError, OSError):
        pass
    return number


class LiveNetwork:
    """Orchestrators A and B, each with a warm ``noop`` live runner of capacity 1, and a gateway in front of
    both."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "aiModels.json").write_text(
            json.dumps([{"pipeline": PIPELINE, "model_id": MODEL, "warm": True, "capacity": 1}])
        )
        (root / "models").mkdir(exist_ok=True)
        self.a = OrchestratorProcess(root / "aiModels.json", root / "models", root / "a")
        self.b = OrchestratorProcess(root / "aiModels.json", root / "models", root / "b")
        self.gateway: GatewayProcess | None = None
        try:
            for node in (self.a, self.b):
                node.wait_ready()
            for node in (self.a, self.b):
                if wait_until(lambda n=node: self.runner_idle(n), timeout=120, interval=0.2) is None:
                    raise AssertionError(f"no idle live runner:\n{node.log()}")
            self.gateway = GatewayProcess(root / "gw", "--orch-addr", f"{self.a.base_url},{self.b.base_url}")
        except BaseException:
            self.stop()
            raise
        self.url = self.gateway.base_url
        self._watched = [self.a.proc.pid, self.b.proc.pid, self.gateway.proc.pid]
        self._watched += [p for node in (self.a, self.b) for p in self.runner_tree(node)]

    def node(self, base_url: str) -> OrchestratorProcess:
        (found,) = [n for n in (self.a, self.b) if n.base_url == base_url]
        return found

    @staticmethod
    def model(node: OrchestratorProcess) -> dict[str, Any]:
        (model,) = [m for m in node.status() if m["pipeline"] == PIPELINE]
        return model

    def runner_idle(self, node: OrchestratorProcess, not_pid: int = 0) -> bool:
        """``node`` has a live runner other than ``not_pid`` answering IDLE, and no stream holds a slot."""
        model = self.model(node)
        runners = [r for r in model["runners"] if r["pid"] and r["pid"] != not_pid and r["state"] == "IDLE"]
        return bool(runners) and int(model["in_use"]) == 0

    def streams_on(self, node: OrchestratorProcess) -> list[dict[str, Any]]:
        streams: list[dict[str, Any]] = node.admin_get("/status", timeout=5).json()["live"]
        return streams

    def runner_tree(self, node: OrchestratorProcess) -> list[int]:
        """The pids of ``node``'s live runners and of their pipeline processes."""
        pids = node.runner_pids()
        return pids + [child for pid in pids for child in pids_under(pid)]

    def status(self, stream: str) -> dict[str, Any]:
        answer = requests.get(f"{self.url}/live/video-to-video/{stream}/status", timeout=10)
        answer.raise_for_status()
        gateway_status: dict[str, Any] = answer.json()["gateway_status"]
        return gateway_status

    def stop(self) -> list[int]:
        """Stop every process (each by its own pid); the pids still running afterwards (orphans)."""
        watched = [*getattr(self, "_watched", [])]
        for node in (self.a, self.b):
            watched += pids_under(node.proc.pid)
        if self.gateway is not None and self.gateway.proc.poll() is None:
            self.gateway.proc.send_signal(signal.SIGTERM)
            try:
                self.gateway.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.gateway.proc.kill()
                self.gateway.proc.wait(timeout=10)
            self.gateway._log.close()
        for node in (self.a, self.b):
            node.stop()
        return wait_gone(watched, timeout=20)


class LiveClient:
    """``lpnode live play clip`` through the network's gateway, in the background; :meth:`answer` waits for it.

    While it plays, the gateway's status of the stream is polled, so :attr:`arrivals` holds when each output
    segment arrived (monotonic seconds) and :attr:`orchestrators` every orchestrator that served it."""

    def __init__(self, network: LiveNetwork, clip: Path, frames: int, stream: str, output: Path) -> None:
        self.network, self.stream, self.frames, self.output = network, stream, frames, output
        args = [*LPNODE, "live", "play", str(clip), "--pipeline", MODEL, "--gateway", network.url]
        args += ["--params", json.dumps({"width": SIZE, "height": SIZE}), "--output", str(output), "--stream", stream]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env())
        self.arrivals: list[float] = []
        self.orchestrators: list[str] = []
        self.last: dict[str, Any] = {}
        self._watch = threading.Thread(target=self._poll, daemon=True)
        self._watch.start()

    def _poll(self) -> None:
        seen = 0
        while self.proc.poll() is None:
            try:
                status = self.network.status(self.stream)
            except (requests.RequestException, ValueError, KeyError):
                time.sleep(0.1)
                continue
            self.last = status
            if status.get("orchestrator") and status["orchestrator"] not in self.orchestrators:
                self.orchestrators.append(status["orchestrator"])
            segments = int(status.get("output_segments") or 0)
            if segments > seen:
                self.arrivals += [time.monotonic()] * (segments - seen)
                seen = segments
            time.sleep(0.1)

    def output_segments(self) -> int:
        return len(self.arrivals)

    def longest_gap(self) -> float:
        """The longest wait for output: from the start to the first segment, or between two segments."""
        times = [self.started, *self.arrivals]
        return max((b - a for a, b in itertools.pairwise(times)), default=time.monotonic() - self.started)

    def answer(self, timeout: float = PLAY_TIMEOUT) -> Answer:
        """200 when the stream came back to the end of the clip; 502 when it ended early (the message says how);
        0 when the client hung."""
        try:
            out, _ = self.proc.communicate(timeout=max(1.0, timeout - (time.monotonic() - self.started)))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate(timeout=10)
            self._watch.join(5)
            return Answer(0, time.monotonic() - self.started, f"lpnode live play hung:\n{out[-1500:]}")
        self._watch.join(5)
        last = last_frame_number(self.output)
        # noop drops frames when it is behind; the end of the clip must come back all the same.
        whole = self.proc.returncode == 0 and last >= self.frames - 1 - 3 * FPS
        message = "" if whole else f"exit {self.proc.returncode}, last frame back {last} of {self.frames}:\n{out}"
        return Answer(200 if whole else 502, self.longest_gap(), message)
