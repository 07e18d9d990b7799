"""A live pipeline as a **persistent** Live Runner app: one reserved session, one stream over trickle channels
the orchestrator holds.

A client reserves a session (``POST {orch}/apps/{runner}/session``) and calls the app under its ``app_url``;
the orchestrator adds the session headers on the way here. Routes (all need those headers: 400 otherwise):

- ``POST /stream/start`` JSON ``{"params": {...}, "model_id": ""}``: creates the session's channels ``in``,
  ``out`` (MPEG-TS), ``control`` and ``events`` (JSON) through the orchestrator (research §9), starts the live
  pipeline on them and answers 200 ``{"session_id", "publish_url", "subscribe_url", "control_url",
  "events_url"}`` named for the client: it publishes its video to ``publish_url`` and reads the output from
  ``subscribe_url``. Bad params or another pipeline's model id: 400; the pipeline loading: 503.
- ``POST /stream/params`` JSON params: the running stream's new params (404 if this session has none).
- ``POST /stream/stop``: stops the stream and releases the session at the orchestrator; 204.

The stream also stops when the orchestrator releases the session (client stop, runner loss): the O2R
``released`` event, or its input channel closing, whichever comes first.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Coroutine
from typing import Any

from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, Field, ValidationError

from lpnode.errors import BadRequestError, NotFoundError
from lpnode.live.registry import parse_params
from lpnode.live.service import LiveService
from lpnode.live.streamer import StreamRequest
from lpnode.logs import log_event
from lpnode.runner.app_callbacks import ChannelSpec, SessionCaller
from lpnode.runner.app_registration import AppRegistration

log = logging.getLogger("lpnode.live")

STREAM_START, STREAM_PARAMS, STREAM_STOP = "/stream/start", "/stream/params", "/stream/stop"
CHANNELS = (
    ChannelSpec("in", "video/mp2t"),
    ChannelSpec("out", "video/mp2t"),
    ChannelSpec("control", "application/json"),
    ChannelSpec("events", "application/json"),
)
NOT_A_SESSION = (
    "this route serves Live Runner sessions: reserve a session at the orchestrator and call it under the "
    "session's app_url"
)


class StreamStart(BaseModel):
    params: dict[str, Any] = Field(default_factory=dict, description="Initial parameters for the pipeline.")
    model_id: str = Field(default="", description="The live pipeline expected; empty for any.")


class StreamStarted(BaseModel):
    session_id: str
    publish_url: str = Field(..., description="Publish the input video here (MPEG-TS segments over trickle).")
    subscribe_url: str = Field(..., description="Read the output video here.")
    control_url: str = Field(..., description="Publish params updates here (one JSON object per segment).")
    events_url: str = Field(..., description="Read the pipeline's status and errors here.")


def add_session_routes(app: FastAPI, service: LiveService, registration: AppRegistration) -> None:
    """Serve ``service``'s pipeline as a persistent app on ``app``; stop a stream whose session is released."""

    def caller_of(request: Request) -> SessionCaller:
        caller = SessionCaller.from_headers(request.headers)
        if caller is None:
            raise BadRequestError(NOT_A_SESSION)
        return caller

    tokens: dict[str, str] = {}  # the session token each stream was started with (one stream at a time)

    def current_session() -> str:
        streamer = service.streamer
        return streamer.request.manifest_id if streamer is not None else ""

    def check_stream_of(caller: SessionCaller) -> None:
        """The caller's session runs the current stream, and carries the token that started it."""
        known = tokens.get(caller.session_id, "")
        if current_session() != caller.session_id or not hmac.compare_digest(known, caller.token):
            raise NotFoundError("this session has no stream running; start one with POST /stream/start")

    async def end_stream(session_id: str, reason: str) -> None:
        streamer = service.streamer
        if streamer is not None and streamer.request.manifest_id == session_id:
            await service.stream_ended(streamer, reason)

    def released(session_id: str) -> None:
        tokens.pop(session_id, None)
        if session_id and current_session() == session_id:
            _spawn(end_stream(session_id, "session released"))

    registration.on_released(released)

    @app.post(STREAM_START, response_model=StreamStarted, include_in_schema=False)
    async def start(request: Request) -> StreamStarted:
        caller = caller_of(request)
        try:
            body = StreamStart.model_validate(await _json_object(request))
        except ValidationError as exc:
            first = exc.errors()[0]
            raise BadRequestError(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
        if body.model_id and body.model_id != service.spec.name:
            raise BadRequestError(f"pipeline configured with {service.spec.name} but called with {body.model_id}.")
        parse_params(service.spec, body.params)  # bad params: 400 before anything is made
        channels = await caller.create_channels(CHANNELS)
        stream = StreamRequest(
            subscribe_url=channels["in"].runner_url,
            publish_url=channels["out"].runner_url,
            control_url=channels["control"].runner_url,
            events_url=channels["events"].runner_url,
            request_id=caller.session_id,
            manifest_id=caller.session_id,
            stream_id=caller.session_id,
        )
        await service.start_stream(stream, body.params)
        tokens.clear()
        tokens[caller.session_id] = caller.token
        log_event(log, "runner app session streaming", session_id=caller.session_id, pipeline=service.spec.name)
        return StreamStarted(
            session_id=caller.session_id,
            publish_url=channels["in"].url,
            subscribe_url=channels["out"].url,
            control_url=channels["control"].url,
            events_url=channels["events"].url,
        )

    @app.post(STREAM_PARAMS, include_in_schema=False)
    async def params(request: Request) -> dict[str, str]:
        check_stream_of(caller_of(request))
        values = await _json_object(request)
        service.update_params(values)
        return {"status": "ok"}

    @app.post(STREAM_STOP, include_in_schema=False, status_code=204)
    async def stop(request: Request) -> Response:
        caller = caller_of(request)
        await caller.stop()  # the orchestrator checks the token; a stream it releases ends with it
        tokens.pop(caller.session_id, None)
        await end_stream(caller.session_id, "stopped by the client")
        return Response(status_code=204)


async def _json_object(request: Request) -> dict[str, Any]:
    """The request's JSON object body ({} when empty); 400 for anything else."""
    raw = await request.body()
    try:
        value = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise BadRequestError("the body must be a JSON object") from None
    if not isinstance(value, dict):
        raise BadRequestError("the body must be a JSON object")
    return value


_tasks: set[asyncio.Task[None]] = set()


def _spawn(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` in the background, keeping a reference until it ends (hooks must not block)."""
    task = asyncio.get_running_loop().create_task(coro)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
