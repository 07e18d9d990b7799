"""The gateway's public AI API: ``POST /<pipeline>`` for every batch pipeline, with the runner API's bodies.

Each request is validated here, once, against the pipeline's schema (422 in FastAPI's shape for a bad field)
and its cheap checks (:meth:`lpnode.pipelines.PipelineSpec.precheck`: the same code the runner runs, so a bad
request is refused before an orchestrator is leased), given the pipeline's default model when it names none,
and handed to the forwarder. Admission, metering and errors (the gateway's JSON dialect, which both the
``livepeer-ai`` SDK and go-livepeer clients read) are :mod:`lpnode.gateway.job_wrapper`'s.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import Response

from lpnode.errors import (
    BadRequestError,
    JobError,
    PayloadTooLargeError,
    PipelineFailedError,
    UnsupportedMediaError,
    ValidationFailedError,
    gateway_json_response,
)
from lpnode.gateway.async_jobs import AsyncJobs
from lpnode.gateway.forward import Forwarder, Job
from lpnode.gateway.job_wrapper import JobRecord, JobWrapper
from lpnode.gateway.request_body import SpooledBody, upload_bytes
from lpnode.pipelines import PipelineSpec, audio_units, spec

log = logging.getLogger("lpnode.gateway")
MAX_BODY_BYTES = 100 * 1024 * 1024


class PublicApi:
    def __init__(
        self,
        forwarder: Forwarder,
        default_model: Callable[[str], str],
        wrapper: JobWrapper,
        *,
        timeout: float,
        async_jobs: AsyncJobs | None = None,
    ) -> None:
        self.forwarder = forwarder
        self.default_model = default_model
        self.wrapper = wrapper
        self.timeout = timeout
        self.async_jobs = async_jobs

    async def handle(self, request: Request) -> Response:
        route = spec(request.url.path.strip("/"))
        settle = _audio_units if route.name == "audio-to-text" else None
        job = JobRecord(pipeline=route.name)  # a refused key's record names the pipeline too
        return await self.wrapper.serve(request, lambda job: self._serve(route, request, job), settle=settle, job=job)

    async def _serve(self, route: PipelineSpec, request: Request, job: JobRecord) -> Response:
        job.pipeline = route.name
        params, fields, body, content_type = await self._read(route, request)
        job.model_id = str(fields.get(route.model_field) or "") or self.default_model(route.name)
        if not fields.get(route.model_field):
            body, content_type = _with_model(route, fields, job.model_id, body, content_type)
        route.precheck(params, fields)
        job.units = route.units(params, fields)
        hop = Job(route.name, job.model_id, body, content_type, job.request_id)
        if self.async_jobs is not None and route.name == "image-to-video" and self.async_jobs.wants_async(request):
            finish = job.detach()  # the background job releases the key and records itself
            return self.async_jobs.start(job.request_id, lambda: self._background(hop, job, finish))
        return await self.forwarder.run(hop, request, job.started + self.timeout, job)

    async def _background(self, hop: Job, job: JobRecord, finish: Callable[[int], None]) -> Response:
        try:
            response = await self.forwarder.run(hop, None, job.started + self.timeout, job)
        except JobError as exc:
            response = gateway_json_response(exc)
        except Exception as exc:  # a bug: log it, report it as the job's error
            log.exception("async job failed unexpectedly", extra={"fields": {"pipeline": hop.pipeline}})
            response = gateway_json_response(PipelineFailedError(f"internal error: {type(exc).__name__}"))
        finish(response.status_code)
        return response

    async def _read(self, route: PipelineSpec, request: Request) -> tuple[BaseModel, dict[str, Any], bytes, str]:
        """The request's params, its raw fields and the body to forward. The body is streamed in (413 as soon
        as it passes ``MAX_BODY_BYTES``), spooled to disk when large, and held once more only as the bytes the
        checks read: an upload's file (one copy) and the body sent on (one copy; a multipart body without the
        model field is left empty here, as ``_with_model`` rebuilds it from the fields)."""
        content_type = request.headers.get("content-type", "")
        too_large = f"the request body is over {MAX_BODY_BYTES // (1024 * 1024)} MiB"
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise PayloadTooLargeError(too_large)
        if route.multipart and not content_type.startswith("multipart/form-data"):
            raise UnsupportedMediaError(f"{route.name} takes multipart/form-data, got {content_type or 'none'}")
        spooled = await SpooledBody.read(request.stream(), MAX_BODY_BYTES, lambda: PayloadTooLargeError(too_large))
        fields: dict[str, Any]
        try:
            if route.multipart:
                fields = await _form_fields(request, spooled)
                body = await spooled.whole() if fields.get(route.model_field) else b""
            else:
                body = await spooled.whole()
        finally:
            spooled.close()
        if not route.multipart:
            try:
                loaded = json.loads(body)
            except ValueError as exc:
                raise ValidationFailedError(
                    [{"loc": ["body"], "msg": f"JSON decode error: {exc}", "type": "json_invalid"}]
                ) from None
            if not isinstance(loaded, dict):
                raise ValidationFailedError([{"loc": ["body"], "msg": "must be a JSON object", "type": "model_type"}])
            fields = loaded
        try:
            assert route.params is not None
            params = route.params.model_validate(fields)  # an upload's bytes are validated as they are, not copied
        except ValidationError as exc:
            raise ValidationFailedError(
                [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
            ) from None
        return params, fields, body, content_type


def _with_model(
    route: PipelineSpec, fields: Mapping[str, Any], model_id: str, body: bytes, content_type: str
) -> tuple[bytes, str]:
    """The body with the model field filled in: JSON re-encoded, multipart rebuilt with the same parts."""
    if not route.multipart:
        data = dict(fields)
        data[route.model_field] = model_id
        return json.dumps(data).encode(), "application/json"
    boundary = secrets.token_hex(16)
    uploads = fields.uploads if isinstance(fields, _FormFields) else {}
    pieces: list[bytes] = []  # joined once at the end: an upload is copied once, into the body
    for key, value in {**fields, route.model_field: model_id}.items():
        pieces.append(f"--{boundary}\r\n".encode())
        if key in uploads and isinstance(value, bytes):
            filename, media_type = uploads[key]
            pieces.append(f'Content-Disposition: form-data; name="{key}"; filename="{filename}"\r\n'.encode())
            pieces.append(f"Content-Type: {media_type or 'application/octet-stream'}\r\n\r\n".encode())
            pieces += [value, b"\r\n"]
        else:
            pieces.append(f'Content-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
    pieces.append(f"--{boundary}--\r\n".encode())
    return b"".join(pieces), f"multipart/form-data; boundary={boundary}"


class _FormFields(dict[str, Any]):
    """A multipart form's fields (text as ``str``, files as plain ``bytes``, which PIL and pydantic read
    without copying) with each file's name and type in ``uploads``."""

    def __init__(self) -> None:
        super().__init__()
        self.uploads: dict[str, tuple[str, str | None]] = {}


async def _form_fields(request: Request, body: SpooledBody) -> _FormFields:
    """The multipart form in ``body``; files over ``SPOOL_BYTES`` are spooled to disk by the parser and copied
    into memory once, off the event loop."""
    fields = _FormFields()
    parser = MultiPartParser(request.headers, body.chunks(), max_part_size=MAX_BODY_BYTES)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise BadRequestError(f"the multipart body cannot be read: {exc.message}") from None
    try:
        for key, value in form.multi_items():
            if not isinstance(value, UploadFile):
                fields[key] = value
                continue
            content = await upload_bytes(value)
            if isinstance(content, bytes):
                fields[key] = content
            else:
                with content:
                    fields[key] = await asyncio.to_thread(bytes, content)
            fields.uploads[key] = ((value.filename or key).replace('"', ""), value.content_type)
    finally:
        await form.close()
    return fields


def _audio_units(job: JobRecord, status: int) -> None:
    """audio-to-text is metered by the answer's duration (``X-Audio-Duration``)."""
    job.units = audio_units(job.headers.get("X-Audio-Duration") or job.headers.get("x-audio-duration"))
