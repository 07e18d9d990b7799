"""What the orchestrator sends a remote AI worker for a caller's job, and what it answers the caller with.

Out: :func:`job_data` turns the caller's body into go-livepeer's ``requestData``. A JSON body is the
request as it is; a multipart form becomes its fields with the JSON types the pipeline's schema gives
them (go-livepeer workers decode the request into typed structs), the file field left blank, and the
uploaded file saved in the result store so the worker fetches it from ``input_url``
(``{service}/stream/<id>/<name>.tempfile``, as go-livepeer names it).

Back: :func:`answer_with_files` puts the worker's result files where the caller expects them, as the
local path would: ``/stream/`` URLs for gateways and for image-to-video, ``data:`` URLs for other callers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from lpnode.errors import BadRequestError, PayloadTooLargeError, PipelineFailedError
from lpnode.orchestrator.job_body import JobBody
from lpnode.pipelines import PIPELINES, model_field
from lpnode.protocol.ai_worker import FILE_FIELDS, JobData, ResultFile, WorkerResult, parse_multipart
from lpnode.results import ResultStore, extension_for, new_request_id

MAX_UPLOAD_BYTES = 256 * 1024 * 1024
INPUT_EXTENSION = "tempfile"


async def job_data(
    content_type: str, pipeline: str, model_id: str, body: JobBody, store: ResultStore, service_url: str
) -> JobData:
    """``requestData`` for the caller's job; the model id is filled in when the caller left it out."""
    field = model_field(pipeline)
    if body.json_body is not None:
        request = dict(body.json_body)
        request.setdefault(field, model_id)
        return JobData("", request)
    chunks: list[bytes] = []
    size = 0
    async for chunk in body.chunks():
        size += len(chunk)
        if size > MAX_UPLOAD_BYTES:
            raise PayloadTooLargeError(f"the upload is over {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB")
        chunks.append(chunk)
    try:
        parts = parse_multipart(content_type, b"".join(chunks))
    except ValueError as exc:
        raise BadRequestError(str(exc)) from None
    file_field = FILE_FIELDS.get(pipeline, "image")
    fields: dict[str, str] = {}
    upload: bytes | None = None
    for part in parts:
        if part.name == file_field:
            upload = part.data
        elif part.name:
            fields[part.name] = part.data.decode("utf-8", "replace")
    input_url = ""
    if upload is not None:
        request_id = new_request_id()
        name = await asyncio.to_thread(store.save, request_id, upload, INPUT_EXTENSION)
        input_url = f"{service_url.rstrip('/')}/stream/{request_id}/{name}"
    request_fields = typed_fields(pipeline, fields)
    request_fields[file_field] = ""
    request_fields.setdefault(field, model_id)
    return JobData(input_url, request_fields)


def typed_fields(pipeline: str, fields: Mapping[str, str]) -> dict[str, Any]:
    """Form fields with the JSON types the pipeline's schema gives them; a value that does not convert is
    passed on as text (the runner then says what is wrong with it)."""
    form = _form_model(pipeline)
    typed: dict[str, Any] = {}
    for name, value in fields.items():
        annotation = form.model_fields[name].annotation if form and name in form.model_fields else str
        typed[name] = _convert(value, annotation)
    return typed


def _convert(value: str, annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            if option is not type(None) and (converted := _convert(value, option)) is not value:
                return converted
        return value
    try:
        if annotation is bool:
            lowered = value.strip().lower()
            if lowered in ("true", "1", "yes", "on", "false", "0", "no", "off"):
                return lowered in ("true", "1", "yes", "on")
        elif annotation is int:
            return int(value)
        elif annotation is float:
            return float(value)
    except ValueError:
        pass
    return value


def _form_model(pipeline: str) -> type[BaseModel] | None:
    spec = PIPELINES.get(pipeline)
    return spec.params if spec is not None and spec.multipart else None


def answer_with_files(
    pipeline: str, result: WorkerResult, rehosted: bool, store: ResultStore, service_url: str
) -> bytes:
    """The worker's JSON answer with each file's ``url`` made the caller's: saved under a new request id
    and pointed to by a ``/stream/`` URL when ``rehosted``, else inlined as a ``data:`` URL. Blocking
    (files are written): call it in a worker thread."""
    try:
        answer = json.loads(result.answer)
    except ValueError:
        raise PipelineFailedError(f"the remote worker's {pipeline} answer is not JSON") from None
    request_id = new_request_id()
    prefix = f"{service_url.rstrip('/')}/stream/{request_id}/"
    try:
        for holder in url_holders(answer):
            file = result.files.get(holder["url"])
            if file is None:
                continue
            if rehosted:
                holder["url"] = prefix + store.save(request_id, file.data, _extension(file))
            else:
                holder["url"] = f"data:{file.content_type};base64,{base64.b64encode(file.data).decode()}"
    except (OSError, ValueError) as exc:
        raise PipelineFailedError(f"could not store the {pipeline} result: {exc}") from None
    return json.dumps(answer).encode()


def url_holders(value: Any) -> Iterable[dict[str, Any]]:
    """Every JSON object in ``value`` that has a string ``url``."""
    if isinstance(value, dict):
        if isinstance(value.get("url"), str):
            yield value
        for item in list(value.values()):
            yield from url_holders(item)
    elif isinstance(value, list):
        for item in value:
            yield from url_holders(item)


def _extension(file: ResultFile) -> str:
    extension = extension_for(file.content_type)
    if extension == "bin" and "." in file.name:
        suffix = file.name.rsplit(".", 1)[1].lower()
        if suffix.isalnum() and len(suffix) <= 8:
            return suffix
    return extension
