"""The gateway's WHIP and WHEP routes (public port).

- ``POST /live/video-to-video/{stream}/whip`` with an SDP offer (``Content-Type: application/sdp``, else 415),
  query ``pipeline`` (the live model, default ``noop``), ``params`` (URL-encoded JSON object) and ``streamId``
  (an id for the stream's events, default the stream name): starts the live stream if it is not running,
  answers ``201`` with the SDP answer, ``Location`` (the WHIP resource: ``DELETE`` ends the ingest and stops
  the stream), ``ETag`` and ``Livepeer-Playback-URL`` (the WHEP URL). ``HEAD`` → 405, ``OPTIONS`` → 204.
  One publisher per stream (409 for a second).
- ``POST /live/video-to-video/{stream}/whep`` (also spelled ``{stream}-out`` or ``{stream}-{id}-out``, as
  go-livepeer advertises it): plays the stream's output; 404 for an unknown stream, 503 past
  ``max_viewers`` viewers of one stream. ``DELETE`` on its ``Location`` ends it; ``PATCH`` → 501 (no
  trickle ICE: answers carry every candidate).

Responses carry permissive CORS headers so a page on another origin can publish and play, as WHIP/WHEP
clients in browsers need. With API keys on (``--auth keys``) a WHIP offer needs ``Authorization: Bearer``;
playback does not.

WebRTC needs the ``media`` pip extra (aiortc, PyAV); without it the gateway serves everything else and these
routes answer 501 with the ``pip install`` that adds it.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from lpnode.errors import (
    BadRequestError,
    ConfigError,
    ConflictError,
    JobError,
    LpnodeError,
    NotFoundError,
    NotInstalledError,
    UnavailableError,
    gateway_json_response,
)
from lpnode.extras import MEDIA, installed, missing_message
from lpnode.gateway.key_guard import KeyAdmission
from lpnode.logs import log_event

# aiortc and PyAV (the media extra) are imported by the handlers that use them, so a core install serves the rest.
if TYPE_CHECKING:
    from lpnode.gateway.live.webrtc import LiveStream, LiveStreams
    from lpnode.gateway.live.whep import WhepViewer
    from lpnode.gateway.live.whip import WhipIngest

log = logging.getLogger("lpnode.gateway.webrtc")
PREFIX = "/live/video-to-video"
DEFAULT_PIPELINE = "noop"
DEFAULT_MAX_VIEWERS = 5
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, DELETE, PATCH, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, ETag, Link, Accept-Patch, Livepeer-Playback-URL",
}


class WebRtcRoutes:
    """WHIP ingest and WHEP playback for the live sessions ``live()`` returns (``gateway.live``)."""

    def __init__(
        self,
        live: Callable[[], LiveStreams | None],
        *,
        admit: Callable[[str | None], Awaitable[KeyAdmission]] | None = None,
        max_viewers: int | None = DEFAULT_MAX_VIEWERS,
        idle_timeout: float = 30.0,
    ) -> None:
        """``max_viewers`` None means no limit."""
        self._live = live
        self._admit = admit
        self.max_viewers = max_viewers
        self.idle_timeout = idle_timeout
        self.ingests: dict[str, WhipIngest] = {}
        self.viewers: dict[str, WhepViewer] = {}
        self._publishing: set[str] = set()

    @classmethod
    def from_env(
        cls,
        live: Callable[[], LiveStreams | None],
        *,
        admit: Callable[[str | None], Awaitable[KeyAdmission]] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> WebRtcRoutes:
        """Limits from ``LPNODE_LIVE_WHEP_MAX_SESSIONS`` (viewers per stream, or ``unlimited``; default 5) and
        ``LPNODE_LIVE_WHIP_IDLE_TIMEOUT`` (seconds without video before a publisher is dropped; default 30).
        Raises :class:`ConfigError` for a value that is not a positive number."""
        env = os.environ if env is None else env
        viewers = env.get("LPNODE_LIVE_WHEP_MAX_SESSIONS", str(DEFAULT_MAX_VIEWERS)).strip()
        idle = env.get("LPNODE_LIVE_WHIP_IDLE_TIMEOUT", "30").strip()
        try:
            max_viewers = None if viewers.lower() == "unlimited" else int(viewers)
            idle_timeout = float(idle)
        except ValueError:
            max_viewers, idle_timeout = 0, 0.0
        if (max_viewers is not None and max_viewers < 1) or not idle_timeout > 0:
            raise ConfigError(
                "LPNODE_LIVE_WHEP_MAX_SESSIONS must be a positive whole number or 'unlimited' and "
                f"LPNODE_LIVE_WHIP_IDLE_TIMEOUT a positive number of seconds; got {viewers!r} and {idle!r}"
            )
        return cls(live, admit=admit, max_viewers=max_viewers, idle_timeout=idle_timeout)

    def routes(self) -> list[Route]:
        return [
            Route(f"{PREFIX}/{{stream}}/whip", self.whip, methods=["POST", "OPTIONS", "HEAD"]),
            Route(f"{PREFIX}/{{stream}}/whip/{{resource}}", self.whip_resource, methods=["DELETE", "PATCH", "OPTIONS"]),
            Route(f"{PREFIX}/{{stream}}/whep", self.whep, methods=["POST", "OPTIONS", "HEAD", "PATCH"]),
            Route(f"{PREFIX}/{{stream}}/whep/{{resource}}", self.whep_resource, methods=["DELETE", "PATCH", "OPTIONS"]),
        ]

    async def close(self) -> None:
        """End every ingest and viewer (the gateway is stopping)."""
        for ingest in list(self.ingests.values()):
            await ingest.close("the gateway is stopping")
        for viewer in list(self.viewers.values()):
            await viewer.close("the gateway is stopping")

    async def whip(self, request: Request) -> Response:
        if (early := _preflight(request)) is not None:
            return early
        stream = request.path_params["stream"]
        reserved = False
        admission: KeyAdmission | None = None
        try:
            _require_media("WHIP ingest")
            from lpnode.gateway.live.webrtc import check_stream_name, read_offer

            check_stream_name(stream)
            if stream.endswith("-out"):
                raise BadRequestError(f"stream name {stream!r} ends in -out, which names a stream's output")
            live = self._streams()
            if self._admit is not None:
                admission = await self._admit(request.headers.get("authorization"))
            offer = await read_offer(request)
            pipeline = request.query_params.get("pipeline") or request.query_params.get("model_id")
            params = _params(request.query_params.get("params"))
            if stream in self._publishing:
                raise ConflictError(f"stream {stream!r} already has a WHIP publisher; DELETE its resource first")
            self._publishing.add(stream)
            reserved = True
            stream_id = request.query_params.get("streamId", "")
            response = await self._ingest(request, live, stream, pipeline or DEFAULT_PIPELINE, params, offer, stream_id)
            reserved = False  # the ingest holds the name now
            return response
        except JobError as exc:
            return _with_cors(gateway_json_response(exc))
        finally:
            if reserved:
                self._publishing.discard(stream)
            if admission is not None:
                admission.release()

    async def _ingest(
        self,
        request: Request,
        live: LiveStreams,
        stream: str,
        pipeline: str,
        params: dict[str, Any],
        offer: str,
        stream_id: str,
    ) -> Response:
        from lpnode.gateway.live.webrtc import answer, new_peer, running, stop_session
        from lpnode.gateway.live.whip import WhipIngest

        session = running(live, stream)
        started_here = session is None
        if session is None:
            session = await _start(live, stream, pipeline, params, stream_id)
        pc = new_peer()
        resource = secrets.token_urlsafe(12)
        ingest = WhipIngest(
            stream, session, pc, idle_timeout=self.idle_timeout, on_end=lambda _: self._ingest_ended(stream, resource)
        )
        try:
            sdp = await answer(pc, offer, lambda _: None)
            if not ingest.has_video:
                raise BadRequestError("the WHIP offer has no video track to send")
        except BaseException:
            await pc.close()
            if started_here:
                await stop_session(session)
            raise
        self.ingests[resource] = ingest
        ingest.start()
        base = str(request.base_url).rstrip("/")
        log_event(log, "whip offer answered", stream=stream, pipeline=pipeline, resource=resource)
        return Response(
            sdp,
            status_code=201,
            media_type="application/sdp",
            headers={
                **CORS,
                "Location": f"{base}{PREFIX}/{stream}/whip/{resource}",
                "ETag": f'"{resource}"',
                "Livepeer-Playback-URL": f"{base}{PREFIX}/{stream}-out/whep",
            },
        )

    def _ingest_ended(self, stream: str, resource: str) -> None:
        self.ingests.pop(resource, None)
        self._publishing.discard(stream)

    async def whip_resource(self, request: Request) -> Response:
        if (early := _preflight(request)) is not None:
            return early
        ingest = self.ingests.get(request.path_params["resource"])
        if ingest is None or ingest.stream != request.path_params["stream"]:
            return _with_cors(gateway_json_response(NotFoundError("no such WHIP resource (it may have ended)")))
        await ingest.close("the publisher deleted the WHIP resource")
        return PlainTextResponse("ended\n", headers=CORS)

    async def whep(self, request: Request) -> Response:
        if (early := _preflight(request)) is not None:
            return early
        try:
            _require_media("WHEP playback")
            from lpnode.gateway.live.webrtc import answer, check_stream_name, new_peer, read_offer
            from lpnode.gateway.live.whep import WhepViewer

            spelled = check_stream_name(request.path_params["stream"])
            live = self._streams()
            offer = await read_offer(request)
            stream, session = _find_output(live, spelled)
            watching = sum(1 for viewer in self.viewers.values() if viewer.stream == stream)
            if self.max_viewers is not None and watching >= self.max_viewers:
                raise UnavailableError(
                    f"stream {stream!r} already has {watching} WHEP viewers, the most this gateway serves",
                    retry_after=10,
                )
            pc = new_peer()
            resource = secrets.token_urlsafe(12)
            viewer = WhepViewer(stream, session, pc, on_end=lambda _: self._viewer_ended(resource))
            try:
                sdp = await answer(pc, offer, viewer.attach)
            except BaseException:
                await pc.close()
                raise
        except JobError as exc:
            return _with_cors(gateway_json_response(exc))
        self.viewers[resource] = viewer
        viewer.start()
        base = str(request.base_url).rstrip("/")
        log_event(log, "whep offer answered", stream=stream, resource=resource)
        return Response(
            sdp,
            status_code=201,
            media_type="application/sdp",
            headers={**CORS, "Location": f"{base}{PREFIX}/{spelled}/whep/{resource}", "ETag": f'"{resource}"'},
        )

    def _viewer_ended(self, resource: str) -> None:
        self.viewers.pop(resource, None)

    async def whep_resource(self, request: Request) -> Response:
        if (early := _preflight(request)) is not None:
            return early
        viewer = self.viewers.get(request.path_params["resource"])
        if viewer is None:
            return _with_cors(gateway_json_response(NotFoundError("no such WHEP resource (it may have ended)")))
        await viewer.close("the viewer deleted the WHEP resource")
        return PlainTextResponse("ended\n", headers=CORS)

    def _streams(self) -> LiveStreams:
        live = self._live()
        if live is None:
            raise UnavailableError("live video is not available on this gateway", retry_after=5)
        return live


def _require_media(what: str) -> None:
    if not installed(MEDIA):
        raise NotInstalledError(missing_message(MEDIA, f"{what} on this gateway"))


def _preflight(request: Request) -> Response | None:
    """The answer to OPTIONS, HEAD and PATCH, which never reach a handler's main path."""
    if request.method == "OPTIONS":
        return Response(status_code=204, headers={**CORS, "Accept-Post": "application/sdp"})
    if request.method == "HEAD":
        return Response(status_code=405, headers={**CORS, "Allow": "POST, OPTIONS"})
    if request.method == "PATCH":
        return PlainTextResponse(
            "trickle ICE and ICE restarts are not supported: the SDP answer already holds every candidate\n",
            status_code=501,
            headers=CORS,
        )
    return None


def _with_cors(response: Response) -> Response:
    response.headers.update(CORS)
    return response


def _params(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        params = json.loads(raw)
    except ValueError as exc:
        raise BadRequestError(f"the params query parameter is not JSON: {exc}") from None
    if not isinstance(params, dict):
        raise BadRequestError("the params query parameter must be a JSON object")
    return params


async def _start(live: LiveStreams, stream: str, pipeline: str, params: dict[str, Any], stream_id: str) -> LiveStream:
    try:
        session: LiveStream = await live.start(stream, pipeline, params, stream_id=stream_id)
    except JobError:
        raise
    except LpnodeError as exc:
        raise JobError(f"the live stream could not start: {exc}") from None
    return session


def _find_output(live: LiveStreams, spelled: str) -> tuple[str, LiveStream]:
    """The stream behind a WHEP path segment: ``name``, ``name-out`` or ``name-{request id}-out``."""
    from lpnode.gateway.live.webrtc import running

    candidates = [spelled]
    if spelled.endswith("-out"):
        base = spelled.removesuffix("-out")
        candidates.append(base)
        if "-" in base:
            candidates.append(base.rsplit("-", 1)[0])
    for name in candidates:
        session = running(live, name)
        if session is not None:
            return name, session
    raise NotFoundError(f"no live stream named {spelled!r} on this gateway")
