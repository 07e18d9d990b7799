"""``POST /v1/chat/completions`` and ``GET /v1/models`` on the gateway, so OpenAI SDKs work unchanged.

A chat request is translated into a Livepeer ``llm`` job (:mod:`lpnode.gateway.openai_compat`) and sent
through the same forwarder, keys and metering as ``POST /llm``; the answer (streamed or not) is translated
back. Errors use OpenAI's shape.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lpnode.errors import BadRequestError, JobCancelledError, JobError
from lpnode.gateway.api import Admit, Recorder
from lpnode.gateway.directory import Directory
from lpnode.gateway.forward import Forwarder, Job, Outcome
from lpnode.gateway.key_guard import Admission
from lpnode.gateway.openai_compat import (
    DONE,
    chat_request_to_llm,
    chunk_error,
    include_usage,
    llm_chunk_to_chat,
    llm_response_to_chat,
    models_list,
    openai_error,
    sse,
    usage_chunk,
)
from lpnode.http_relay import RelayedStream, when_sent


class OpenAIRoutes:
    def __init__(
        self,
        forwarder: Forwarder,
        directory: Directory,
        default_model: Callable[[str], str],
        *,
        timeout: float,
        record: Recorder | None = None,
        admit: Admit | None = None,
    ) -> None:
        self.forwarder = forwarder
        self.directory = directory
        self.default_model = default_model
        self.timeout = timeout
        self.record = record
        self.admit = admit

    async def models(self, request: Request) -> Response:
        try:
            await self._admitted(request, release=True)
        except JobError as exc:
            return _error(exc)
        return JSONResponse(models_list(sorted(self.directory.models("llm").get("llm", set()))))

    async def chat(self, request: Request) -> Response:
        started = time.monotonic()
        outcome = Outcome()
        request_id = secrets.token_hex(8)
        model_id, units = "", 0
        admission: Admission | None = None
        try:
            admission = await self._admitted(request)
            if admission is not None:
                outcome.key_id, outcome.key_name = admission.key.id, admission.key.name
            try:
                body = json.loads(await request.body())
            except ValueError as exc:
                raise BadRequestError(f"the body is not valid JSON: {exc}") from None
            if not isinstance(body, dict):
                raise BadRequestError("the body must be a JSON object")
            llm = chat_request_to_llm(body, self.default_model("llm"))
            model_id, units = llm["model"], int(llm.get("max_tokens") or 0)
            job = Job("llm", model_id, json.dumps(llm).encode(), "application/json", request_id)
            answer = await self.forwarder.run(job, request, started + self.timeout, outcome)
            response = await self._translate(answer, include_usage(body))
        except JobError as exc:
            refused_key = getattr(exc, "key", None)
            if refused_key is not None:
                outcome.key_id, outcome.key_name = refused_key.id, refused_key.name
            response = _error(exc)

        def finish(status: int) -> None:
            if admission is not None:
                admission.release()
            if self.record is not None:
                self.record("llm", model_id, units, status, outcome, time.monotonic() - started, request_id)

        return when_sent(response, finish)

    async def _admitted(self, request: Request, release: bool = False) -> Admission | None:
        if self.admit is None:
            return None
        admission = await self.admit(request.headers.get("authorization"))
        if release:
            admission.release()
            return None
        return admission

    async def _translate(self, answer: Response, usage: bool) -> Response:
        if not isinstance(answer, RelayedStream):
            return JSONResponse(llm_response_to_chat(json.loads(bytes(answer.body))))
        upstream: AsyncIterator[bytes] = answer.body_iterator  # type: ignore[assignment]
        stream = RelayedStream(_chat_events(upstream, usage), media_type="text/event-stream")
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


def _error(exc: JobError) -> Response:
    if isinstance(exc, JobCancelledError):
        return Response(status_code=499)
    status = exc.status_code if exc.status_code != 422 else 400
    headers: dict[str, str] | None = getattr(exc, "headers", None)
    return JSONResponse(openai_error(exc.message, status=status), status_code=status, headers=headers)
