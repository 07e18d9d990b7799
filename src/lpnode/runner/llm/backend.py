"""What a chat backend is, and which one serves a given model."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol

from lpnode.runner.pipelines.base import Job, LoadContext


@dataclass(frozen=True)
class ChatParams:
    """A validated chat request, as a backend sees it."""

    messages: list[dict[str, str]]
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int  # -1: no top-k filtering


@dataclass(frozen=True)
class Delta:
    """New text and the token counts so far. The last delta of a stream has ``finish_reason`` set."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = ""


class ChatBackend(Protocol):
    name: str

    def stream(self, params: ChatParams, job: Job) -> AsyncGenerator[Delta, None]:
        """Generate; closing the iterator (or ``job.cancel()``) stops generation within one token."""
        ...


def choose_backend(ctx: LoadContext) -> ChatBackend:
    """``openai`` when an upstream URL is configured, ``vllm`` when installed on a CUDA machine,
    else ``transformers``. Loads the model (or checks the upstream) before returning."""
    if ctx.upstream_url:
        from lpnode.runner.llm.openai_upstream import OpenAIUpstream

        return OpenAIUpstream(ctx)
    if ctx.device.startswith("cuda") and importlib.util.find_spec("vllm") is not None:
        from lpnode.runner.llm.vllm_engine import VLLMChat

        return VLLMChat(ctx)
    from lpnode.runner.llm.transformers_chat import TransformersChat

    return TransformersChat(ctx)
