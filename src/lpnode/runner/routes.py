"""The generic route builder: one POST route per pipeline, built from its :class:`RouteSpec`.

JSON pipelines take their params model as the body. Multipart pipelines get one ``Form`` parameter per
field and one ``File`` parameter per ``bytes`` field, so FastAPI names the body ``Body_<operationId>``
exactly as the upstream runner does. Every route checks auth, then the model id, then hands the params
to the service, and stops the job if the client disconnects.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, File, Form, HTTPException, Request, Response, UploadFile
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from lpnode.errors import JobError, PayloadTooLargeError
from lpnode.runner.config import UPLOAD_LIMIT_BYTES
from lpnode.runner.pipelines import Job, RouteSpec
from lpnode.runner.service import RunnerService
from lpnode.schemas import HTTPError

log = logging.getLogger("lpnode.runner")
_bearer = HTTPBearer(auto_error=False)
_KW = inspect.Parameter.KEYWORD_ONLY

ERROR_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def auth_dependency(token: str, message: str = "Invalid bearer token.") -> Any:
    """A dependency that demands ``Authorization: Bearer <token>`` when ``token`` is set."""

    async def require_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        if not token:
            return
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
            raise HTTPException(401, detail={"msg": message}, headers={"WWW-Authenticate": "Bearer"})

    return require_token


def _form_parameters(params_model: type[BaseModel]) -> list[inspect.Parameter]:
    parameters = []
    for name, field in params_model.model_fields.items():
        if field.annotation is bytes:
            annotation: Any = Annotated[UploadFile, File(description=field.description)]
            parameters.append(inspect.Parameter(name, _KW, annotation=annotation))
            continue
        marker = Form(description=field.description)
        annotation = Annotated[(field.annotation, *field.metadata, marker)]
        default = inspect.Parameter.empty if field.is_required() else field.default
        parameters.append(inspect.Parameter(name, _KW, annotation=annotation, default=default))
    return parameters


async def _read_upload(upload: UploadFile) -> bytes:
    if upload.size is not None and upload.size > UPLOAD_LIMIT_BYTES:
        raise PayloadTooLargeError("File size exceeds limit.")
    data = await upload.read(UPLOAD_LIMIT_BYTES + 1)
    if len(data) > UPLOAD_LIMIT_BYTES:
        raise PayloadTooLargeError("File size exceeds limit.")
    return data


async def _abandon(task: asyncio.Future[Any]) -> None:
    """Cancel ``task``, wait for it to end and read how it ended (whatever it raised is nobody's answer
    now; unread, asyncio would log it as an error)."""
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()


async def _until_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def run_until_disconnect(request: Request, service: RunnerService, params: BaseModel) -> Response:
    """Serve ``params``; if the client goes away first, cancel the job and answer nobody."""
    run = Job()
    job = asyncio.ensure_future(service.submit(params, run))
    watcher = asyncio.ensure_future(_until_disconnect(request))
    try:
        await asyncio.wait({job, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await _abandon(watcher)
    if not job.done():
        await _abandon(job)
        return Response(status_code=499)
    # Encoding can take a while for big answers (SAM2 masks run to tens of MB): not on the event loop.
    body = await asyncio.to_thread(job.result().model_dump_json)
    return Response(body, media_type="application/json", headers=run.headers)


async def _first_or_disconnect(request: Request, chunks: AsyncIterator[BaseModel]) -> BaseModel | None:
    """The first chunk of a stream, or None when the client left before it came. Errors raised before
    the first chunk (capacity, validation, model) propagate, so they get a proper HTTP status."""
    first = asyncio.ensure_future(anext(chunks))
    watcher = asyncio.ensure_future(_until_disconnect(request))
    try:
        await asyncio.wait({first, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await _abandon(watcher)
    if not first.done():
        await _abandon(first)
        return None
    return first.result()


def _event(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


async def _event_stream(
    first: BaseModel, chunks: AsyncGenerator[BaseModel, None], spec: RouteSpec
) -> AsyncIterator[bytes]:
    """``data: <chunk>`` events, then ``data: [DONE]``; an error after the first byte becomes a
    ``data: {"error": ...}`` event (the status line has already been sent)."""
    try:
        yield _event(first.model_dump_json().encode())
        async for chunk in chunks:
            yield _event(chunk.model_dump_json().encode())
        yield _event(b"[DONE]")
    except JobError as exc:
        yield _event(json.dumps({"error": exc.message}).encode())
    except Exception:
        log.exception("stream failed")
        yield _event(json.dumps({"error": spec.default_error}).encode())
    finally:
        await chunks.aclose()


async def stream_until_disconnect(
    request: Request, service: RunnerService, params: BaseModel, spec: RouteSpec
) -> Response:
    """Answer with server-sent events. A client that disconnects stops the generation."""
    chunks = service.stream(params, Job())
    try:
        first = await _first_or_disconnect(request, chunks)
    except BaseException:
        await chunks.aclose()
        raise
    if first is None:
        await chunks.aclose()
        return Response(status_code=499)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(_event_stream(first, chunks, spec), media_type="text/event-stream", headers=headers)


def add_pipeline_route(app: FastAPI, spec: RouteSpec, service: RunnerService | None, auth_token: str) -> None:
    """Mount ``spec``'s route (and its trailing-slash twin) on ``app``. Without a service the route
    exists for the OpenAPI document only and answers 503."""
    codes = sorted({400, 401, 500, 503, *spec.extra_error_codes, *((413,) if spec.multipart else ())})
    responses: dict[int | str, dict[str, Any]] = {
        code: {"model": HTTPError, "description": ERROR_DESCRIPTIONS[code]} for code in codes
    }

    async def handle(request: Request, params: BaseModel) -> Any:
        if service is None:
            raise HTTPException(503, detail={"msg": "No model is loaded."})
        service.check_model_id(getattr(params, spec.model_id_field, ""))
        if spec.streaming and getattr(params, "stream", False):
            return await stream_until_disconnect(request, service, params, spec)
        return await run_until_disconnect(request, service, params)

    if spec.multipart:
        file_fields = [n for n, f in spec.params.model_fields.items() if f.annotation is bytes]

        async def endpoint(request: Request, **values: Any) -> Any:
            for name in file_fields:
                values[name] = await _read_upload(values[name])
            return await handle(request, spec.params.model_validate(values))

        body_parameters = _form_parameters(spec.params)
    else:

        async def endpoint(request: Request, **values: Any) -> Any:
            return await handle(request, values["params"])

        body_parameters = [inspect.Parameter("params", _KW, annotation=Annotated[spec.params, Body()])]

    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
            *body_parameters,
        ]
    )
    endpoint.__name__ = spec.operation_id
    common: dict[str, Any] = {
        "response_model": spec.response,
        "dependencies": [Depends(auth_dependency(auth_token, spec.auth_message))],
    }
    app.post(
        spec.path,
        operation_id=spec.operation_id,
        summary=spec.summary,
        description=spec.description,
        tags=["generate"],
        responses=responses,
        openapi_extra={"x-speakeasy-name-override": spec.sdk_name, "x-lpnode-data-name": spec.sdk_data_name},
        **common,
    )(endpoint)
    app.post(spec.path + "/", include_in_schema=False, **common)(endpoint)
