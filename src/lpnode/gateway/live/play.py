"""``lpnode live play``: stream a local video file through a gateway's live pipeline and save the output (the
command's flags: :mod:`lpnode.gateway.live.play_command`).

    lpnode live play clip.mp4 --pipeline noop --output out.ts

The file is decoded with PyAV and re-encoded to H.264 MPEG-TS segments of about one second, each starting
at an IDR (:class:`~lpnode.gateway.live.ts_segmenter.TsSegmenter`, the segmenter WHIP ingest uses; audio
goes along as AAC). The stream is started with ``POST /live/video-to-video/{stream}/start``; each segment
is sent with ``POST .../segment`` when its time comes (real time, as a camera would), while
``GET .../output`` is written to ``--output`` (MPEG-TS as it arrives; ``.mp4`` is remuxed at the end).
After the input, the output is read until it stops arriving, then the stream is stopped with
``POST .../stop`` and its final status printed. Ctrl-C stops the stream too.

It talks to the gateway, not to an orchestrator, so the stream is selected, paid for, swapped and observed
exactly like one coming from a browser over WHIP.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp

from lpnode.errors import ConfigError, LpnodeError

PREFIX = "/live/video-to-video"
DRAIN_QUIET = 3.0
"""After the input, seconds without new output that end the wait for it."""
DRAIN_MAX = 30.0
REQUEST_TIMEOUT = 60.0


class PlayError(LpnodeError):
    """The gateway refused or failed the stream."""


class Player:
    def __init__(
        self, file: Path, pipeline: str, params: dict[str, Any], gateway: str, output: Path, stream: str,
        args: argparse.Namespace,
    ) -> None:  # fmt: skip
        self.file = file
        self.pipeline = pipeline
        self.params = params
        self.gateway = gateway
        self.output = output
        self.stream = stream
        self.seconds = float(args.seconds)
        self.segment_seconds = float(args.segment_seconds)
        self.base = f"{gateway}{PREFIX}/{stream}"
        self.sent = 0
        self.dropped = 0
        self.received = 0
        self.last_output = 0.0

    async def run(self) -> int:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            started = await self._start(http)
            print(f"stream {self.stream}: pipeline {self.pipeline} on {started.get('orchestrator', '?')}", flush=True)
            ts_path = self.output if self.output.suffix.lower() == ".ts" else self.output.with_suffix(".part.ts")
            reader = asyncio.ensure_future(self._read_output(http, ts_path))
            try:
                await self._send_input(http)
                await self._drain(reader)
            finally:
                status = await self._stop(http)
                with contextlib.suppress(asyncio.TimeoutError, aiohttp.ClientError):
                    await asyncio.wait_for(reader, 10)
                reader.cancel()
        if self.output.suffix.lower() == ".mp4" and ts_path.exists():
            await asyncio.to_thread(remux_to_mp4, ts_path, self.output)
            ts_path.unlink()
        gateway_status = status.get("gateway_status", {}) if isinstance(status, dict) else {}
        print(
            f"sent {self.sent} segments ({self.dropped} dropped by the gateway), "
            f"received {self.received} bytes of output into {self.output}",
            flush=True,
        )
        if gateway_status:
            print(
                f"gateway: state {gateway_status.get('state')}, {gateway_status.get('output_segments')} output "
                f"segments, {gateway_status.get('swaps')} orchestrator swaps"
                + (f", last error: {gateway_status['last_error']}" if gateway_status.get("last_error") else ""),
                flush=True,
            )
        return 0 if self.received else 1

    async def _start(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        body = {"model_id": self.pipeline, "params": self.params}
        try:
            async with http.post(
                f"{self.base}/start", json=body, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
            ) as answer:
                text = await answer.text()
                if answer.status != 200:
                    raise PlayError(f"the gateway refused the stream (HTTP {answer.status}): {_message(text)}")
                data: dict[str, Any] = json.loads(text)
                return data
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PlayError(f"cannot reach the gateway at {self.gateway}: {exc or type(exc).__name__}") from None

    async def _send_input(self, http: aiohttp.ClientSession) -> None:
        segments = encode_segments(self.file, self.segment_seconds, self.seconds)
        started = time.monotonic()
        while True:
            item = await asyncio.to_thread(next, segments, None)
            if item is None:
                return
            due, segment = item
            wait = started + due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            async with http.post(
                f"{self.base}/segment", data=segment, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
            ) as answer:
                text = await answer.text()
                if answer.status != 200:
                    raise PlayError(f"the gateway stopped taking input (HTTP {answer.status}): {_message(text)}")
                self.sent += 1
                if json.loads(text).get("dropped"):
                    self.dropped += 1

    async def _read_output(self, http: aiohttp.ClientSession, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            async with http.get(f"{self.base}/output") as answer:
                if answer.status != 200:
                    raise PlayError(f"the gateway refused the output (HTTP {answer.status})")
                async for chunk in answer.content.iter_any():
                    out.write(chunk)
                    self.received += len(chunk)
                    self.last_output = time.monotonic()

    async def _drain(self, reader: asyncio.Future[None]) -> None:
        """Wait for the output of the last input: until none arrived for a while (bounded)."""
        deadline = time.monotonic() + DRAIN_MAX
        since = time.monotonic()
        while time.monotonic() < deadline and not reader.done():
            quiet = time.monotonic() - max(self.last_output, since)
            if quiet > DRAIN_QUIET:
                return
            await asyncio.sleep(0.2)

    async def _stop(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        try:
            async with http.post(f"{self.base}/stop", timeout=aiohttp.ClientTimeout(total=30)) as answer:
                if answer.status == 200:
                    status: dict[str, Any] = await answer.json()
                    return status
        except (aiohttp.ClientError, TimeoutError, ValueError):
            pass
        return {}


def encode_segments(file: Path, segment_seconds: float, max_seconds: float = 0.0) -> Iterator[tuple[float, bytes]]:
    """``(due, segment)`` pairs: H.264 MPEG-TS segments of the file's video (and audio, as AAC), each due
    ``due`` seconds after the first frame (the time its last frame is shown, so sending it then is real time)."""
    import av

    from lpnode.gateway.live.ts_segmenter import TIME_BASE, TsSegmenter

    try:
        container = av.open(str(file))
    except (av.FFmpegError, OSError) as exc:
        raise ConfigError(f"{file}: cannot read it as video: {exc}") from None
    with container:
        if not container.streams.video:
            raise ConfigError(f"{file}: has no video stream")
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        rate = round(video.average_rate or 30)
        segmenter = TsSegmenter(
            audio=audio is not None, min_segment=segment_seconds, keyframe_interval=segment_seconds, frame_rate=rate
        )
        first: Fraction | None = None
        last = Fraction(0)
        streams = [video, *([audio] if audio is not None else [])]
        try:
            for frame in container.decode(*streams):
                if not isinstance(frame, av.VideoFrame | av.AudioFrame) or frame.pts is None or not frame.time_base:
                    continue
                at = Fraction(frame.pts) * frame.time_base
                first = at if first is None else first
                offset = at - first
                if max_seconds and offset >= max_seconds:
                    break
                pts = round(offset / TIME_BASE)
                if isinstance(frame, av.VideoFrame):
                    done = segmenter.push_video(frame, pts)
                    last = max(last, offset)
                else:
                    done = segmenter.push_audio(frame, pts)
                for segment in done:
                    yield float(offset), segment
        except av.FFmpegError as exc:
            raise ConfigError(f"{file}: cannot decode it: {exc}") from None
        for segment in segmenter.close():
            yield float(last), segment


def remux_to_mp4(source: Path, target: Path) -> None:
    """Copy the MPEG-TS ``source``'s streams into an MP4 ``target`` without re-encoding."""
    import av

    with av.open(str(source)) as inp, av.open(str(target), "w", format="mp4") as out:
        mapping = {}
        for stream in inp.streams:
            if stream.type in ("video", "audio"):
                mapping[stream.index] = out.add_stream_from_template(stream)
        for packet in inp.demux(*[s for s in inp.streams if s.index in mapping]):
            if packet.dts is None:
                continue
            packet.stream = mapping[packet.stream.index]
            out.mux(packet)


def _message(text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:300]
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
    return text.strip()[:300]
