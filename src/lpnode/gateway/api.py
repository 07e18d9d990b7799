"""The gateway's public AI API: ``POST /<pipeline>`` for every batch pipeline, with the runner API's bodies.

Each request is validated here, once, against the runner's own schema (422 in FastAPI's shape for a bad
field), given the pipeline's default model when it names none, and handed to the forwarder. Errors are
JSON that both the ``livepeer-ai`` SDK and go-livepeer clients read: ``{"error": {"message": m},
"detail": {"msg": m}}``.
"""

from __future__ import annotations

import functools
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lpnode.errors import JobCancelledError, JobError, PayloadTooLargeError, UnsupportedMediaError
from lpnode.gateway.async_jobs import AsyncJobs
from lpnode.gateway.forward import Forwarder, Job, Outcome
from lpnode.gateway.jobs import ROUTES, PipelineRoute, audio_units, units
from lpnode.gateway.key_guard import Admission
from lpnode.http_relay import when_sent

log = logging.getLogger("lpnode.gateway")
MAX_BODY_BYTES = 100 * 1024 * 1024


class ValidationFailed(JobError):
    status_code = 422

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in errors))
        self.errors = errors


def error_response(exc: JobError) -> Response:
    """The error body both SDK families parse; 422 keeps FastAPI's ``detail`` list."""
    if isinstance(exc, JobCancelledError):
        return Response(status_code=499)
    headers: dict[str, str] | None = getattr(exc, "headers", None)
    if headers is None and hasattr(exc, "retry_after"):
        headers = {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, ValidationFailed):
        body: dict[str, Any] = {"detail": exc.errors, "error": {"message": exc.message}}
    else:
        body = {"error": {"message": exc.message}, "detail": {"msg": exc.message}}
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


Recorder = Callable[[str, str, int, int, Outcome, float, str], None]
"""Called once per finished job: pipeline, model, units, status, outcome, seconds, request id."""
Admit = Callable[[str | None], Awaitable[Admission]]


class PublicApi:
    def __init__(
        self,
        forwarder: Forwarder,
        default_model: Callable[[str], str],
        *,
        timeout: float,
        record: Recorder | None = None,
        admit: Admit | None = None,
        async_jobs: AsyncJobs | None = None,
    ) -> None:
        self.admit = admit
        self.async_jobs = async_jobs
        self.forwarder = forwarder
        self.default_model = default_model
        self.timeout = timeout
        self.record = record

    async def handle(self, request: Request) -> Response:
        route = ROUTES[request.url.path.strip("/")]
        started = time.monotonic()
        request_id = secrets.token_hex(8)
        outcome = Outcome()
        model_id, job_units = "", 0
        admission: Admission | None = None
        try:
            if self.admit is not None:
                admission = await self.admit(request.headers.get("authorization"))
                outcome.key_id, outcome.key_name = admission.key.id, admission.key.name
            params, fields, body, content_type = await self._read(route, request)
            model_id = str(fields.get(route.model_field) or "") or self.default_model(route.name)
            if not fields.get(route.model_field):
                body, content_type = _with_model(route, fields, model_id, body, content_type)
            job_units = units(route, params, fields)
            job = Job(route.name, model_id, body, content_type, request_id)
            if self.async_jobs is not None and route.name == "image-to-video" and self.async_jobs.wants_async(request):
                held, admission = admission, None  # the background job releases it
                done = functools.partial(self._finished, route.name, model_id, job_units, outcome, started, request_id)
                return self.async_jobs.start(request_id, lambda: self._background(job, started, outcome, held, done))
            response = await self.forwarder.run(job, request, started + self.timeout, outcome)
        except JobError as exc:
            refused_key = getattr(exc, "key", None)
            if refused_key is not None:
                outcome.key_id, outcome.key_name = refused_key.id, refused_key.name
            response = error_response(exc)
        except Exception as exc:  # a bug: log it whole, answer a plain 500 without a traceback
            log.exception("request failed unexpectedly", extra={"fields": {"pipeline": route.name}})
            response = error_response(JobError(f"internal error: {type(exc).__name__}"))
        if route.name == "audio-to-text":
            job_units = audio_units(outcome.headers.get("X-Audio-Duration") or outcome.headers.get("x-audio-duration"))

        def finish(status: int) -> None:
            if admission is not None:
                admission.release()
            self._finished(route.name, model_id, job_units, outcome, started, request_id, status)

        return when_sent(response, finish)

    def _finished(
        self, pipeline: str, model_id: str, units: int, outcome: Outcome, started: float, rid: str, status: int
    ) -> None:
        if self.record is not None:
            self.record(pipeline, model_id, units, status, outcome, time.monotonic() - started, rid)

    async def _background(
        self,
        job: Job,
        started: float,
        outcome: Outcome,
        admission: Admission | None,
        finished: Callable[[int], None],
    ) -> Response:
        try:
            response = await self.forwarder.run(job, None, started + self.timeout, outcome)
        except JobError as exc:
            response = error_response(exc)
        except Exception as exc:  # a bug: log it, report it as the job's error
            log.exception("async job failed unexpectedly", extra={"fields": {"pipeline": job.pipeline}})
            response = error_response(JobError(f"internal error: {type(exc).__name__}"))
        finally:
            if admission is not None:
                admission.release()
        finished(response.status_code)
        return response

    async def _read(self, route: PipelineRoute, request: Request) -> tuple[BaseModel, dict[str, Any], bytes, str]:
        content_type = request.headers.get("content-type", "")
        declared = int(request.headers.get("content-length") or 0)
        if declared > MAX_BODY_BYTES:
            raise PayloadTooLargeError(f"the request body is over {MAX_BODY_BYTES // (1024 * 1024)} MiB")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            raise PayloadTooLargeError(f"the request body is over {MAX_BODY_BYTES // (1024 * 1024)} MiB")
        fields: dict[str, Any]
        if route.multipart:
            if not content_type.startswith("multipart/form-data"):
                raise UnsupportedMediaError(f"{route.name} takes multipart/form-data, got {content_type or 'none'}")
            fields = {}
            form = await request.form(max_part_size=MAX_BODY_BYTES)
            try:
                for key, value in form.multi_items():
                    if isinstance(value, UploadFile):
                        fields[key] = _Upload(await value.read(), value.filename or key, value.content_type)
                    else:
                        fields[key] = value
            finally:
                await form.close()
        else:
            try:
                loaded = json.loads(body)
            except ValueError as exc:
                raise ValidationFailed(
                    [{"loc": ["body"], "msg": f"JSON decode error: {exc}", "type": "json_invalid"}]
                ) from None
            if not isinstance(loaded, dict):
                raise ValidationFailed([{"loc": ["body"], "msg": "must be a JSON object", "type": "model_type"}])
            fields = loaded
        try:
            params = route.params.model_validate(
                {k: bytes(v) if isinstance(v, _Upload) else v for k, v in fields.items()}
            )
        except ValidationError as exc:
            raise ValidationFailed(
                [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
            ) from None
        return params, fields, body, content_type


def _with_model(
    route: PipelineRoute, fields: Mapping[str, Any], model_id: str, body: bytes, content_type: str
) -> tuple[bytes, str]:
    """The body with the model field filled in: JSON re-encoded, multipart rebuilt with the same parts."""
    if not route.multipart:
        data = dict(fields)
        data[route.model_field] = model_id
        return json.dumps(data).encode(), "application/json"
    boundary = secrets.token_hex(16)
    out = bytearray()
    for key, value in {**fields, route.model_field: model_id}.items():
        out += f"--{boundary}\r\n".encode()
        if isinstance(value, _Upload):
            out += f'Content-Disposition: form-data; name="{key}"; filename="{value.filename}"\r\n'.encode()
            out += f"Content-Type: {value.content_type or 'application/octet-stream'}\r\n\r\n".encode()
            out += value + b"\r\n"
        else:
            out += f'Content-Disposition: form-data; name="{key}"\r\n\r\n'.encode() + str(value).encode() + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


class _Upload(bytes):
    """An uploaded file's bytes, with the name and type it came with."""

    filename: str
    content_type: str | None

    def __new__(cls, data: bytes, filename: str, content_type: str | None) -> _Upload:
        upload = super().__new__(cls, data)
        upload.filename = filename.replace('"', "")
        upload.content_type = content_type
        return upload
