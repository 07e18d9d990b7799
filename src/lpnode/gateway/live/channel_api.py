"""Upstream's ``POST /live-video-to-video`` on the gateway: a live stream reached through trickle channels.

The route takes what a Livepeer orchestrator takes at that path (``LiveVideoToVideoParams``) and answers what
it answers, so a client written for that API (the ``livepeer-gateway`` SDK's live start, a go-livepeer
gateway) can use this gateway instead, with the gateway's orchestrator selection, swaps and API keys behind::

    POST /live-video-to-video   {"model_id": "noop", "params": {...}, "stream_id": "...", "gateway_request_id": "..."}
    200 {"publish_url": ".../ai/trickle/{mid}", "subscribe_url": ".../ai/trickle/{mid}-out",
         "control_url": ".../ai/trickle/{mid}-control", "events_url": ".../ai/trickle/{mid}-events",
         "manifest_id": "{mid}", "request_id": "..."}

The caller publishes MPEG-TS segments (each starting at an IDR) to ``publish_url``, reads the processed ones
from ``subscribe_url``, writes params to ``control_url`` (one JSON object per segment; ``{"keep":"alive"}``
is ignored) and reads the runner's events from ``events_url`` (one JSON object per segment, as the
orchestrator relays them). The body's own ``subscribe_url``/``publish_url``/``control_url``/``events_url``
are ignored, as an orchestrator ignores them; ``model_id`` defaults to ``noop``.

Behind the channels runs an ordinary live session named ``{mid}`` (:mod:`lpnode.gateway.live.sessions`), so
``/live/video-to-video/{mid}/status``, ``/update`` and ``/stop`` work on it too. Deleting the input channel
(``DELETE publish_url``) stops the stream; a stream that ends for any reason (stopped, no input for the
session's input timeout, no orchestrator left) deletes its channels, which their readers and writers see
as the channel closing. The manifest id is 16 random hex digits: with API keys on, the channel URLs are
what the key-holder was given, and nobody else can guess them.

Errors are the gateway's JSON: 400 for a body that is not a JSON object (or params that are not one), 503
when no orchestrator starts the stream; with API keys on, 401 and 429 as on every route.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from lpnode.errors import BadRequestError, JobError, PayloadTooLargeError, gateway_json_response
from lpnode.gateway.job_wrapper import Admit
from lpnode.gateway.live.sessions import LiveSession, LiveSessions
from lpnode.http_relay import read_at_most
from lpnode.logs import log_event
from lpnode.trickle import Channel, TrickleServer
from lpnode.trickle.channels import NEXT_SEQ, SegmentFullError

log = logging.getLogger("lpnode.gateway.live")
PATH = "/live-video-to-video"
TRICKLE_PATH = "/ai/trickle"
DEFAULT_PIPELINE = "noop"
MAX_BODY_BYTES = 1024 * 1024
KEEPALIVE = {"keep": "alive"}
VIDEO_MIME = "video/MP2T"
JSON_MIME = "application/json"
SUFFIXES = {"": VIDEO_MIME, "-out": VIDEO_MIME, "-control": JSON_MIME, "-events": JSON_MIME}


class ChannelApi:
    """``POST /live-video-to-video`` and the trickle server (``/ai/trickle/``) holding the streams' channels."""

    def __init__(self, live: LiveSessions, admit: Admit | None = None) -> None:
        self.live = live
        self.admit = admit
        self.trickle: TrickleServer = live.trickle

    def routes(self) -> list[BaseRoute]:
        return [
            Route(PATH, self.start, methods=["POST"]),
            Route(PATH + "/", self.start, methods=["POST"]),
            Mount(TRICKLE_PATH, app=self.trickle),
        ]

    async def start(self, request: Request) -> Response:
        try:
            body = await _json_object(request)
            model_id = str(body.get("model_id") or DEFAULT_PIPELINE)
            params = body.get("params") or {}
            if not isinstance(params, dict):
                raise BadRequestError("params must be a JSON object")
            mid = secrets.token_hex(8)
            stream_id = str(body.get("stream_id") or mid)
            authorization = request.headers.get("authorization", "")
            admission = await self.admit(authorization) if self.admit is not None else None
            try:
                session = await self.live.start(mid, model_id, params, stream_id=stream_id)
            except BaseException:
                if admission is not None:
                    admission.release()
                raise
            if admission is not None:
                session.authorization = authorization
                session.on_end(admission.release)
        except JobError as exc:
            return gateway_json_response(exc)
        self._open(session, mid)
        base = f"{self.live.public_url or str(request.base_url).rstrip('/')}{TRICKLE_PATH}/{mid}"
        log_event(log, "live stream started through channels", stream=mid, pipeline=model_id)
        return JSONResponse(
            {
                "publish_url": base,
                "subscribe_url": base + "-out",
                "control_url": base + "-control",
                "events_url": base + "-events",
                "manifest_id": mid,
                "request_id": str(body.get("gateway_request_id") or session.request_id),
            }
        )

    def _open(self, session: LiveSession, mid: str) -> None:
        """Make the stream's four channels and the tasks between them and the session; both end with it."""
        channels = {suffix: self.trickle.create_channel(mid + suffix, mime) for suffix, mime in SUFFIXES.items()}
        session.on_event(lambda event: _write(channels["-events"], json.dumps(event).encode()))
        tasks = [
            asyncio.ensure_future(_pump_input(channels[""], session)),
            asyncio.ensure_future(_pump_output(session, channels["-out"])),
            asyncio.ensure_future(_pump_control(channels["-control"], session)),
        ]

        def ended() -> None:
            for task in tasks:
                task.cancel()
            for suffix in SUFFIXES:
                self.trickle.delete_channel(mid + suffix)

        session.on_end(ended)


async def _json_object(request: Request) -> dict[str, Any]:
    def too_large() -> Exception:
        return PayloadTooLargeError(f"the body is over the limit of {MAX_BODY_BYTES} bytes")

    raw = await read_at_most(request.stream(), MAX_BODY_BYTES, too_large)
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise BadRequestError(f"the body must be JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequestError('the body must be a JSON object, e.g. {"model_id": "noop", "params": {}}')
    return body


async def channel_segments(channel: Channel) -> AsyncIterator[bytes]:
    """Each segment published whole to ``channel`` from the live edge on, until the channel is closed."""
    seq = channel.next_write
    while True:
        slot = channel.for_read(seq)
        if slot.closed:
            return
        if slot.segment is None:  # fell behind the channel's ring: go on from its live edge
            seq = slot.next_write
            continue
        segment = slot.segment
        await segment.wait_closed()
        if channel.closed:
            return
        if segment.size and not segment.aborted:
            yield segment.data()
        seq = segment.seq + 1


def _write(channel: Channel, data: bytes) -> None:
    """Publish ``data`` as the next segment of ``channel`` (in process: readers get it as from any publisher)."""
    if channel.closed:
        return
    segment = channel.for_write(NEXT_SEQ)
    channel.started(segment.seq)
    try:
        segment.write(data)
    except SegmentFullError:
        log_event(log, "live segment too large for its channel; dropped", logging.WARNING, channel=channel.name)
        return
    segment.close()


async def _pump_input(channel: Channel, session: LiveSession) -> None:
    async for segment in channel_segments(channel):
        session.publish(segment)
    if not session.ended:  # the caller deleted its input channel: the stream is over
        session.stop()  # not awaited: the stop ends this task, and must not be cancelled with it


async def _pump_output(session: LiveSession, channel: Channel) -> None:
    async for segment in session.output():
        _write(channel, segment)


async def _pump_control(channel: Channel, session: LiveSession) -> None:
    async for message in channel_segments(channel):
        with contextlib.suppress(ValueError):
            if json.loads(message) == KEEPALIVE:
                continue
        with contextlib.suppress(JobError):  # a bad message is the caller's; the stream goes on
            await session.update(message)
