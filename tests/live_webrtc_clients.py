"""WHIP and WHEP clients for tests, built on aiortc: a publisher of numbered synthetic frames and a viewer
that reads the numbers back out of the frames it receives.

A frame's number is drawn as 16 black or white 16×16 blocks (one bit each) on a 64×64 picture, which
survives the lossy encodes between publisher and viewer (H.264 at the gateway and the runner, then VP8 or
H.264 over WebRTC).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from dataclasses import dataclass, field

import aiohttp
import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from multidict import CIMultiDict

SIZE = 64
BLOCK = 16
FPS = 30


def numbered_picture(number: int) -> np.ndarray:
    picture = np.zeros((SIZE, SIZE, 3), np.uint8)
    for bit in range(16):
        if number >> bit & 1:
            row, col = divmod(bit, SIZE // BLOCK)
            picture[row * BLOCK : (row + 1) * BLOCK, col * BLOCK : (col + 1) * BLOCK] = 255
    return picture


def read_number(frame: av.VideoFrame) -> int:
    picture = frame.to_ndarray(format="rgb24", width=SIZE, height=SIZE)
    number = 0
    for bit in range(16):
        row, col = divmod(bit, SIZE // BLOCK)
        block = picture[row * BLOCK + 4 : (row + 1) * BLOCK - 4, col * BLOCK + 4 : (col + 1) * BLOCK - 4]
        if block.mean() > 128:
            number |= 1 << bit
    return number


class NumberedTrack(MediaStreamTrack):
    """Video frames numbered 1, 2, 3, … at ``FPS`` frames a second, for at most ``limit`` frames."""

    kind = "video"

    def __init__(self, limit: int = 100_000) -> None:
        super().__init__()
        self.sent = 0
        self.limit = limit
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live" or self.sent >= self.limit:
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self.sent / FPS
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        self.sent += 1
        frame = av.VideoFrame.from_ndarray(numbered_picture(self.sent), format="rgb24")
        frame.pts = (self.sent - 1) * (90000 // FPS)
        frame.time_base = fractions.Fraction(1, 90000)
        return frame


@dataclass
class Answered:
    status: int
    headers: CIMultiDict[str]
    body: str
    pc: RTCPeerConnection | None = None


_OPEN: list[RTCPeerConnection] = []


def peer() -> RTCPeerConnection:
    """A client peer connection; :func:`close_peers` closes every one made."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    _OPEN.append(pc)
    return pc


async def close_peers() -> None:
    """Close every client peer connection (their threads would otherwise keep the test process alive)."""
    while _OPEN:
        await _OPEN.pop().close()


async def post_offer(http: aiohttp.ClientSession, url: str, pc: RTCPeerConnection, **headers: str) -> Answered:
    """POST ``pc``'s offer (after gathering) and apply a 201's answer."""
    await pc.setLocalDescription(await pc.createOffer())
    async with http.post(
        url, data=pc.localDescription.sdp.encode(), headers={"Content-Type": "application/sdp", **headers}
    ) as response:
        answered = Answered(response.status, CIMultiDict(response.headers), await response.text(), pc)
    if answered.status == 201:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answered.body, type="answer"))
    return answered


async def publish(
    http: aiohttp.ClientSession, url: str, track: MediaStreamTrack, audio: MediaStreamTrack | None = None
) -> Answered:
    pc = peer()
    pc.addTransceiver(track, direction="sendonly")
    if audio is not None:
        pc.addTransceiver(audio, direction="sendonly")
    return await post_offer(http, url, pc)


@dataclass
class Viewer:
    """A WHEP viewer: received frame numbers in arrival order."""

    pc: RTCPeerConnection
    answered: Answered
    numbers: list[int] = field(default_factory=list)
    audio_frames: int = 0
    task: asyncio.Task[None] | None = None
    track_ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def collect(self, count: int, timeout: float) -> list[int]:
        """Wait (at most ``timeout`` s) until ``count`` frames arrived; the numbers seen so far."""
        deadline = time.monotonic() + timeout
        while len(self.numbers) < count and time.monotonic() < deadline:
            if self.task is not None and self.task.done():
                break
            await asyncio.sleep(0.1)
        return list(self.numbers)


async def view(http: aiohttp.ClientSession, url: str, *, audio: bool = False) -> Viewer:
    pc = peer()
    pc.addTransceiver("video", direction="recvonly")
    if audio:
        pc.addTransceiver("audio", direction="recvonly")
    tracks: asyncio.Queue[MediaStreamTrack] = asyncio.Queue()
    viewer = Viewer(pc, Answered(0, CIMultiDict(), ""))

    async def count_audio(track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                viewer.audio_frames += 1

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "video":
            tracks.put_nowait(track)
        else:
            audio_tasks.append(asyncio.ensure_future(count_audio(track)))

    audio_tasks: list[asyncio.Task[None]] = []
    viewer.answered = answered = await post_offer(http, url, pc)
    if answered.status == 201:

        async def read() -> None:
            track = await tracks.get()
            viewer.track_ready.set()
            try:
                while True:
                    frame = await track.recv()
                    assert isinstance(frame, av.VideoFrame)
                    viewer.numbers.append(read_number(frame))
            except MediaStreamError:
                return

        viewer.task = asyncio.ensure_future(read())
    return viewer
