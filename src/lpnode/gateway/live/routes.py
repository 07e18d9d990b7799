"""The gateway's live video HTTP API, on the public port, under ``/live/video-to-video/{stream}/``.

go-livepeer's routes:

- ``POST .../start``: start the stream. JSON ``{"model_id" (or "pipeline"), "params", "stream_id"}``, or
  go-livepeer's form fields (``source_id``, ``source_type``, ``query`` holding ``pipeline=...&params=...``, as
  MediaMTX's ``runOnReady`` hook sends them), or the same as URL query parameters. The pipeline defaults to
  ``noop``. Answers JSON with the stream's URLs (go-livepeer answers an empty 200).
- ``POST .../update``: the body (a JSON object of params) becomes one control message; kept and sent again
  after an orchestrator swap. 404 for an unknown stream.
- ``GET .../status``: the runner's last status event plus ``gateway_status``; readable for a minute after the
  stream ended. 404 for an unknown stream.

lpnode's additions, so any HTTP client can push and play a stream without WebRTC or RTMP:

- ``POST .../segment``: one MPEG-TS segment (starting at an IDR) as the body, handed to the stream as input;
  answers at once with ``{"dropped": bool}`` (a segment is dropped when 3 are still being sent).
- ``GET .../output``: the processed output as one continuous MPEG-TS body (output segments back to back, from
  the live edge on, until the stream ends): ``curl -N URL > out.ts`` or ``ffplay URL``.
- ``POST .../stop``: end the stream; answers its final status.

With API keys on (``--auth keys``), ``start`` admits the stream under the caller's key for its whole life, and
the stream's other routes need the same ``Authorization`` header (401).

Upstream's ``POST /live-video-to-video`` (a stream reached through trickle channels the gateway hosts under
``/ai/trickle/``) comes from :mod:`lpnode.gateway.live.channel_api`.

WHIP/WHEP routes (``.../whip``, ``.../whep``) are added by the WebRTC module through :attr:`LiveRoutes.extra_routes`.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from lpnode.errors import (
    BadRequestError,
    ConflictError,
    JobError,
    NotFoundError,
    PayloadTooLargeError,
    UnauthorizedError,
    gateway_json_response,
)
from lpnode.gateway.job_wrapper import Admit
from lpnode.gateway.live.channel_api import ChannelApi
from lpnode.gateway.live.sessions import LiveSession, LiveSessions
from lpnode.http_relay import read_at_most

PREFIX = "/live/video-to-video"
DEFAULT_PIPELINE = "noop"
MAX_PARAMS_BYTES = 1024 * 1024
MAX_SEGMENT_BYTES = 32 * 1024 * 1024
_STREAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


class LiveRoutes:
    """The live routes of one gateway. ``extra_routes`` (WHIP, WHEP, pages) are mounted beside them."""

    def __init__(self, live: LiveSessions, admit: Admit | None = None) -> None:
        self.live = live
        self.admit = admit
        """With API keys on: a stream is started under a key (it counts among the key's requests until the
        stream ends), and its other routes need the same ``Authorization`` header."""
        self.extra_routes: list[BaseRoute] = []

    def routes(self) -> list[BaseRoute]:
        return [
            *ChannelApi(self.live, self.admit).routes(),
            Route(PREFIX + "/{stream}/start", self.start, methods=["POST"]),
            Route(PREFIX + "/{stream}/update", self.update, methods=["POST"]),
            Route(PREFIX + "/{stream}/status", self.status, methods=["GET"]),
            Route(PREFIX + "/{stream}/stop", self.stop, methods=["POST"]),
            Route(PREFIX + "/{stream}/segment", self.segment, methods=["POST"]),
            Route(PREFIX + "/{stream}/output", self.output, methods=["GET"]),
            *self.extra_routes,
        ]

    def urls(self, stream: str) -> dict[str, str]:
        base = f"{self.live.public_url}{PREFIX}/{stream}"
        names = ("update", "status", "stop", "segment", "output", "whip", "whep")
        return {f"{name}_url": f"{base}/{name}" for name in names}

    # --- handlers ---------------------------------------------------------------------------------------

    async def start(self, request: Request) -> Response:
        try:
            stream = _stream_name(request)
            fields = await _start_fields(request)
            model_id = str(fields.get("model_id") or fields.get("pipeline") or DEFAULT_PIPELINE)
            params = _params(fields.get("params"))
            stream_id = str(fields.get("stream_id") or fields.get("streamId") or "")
            authorization = request.headers.get("authorization", "")
            admission = await self.admit(authorization) if self.admit is not None else None
            try:
                session = await self.live.start(stream, model_id, params, stream_id=stream_id)
            except BaseException:
                if admission is not None:
                    admission.release()
                raise
            if admission is not None:
                session.authorization = authorization
                session.on_end(admission.release)
        except JobError as exc:
            return gateway_json_response(exc)
        gateway_status = session.status()["gateway_status"]
        return JSONResponse(
            {
                "stream": stream,
                "stream_id": session.stream_id,
                "request_id": session.request_id,
                "pipeline": model_id,
                "orchestrator": gateway_status["orchestrator"],
                "manifest_id": gateway_status["manifest_id"],
                **self.urls(stream),
            }
        )

    async def update(self, request: Request) -> Response:
        try:
            session = self._session(request)
            body = await _body(request, MAX_PARAMS_BYTES)
            if session.ended:
                raise ConflictError(f"stream {session.stream!r} has ended")
            await session.update(body)
        except JobError as exc:
            return gateway_json_response(exc)
        return Response(status_code=200)

    async def status(self, request: Request) -> Response:
        try:
            session = self._session(request)
        except JobError as exc:
            return gateway_json_response(exc)
        return JSONResponse(session.status())

    async def stop(self, request: Request) -> Response:
        try:
            session = self._session(request)
        except JobError as exc:
            return gateway_json_response(exc)
        await session.stop()
        return JSONResponse(session.status())

    async def segment(self, request: Request) -> Response:
        try:
            session = self._session(request)
            body = await _body(request, MAX_SEGMENT_BYTES)
            if session.ended:
                raise ConflictError(f"stream {session.stream!r} has ended ({session.ended_by})")
            if not body:
                raise BadRequestError("the body must be one MPEG-TS segment")
        except JobError as exc:
            return gateway_json_response(exc)
        before = session.input_dropped
        session.publish(body)
        return JSONResponse({"dropped": session.input_dropped > before})

    async def output(self, request: Request) -> Response:
        try:
            session = self._session(request)
            if session.ended:
                raise ConflictError(f"stream {session.stream!r} has ended ({session.ended_by})")
        except JobError as exc:
            return gateway_json_response(exc)
        return StreamingResponse(_segments(session), media_type="video/MP2T", headers={"Cache-Control": "no-cache"})

    def _session(self, request: Request) -> LiveSession:
        stream = request.path_params["stream"]
        session = self.live.get(stream)
        if session is None:
            raise NotFoundError(f"no live stream named {stream!r}; start it with POST {PREFIX}/{stream}/start")
        given = request.headers.get("authorization", "")
        if self.admit is not None and not hmac.compare_digest(given.encode(), session.authorization.encode()):
            raise UnauthorizedError(f"stream {stream!r} was started with another API key; send that key")
        return session


async def _segments(session: LiveSession) -> AsyncIterator[bytes]:
    async for chunk in session.output_bytes():
        yield chunk


def _stream_name(request: Request) -> str:
    stream = str(request.path_params["stream"])
    if not _STREAM_NAME.match(stream):
        raise BadRequestError(
            f"stream name {stream!r} must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    if stream.endswith("-out"):
        raise BadRequestError("stream names ending in -out name output streams; choose another name")
    return stream


async def _body(request: Request, limit: int) -> bytes:
    too_large = f"the body is over the limit of {limit} bytes"
    return await read_at_most(request.stream(), limit, lambda: PayloadTooLargeError(too_large))


async def _start_fields(request: Request) -> dict[str, Any]:
    """The start request's fields: URL query parameters, overridden by form fields (and the ``query``
    field go-livepeer's MediaMTX hook sends), overridden by a JSON body."""
    fields: dict[str, Any] = dict(request.query_params)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        async with request.form(max_files=0, max_part_size=MAX_PARAMS_BYTES) as form:
            for key, value in form.items():
                if not isinstance(value, UploadFile):
                    fields[key] = value
        for key, values in parse_qs(str(fields.get("query") or "").lstrip("?")).items():
            fields.setdefault(key, values[0])
        return fields
    raw = await _body(request, MAX_PARAMS_BYTES)
    if raw.strip():
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise BadRequestError(f"the body must be JSON: {exc}") from None
        if not isinstance(body, dict):
            raise BadRequestError('the body must be a JSON object, e.g. {"model_id": "noop", "params": {}}')
        fields.update(body)
    return fields


def _params(value: Any) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise BadRequestError(f"params must be a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequestError("params must be a JSON object")
    return value
