"""Serve the llm route from an OpenAI-compatible server (Ollama, vLLM's server, llama.cpp, ...).

The runner keeps the Livepeer side of the contract (the Hugging Face model id it advertises, the
``LLMResponse`` chunk format, auth, admission) and forwards generation to ``{url}/v1/chat/completions``.
The upstream's name for the model comes from ``--llm-upstream-model``, else from the table below,
else is the Hugging Face id itself.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import AsyncGenerator
from typing import Any

from lpnode.errors import BadRequestError, ModelStoreError, PipelineFailedError, UnavailableError
from lpnode.logs import log_event
from lpnode.runner.llm.backend import ChatParams, Delta
from lpnode.runner.pipelines.base import Job, LoadContext

log = logging.getLogger("lpnode.runner")

# Hugging Face id (lower case) → Ollama tag, for the models operators commonly serve.
OLLAMA_TAGS: dict[str, str] = {
    "meta-llama/meta-llama-3.1-8b-instruct": "llama3.1:8b",
    "meta-llama/llama-3.1-8b-instruct": "llama3.1:8b",
    "meta-llama/meta-llama-3.1-70b-instruct": "llama3.1:70b",
    "meta-llama/llama-3.1-70b-instruct": "llama3.1:70b",
    "meta-llama/llama-3.3-70b-instruct": "llama3.3:70b",
    "meta-llama/llama-3.2-3b-instruct": "llama3.2:3b",
    "meta-llama/llama-3.2-1b-instruct": "llama3.2:1b",
    "mistralai/mistral-7b-instruct-v0.3": "mistral:7b",
    "google/gemma-2-9b-it": "gemma2:9b",
    "google/gemma-2-2b-it": "gemma2:2b",
    "qwen/qwen2.5-7b-instruct": "qwen2.5:7b",
    "microsoft/phi-3-mini-4k-instruct": "phi3:mini",
}
_CHECK_TIMEOUT_SECONDS = 10


def upstream_model_name(model_id: str, configured: str = "") -> str:
    return configured or OLLAMA_TAGS.get(model_id.lower(), model_id)


class OpenAIUpstream:
    name = "openai"

    def __init__(self, ctx: LoadContext) -> None:
        self.url = ctx.upstream_url.rstrip("/")
        self.model = upstream_model_name(ctx.model_id, ctx.upstream_model)
        self._headers = {"Content-Type": "application/json"}
        if ctx.upstream_api_key:
            self._headers["Authorization"] = f"Bearer {ctx.upstream_api_key}"
        self._session: Any = None
        served = self._list_models()
        if served is not None and self.model not in served:
            listed = ", ".join(sorted(served)) or "none"
            raise ModelStoreError(
                f"the LLM upstream at {self.url} does not serve {self.model!r} (it serves: {listed}); "
                f"pull it there (for Ollama: ollama pull {self.model}) or pass --llm-upstream-model"
            )
        log_event(log, "llm loaded", model_id=ctx.model_id, backend=self.name, upstream=self.url, model=self.model)

    def _list_models(self) -> set[str] | None:
        """The upstream's model names (None when it has no model list); ModelStoreError when unreachable."""
        request = urllib.request.Request(self.url + "/v1/models", headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=_CHECK_TIMEOUT_SECONDS) as response:
                body = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise ModelStoreError(f"the LLM upstream at {self.url} answered {exc.code} to GET /v1/models") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ModelStoreError(f"cannot reach the LLM upstream at {self.url}: {reason}") from None
        return {str(m.get("id")) for m in body.get("data", []) if isinstance(m, dict)}

    def _client(self) -> Any:
        import aiohttp

        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300)
            self._session = aiohttp.ClientSession(timeout=timeout, headers=self._headers)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def stream(self, params: ChatParams, job: Job) -> AsyncGenerator[Delta, None]:
        import aiohttp

        body: dict[str, Any] = {
            "model": self.model,
            "messages": params.messages,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if params.top_k > 0:
            body["top_k"] = params.top_k
        prompt_tokens = completion = 0
        finish = ""
        try:
            async with self._client().post(self.url + "/v1/chat/completions", json=body) as response:
                if response.status >= 400:
                    raise _upstream_error(response.status, await response.text())
                async for raw in response.content:
                    line = raw.decode("utf-8", "replace").strip()
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if "error" in chunk:
                        raise PipelineFailedError(f"LLM upstream error: {_message(chunk['error'])}")
                    usage = chunk.get("usage") or {}
                    prompt_tokens = int(usage.get("prompt_tokens", prompt_tokens))
                    for choice in chunk.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content") or ""
                        finish = choice.get("finish_reason") or finish
                        if text:
                            completion += 1
                            job.steps_done = completion
                            yield Delta(text, prompt_tokens, completion)
                    completion = int(usage.get("completion_tokens", completion))
        except aiohttp.ClientConnectionError as exc:
            raise UnavailableError(f"LLM upstream {self.url} is unreachable: {exc}", retry_after=5) from None
        except (ValueError, aiohttp.ClientPayloadError) as exc:
            raise PipelineFailedError(f"LLM upstream sent a malformed stream: {exc}") from None
        yield Delta("", prompt_tokens, completion, finish_reason=finish or "stop")


def _message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


def _upstream_error(status: int, text: str) -> Exception:
    try:
        message = _message(json.loads(text).get("error", text))
    except (ValueError, AttributeError):
        message = text.strip()[:300]
    if 400 <= status < 500:
        return BadRequestError(f"The LLM upstream refused the request ({status}): {message}")
    return PipelineFailedError(f"The LLM upstream failed ({status}): {message}")
