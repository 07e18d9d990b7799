"""What WHIP ingest and WHEP playback share: the live-session shape they use, peer connections and SDP.

Peer connections are aiortc's, configured with no STUN or TURN server: the gateway offers the host
candidates of its own interfaces and answers only after gathering them (non-trickle ICE, as WHIP and WHEP
clients expect from go-livepeer), so the answer is complete and no PATCH is ever needed.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError, OperationError
from starlette.requests import Request

from lpnode.errors import (
    BadRequestError,
    JobError,
    PayloadTooLargeError,
    UnsupportedMediaError,
)

# aioice logs every ICE connectivity check at INFO; the gateway logs what matters (answered, started, ended).
logging.getLogger("aioice").setLevel(logging.WARNING)

MAX_SDP_BYTES = 64 * 1024
NEGOTIATION_TIMEOUT = 15.0
"""Seconds to apply an offer and gather the answer's candidates."""
_REFUSALS = (ValueError, KeyError, IndexError, TypeError, OperationError, InternalError, InvalidAccessError,
             InvalidStateError)  # fmt: skip
"""What aiortc raises for an offer it cannot use (its SDP parser raises plain ValueError/KeyError)."""
STREAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}")


class LiveStream(Protocol):
    """The part of a gateway live session (:mod:`lpnode.gateway.live.sessions`) WHIP and WHEP use."""

    @property
    def ended(self) -> bool: ...

    def publish(self, segment: bytes) -> None: ...

    def output(self) -> AsyncIterator[bytes]: ...

    def stop(self) -> Awaitable[None] | None: ...


class LiveStreams(Protocol):
    """The gateway's live sessions, ``gateway.live``."""

    async def start(self, stream: str, model_id: str, params: dict[str, Any], *, stream_id: str = "") -> Any: ...

    def get(self, stream: str) -> Any: ...


def check_stream_name(stream: str) -> str:
    if not STREAM_NAME.fullmatch(stream):
        raise BadRequestError(
            f"stream name {stream[:60]!r} is not usable: use 1 to 128 letters, digits, '.', '_', '~' or '-'"
        )
    return stream


async def read_offer(request: Request) -> str:
    """The SDP offer in a WHIP/WHEP POST: 415 unless ``Content-Type: application/sdp``, 413 over
    ``MAX_SDP_BYTES``, 400 if it is not SDP text."""
    media_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media_type != "application/sdp":
        raise UnsupportedMediaError(
            f"send the SDP offer with Content-Type: application/sdp (got {media_type or 'no content type'})"
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_SDP_BYTES:
            raise PayloadTooLargeError(f"the SDP offer is over {MAX_SDP_BYTES} bytes")
    try:
        sdp = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequestError("the SDP offer is not UTF-8 text") from None
    if not sdp.startswith("v=0") or "\nm=" not in sdp:
        raise BadRequestError("the body is not an SDP offer (it must start with v=0 and have m= lines)")
    return sdp


def new_peer() -> RTCPeerConnection:
    """A peer connection with host candidates only (no STUN/TURN servers are contacted)."""
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def answer(pc: RTCPeerConnection, offer: str, attach: Callable[[RTCPeerConnection], None]) -> str:
    """Apply ``offer``, let ``attach`` add tracks or read the remote ones, and return the complete answer SDP.

    Raises :class:`BadRequestError` if aiortc refuses the offer (no usable codec, malformed lines).
    """

    async def negotiate() -> str:
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        except _REFUSALS as exc:
            raise BadRequestError(f"the SDP offer cannot be used: {exc}") from None
        attach(pc)
        try:
            await pc.setLocalDescription(await pc.createAnswer())
        except _REFUSALS as exc:
            raise BadRequestError(f"no answer fits the SDP offer: {exc}") from None
        return str(pc.localDescription.sdp)

    try:
        return await asyncio.wait_for(negotiate(), NEGOTIATION_TIMEOUT)
    except TimeoutError:
        raise JobError("gathering ICE candidates took too long") from None


def running(live: LiveStreams, stream: str) -> LiveStream | None:
    """The stream of that name if it is running (the sessions also keep ended streams for a while)."""
    session: LiveStream | None = live.get(stream)
    return None if session is None or session.ended else session


async def stop_session(session: LiveStream) -> None:
    """Call ``session.stop()``, awaiting it when it is a coroutine."""
    result = session.stop()
    if result is not None:
        await result
