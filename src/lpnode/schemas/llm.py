"""The llm route: chat messages in, an OpenAI-like completion (or a stream of chunks) out.

Unlike OpenAI's format, every chunk carries ``usage`` and exactly one choice: go-livepeer reads
``choices[0]`` and ``usage.total_tokens`` from each chunk without checking.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class LLMMessage(BaseModel):
    """One chat message."""

    role: str = Field(..., description="Who wrote it: system, user or assistant.")
    content: str = Field(..., description="What it says.")


class LLMRequest(BaseModel):
    """A chat completion request."""

    messages: list[LLMMessage] = Field(..., description="The conversation so far, oldest first.")
    model: str = Field(default="", description="Hugging Face model ID; empty means the loaded model.")
    temperature: float = Field(default=0.7, description="Sampling temperature, 0 to 2; 0 picks the likeliest token.")
    max_tokens: int = Field(default=256, description="Most tokens to generate.")
    top_p: float = Field(default=1.0, description="Nucleus sampling: keep the top tokens up to this probability mass.")
    top_k: int = Field(default=-1, description="Keep only the k likeliest tokens; -1 keeps all.")
    stream: bool = Field(default=False, description="Send the answer as server-sent events while it is generated.")


class LLMTokenUsage(BaseModel):
    """Token counts of a request."""

    prompt_tokens: int = Field(..., description="Tokens in the prompt, after the chat template.")
    completion_tokens: int = Field(..., description="Tokens generated so far.")
    total_tokens: int = Field(..., description="prompt_tokens + completion_tokens.")


class LLMChoice(BaseModel):
    """The answer (``message``), or one streamed piece of it (``delta``)."""

    index: int = Field(..., description="Always 0: one answer per request.")
    finish_reason: str = Field(default="", description="Why generation ended (stop, length); empty until then.")
    # Nullable; the OpenAPI document shows a plain reference, as upstream's does (see runner.app).
    delta: LLMMessage | None = Field(default=None, description="The new text of a streamed chunk.")
    message: LLMMessage | None = Field(default=None, description="The whole answer of a non-streamed response.")


class LLMResponse(BaseModel):
    """A completion, or one chunk of a streamed completion."""

    id: str = Field(..., description="Identifier of the completion, shared by its chunks.")
    model: str = Field(..., description="The model that generated it.")
    created: int = Field(..., description="Unix time the completion started.")
    usage: LLMTokenUsage = Field(..., description="Token counts so far.")
    choices: list[LLMChoice] = Field(..., description="Exactly one choice.")
