"""A paid job's billing units, counted on the orchestrator as go-livepeer's ``handleAIRequest`` counts them.

The rule per pipeline is the one table's (:meth:`lpnode.pipelines.PipelineSpec.units`), so the gateway that
pays and the orchestrator that charges count alike: pixels for images and video, ``max_tokens`` for llm,
``1000 × characters`` for text-to-speech. A JSON body is already held whole; a multipart body is read to its
end (an uploaded image's size is in the file), then relayed from memory. audio-to-text counts 0 here: its
units come from the runner's ``X-Audio-Duration`` after the job (:func:`lpnode.pipelines.audio_units`).

Only paid jobs are counted: off-chain the body streams to the runner untouched, as before.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from lpnode.errors import BadRequestError, JobError, PayloadTooLargeError
from lpnode.orchestrator.job_body import MAX_PREFIX_BYTES, JobBody
from lpnode.pipelines import audio_units, spec

__all__ = ["audio_units", "job_units"]


async def job_units(
    pipeline: str, content_type: str, body: JobBody, limit: int = MAX_PREFIX_BYTES
) -> tuple[JobBody, int]:
    """The units of ``body`` for ``pipeline``, and the body to relay (the same bytes; a multipart body now
    held whole). BadRequestError (400) when the body's fields cannot be counted."""
    route = spec(pipeline)
    if route.params is None:
        return body, 0
    if route.multipart:
        chunks = [chunk async for chunk in _bounded(body.chunks(), limit)]
        body = JobBody(body.model_id, chunks)
        fields = await _form_fields(content_type, chunks)
    else:
        fields = dict(body.json_body or {})
    known = {k: v for k, v in fields.items() if k in route.params.model_fields}
    try:
        return body, int(route.units(route.params.model_construct(**known), fields))
    except JobError:
        raise
    except (TypeError, ValueError) as exc:
        raise BadRequestError(f"cannot count the units of this {pipeline} request: {exc}") from None


async def _bounded(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"the form is over {limit // (1024 * 1024)} MiB")
        yield chunk


async def _form_fields(content_type: str, chunks: list[bytes]) -> dict[str, Any]:
    """The form's fields: text as ``str``, files as ``bytes``."""

    async def stream() -> AsyncGenerator[bytes, None]:
        for chunk in chunks:
            yield chunk

    parser = MultiPartParser(Headers({"content-type": content_type}), stream())
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise BadRequestError(f"the multipart body is malformed: {exc.message}") from None
    fields: dict[str, Any] = {}
    try:
        for name, value in form.multi_items():
            fields[name] = await value.read() if isinstance(value, UploadFile) else value
    finally:
        await form.close()
    return fields
