"""llm: chat completions over the ``LLMRequest``/``LLMResponse`` schemas, streamed or whole.

Generation is done by a backend (see :mod:`lpnode.runner.llm`): transformers by default, vLLM on GPU
machines that have it, or an OpenAI-compatible upstream such as Ollama. Several requests run at once
(4 by default; vLLM batches them continuously).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator

from lpnode.runner.llm import ChatParams, Delta, choose_backend
from lpnode.runner.pipelines.base import Job, LoadContext, RouteSpec, StreamingPipeline
from lpnode.schemas.llm import LLMChoice, LLMMessage, LLMRequest, LLMResponse, LLMTokenUsage


class LLMPipeline(StreamingPipeline[LLMRequest]):
    route = RouteSpec(
        name="llm",
        operation_id="genLLM",
        sdk_name="llm",
        summary="LLM",
        description="Generate text with a language model, as a whole answer or a stream of chunks.",
        params=LLMRequest,
        response=LLMResponse,
        multipart=False,
        default_error="Internal server error during LLM processing.",
        oom_error="Out of memory error. Try reducing max_tokens or the conversation length.",
        model_id_field="model",
        max_in_flight=4,
        auth_message="Invalid bearer token",
        guard_period=False,
        sdk_data_name=False,
        streaming=True,
    )

    def __init__(self, ctx: LoadContext) -> None:
        super().__init__(ctx)
        self.backend = choose_backend(ctx)

    async def close(self) -> None:
        close = getattr(self.backend, "close", None)
        if close is not None:
            await close()

    def _chat(self, params: LLMRequest) -> ChatParams:
        return ChatParams(
            messages=[{"role": m.role, "content": m.content} for m in params.messages],
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
        )

    def _response(self, ident: str, created: int, delta: Delta, choice: LLMChoice) -> LLMResponse:
        usage = LLMTokenUsage(
            prompt_tokens=delta.prompt_tokens,
            completion_tokens=delta.completion_tokens,
            total_tokens=delta.prompt_tokens + delta.completion_tokens,
        )
        return LLMResponse(id=ident, model=self.model_id, created=created, usage=usage, choices=[choice])

    async def stream(self, params: LLMRequest, job: Job) -> AsyncGenerator[LLMResponse, None]:
        ident, created = f"chatcmpl-{uuid.uuid4()}", int(time.time())
        deltas = self.backend.stream(self._chat(params), job)
        try:
            async for delta in deltas:
                piece = LLMMessage(role="assistant", content=delta.text)
                choice = LLMChoice(index=0, delta=piece, finish_reason=delta.finish_reason)
                yield self._response(ident, created, delta, choice)
        finally:
            await deltas.aclose()

    async def complete(self, params: LLMRequest, job: Job) -> LLMResponse:
        ident, created = f"chatcmpl-{uuid.uuid4()}", int(time.time())
        parts: list[str] = []
        last: Delta | None = None
        deltas = self.backend.stream(self._chat(params), job)
        try:
            async for delta in deltas:
                parts.append(delta.text)
                last = delta
        finally:
            await deltas.aclose()
        assert last is not None  # every backend ends with a finishing delta
        message = LLMMessage(role="assistant", content="".join(parts))
        choice = LLMChoice(index=0, message=message, finish_reason=last.finish_reason or "stop")
        return self._response(ident, created, last, choice)


__all__ = ["LLMPipeline"]
