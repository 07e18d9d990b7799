"""``POST /v1/chat/completions`` and ``GET /v1/models`` on the gateway, so OpenAI SDKs work unchanged.

A chat request is translated into a Livepeer ``llm`` job (:mod:`lpnode.gateway.openai_compat`) and sent
through the same forwarder, keys and metering as ``POST /llm``; the answer (streamed or not) is translated
back. Errors use OpenAI's shape.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lpnode.errors import BadRequestError, JobError, PayloadTooLargeError
from lpnode.gateway.directory import Directory
from lpnode.gateway.forward import Forwarder, Job
from lpnode.gateway.job_wrapper import JobRecord, JobWrapper
from lpnode.gateway.openai_compat import (
    DONE,
    chat_request_to_llm,
    chunk_error,
    include_usage,
    llm_chunk_to_chat,
    llm_response_to_chat,
    models_list,
    openai_error,
    openai_json_response,
    sse,
    usage_chunk,
)
from lpnode.http_relay import RelayedStream, read_at_most
from lpnode.pipelines import spec
from lpnode.schemas.llm import LLMRequest

MAX_BODY_BYTES = 16 * 1024 * 1024


def _too_large() -> PayloadTooLargeError:
    return PayloadTooLargeError(f"the request body is over {MAX_BODY_BYTES // (1024 * 1024)} MiB")


class OpenAIRoutes:
    def __init__(
        self,
        forwarder: Forwarder,
        directory: Directory,
        default_model: Callable[[str], str],
        wrapper: JobWrapper,
        *,
        timeout: float,
    ) -> None:
        self.forwarder = forwarder
        self.directory = directory
        self.default_model = default_model
        self.wrapper = wrapper
        self.timeout = timeout

    async def models(self, request: Request) -> Response:
        if self.wrapper.admit is not None:
            try:
                (await self.wrapper.admit(request.headers.get("authorization"))).release()
            except JobError as exc:
                return openai_json_response(exc)
        return JSONResponse(models_list(sorted(self.directory.models("llm").get("llm", set()))))

    async def chat(self, request: Request) -> Response:
        job = JobRecord(pipeline="llm")
        return await self.wrapper.serve(
            request, lambda job: self._chat(request, job), render=openai_json_response, job=job
        )

    async def _chat(self, request: Request, job: JobRecord) -> Response:
        job.pipeline = "llm"
        try:
            body = json.loads(await read_at_most(request.stream(), MAX_BODY_BYTES, _too_large))
        except ValueError as exc:
            raise BadRequestError(f"the body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise BadRequestError("the body must be a JSON object")
        llm = chat_request_to_llm(body, self.default_model("llm"))
        try:
            request_model = LLMRequest.model_validate(llm)
        except ValidationError as exc:
            raise BadRequestError(f"the chat request is not a valid llm request: {exc.errors()[0]['msg']}") from None
        spec("llm").precheck(request_model, llm)  # the llm pipeline's limits, before an orchestrator is leased
        job.model_id, job.units = llm["model"], int(llm.get("max_tokens") or 0)
        hop = Job("llm", job.model_id, json.dumps(llm).encode(), "application/json", job.request_id)
        answer = await self.forwarder.run(hop, request, job.started + self.timeout, job)
        return await self._translate(answer, include_usage(body))

    async def _translate(self, answer: Response, usage: bool) -> Response:
        if not isinstance(answer, RelayedStream):
            return JSONResponse(llm_response_to_chat(json.loads(bytes(answer.body))))
        upstream: AsyncIterator[bytes] = answer.body_iterator  # type: ignore[assignment]
        stream = RelayedStream(_chat_events(upstream, usage), media_type="text/event-stream")
        stream.relays = answer
        stream.on_close = answer.on_close
        return stream


async def _chat_events(upstream: AsyncIterator[bytes], usage: bool) -> AsyncIterator[bytes]:
    """The runner's ``data: <LLMResponse>`` events as OpenAI chunks, then ``[DONE]``."""
    pending, first, last = b"", True, None
    async for piece in upstream:
        pending += piece
        while b"\n\n" in pending:
            event, pending = pending.split(b"\n\n", 1)
            data = event.removeprefix(b"data:").strip()
            if not data or data == b"[DONE]":
                continue
            chunk = json.loads(data)
            problem = chunk_error(chunk)
            if problem is not None:
                yield sse(openai_error(problem, status=500))
                return
            yield sse(llm_chunk_to_chat(chunk, first=first, include_usage=usage))
            first, last = False, chunk
    if usage and last is not None:
        yield sse(usage_chunk(last))
    yield DONE
