"""Chat generation with vLLM's async engine (GPU machines with the ``vllm`` package installed).

Mirrors the reference runner's engine settings; the environment variables it reads are the same
(``MAX_MODEL_LEN``, ``MAX_NUM_SEQS``, ``MAX_NUM_BATCHED_TOKENS``, ``GPU_MEMORY_UTILIZATION``,
``TENSOR_PARALLEL_SIZE``, ``PIPELINE_PARALLEL_SIZE``, ``USE_8BIT``). vLLM batches concurrent requests
continuously, so the runner admits many at once.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncGenerator
from typing import Any

from lpnode.errors import ModelStoreError
from lpnode.logs import log_event
from lpnode.runner.llm.backend import ChatParams, Delta
from lpnode.runner.pipelines.base import Job, LoadContext

log = logging.getLogger("lpnode.runner")


class VLLMChat:
    name = "vllm"

    def __init__(self, ctx: LoadContext) -> None:
        from huggingface_hub import snapshot_download
        from vllm import AsyncEngineArgs, AsyncLLMEngine  # type: ignore[import-not-found]

        try:
            path = snapshot_download(
                ctx.model_id, cache_dir=str(ctx.model_dir), local_files_only=not ctx.allow_downloads
            )
        except OSError as exc:
            raise ModelStoreError(f"could not find {ctx.model_id!r} in {ctx.model_dir}: {exc}") from exc
        args = AsyncEngineArgs(
            model=path,
            tokenizer=path,
            trust_remote_code=True,
            dtype="auto",
            enable_prefix_caching=True,
            max_model_len=int(os.environ.get("MAX_MODEL_LEN", "8192")),
            max_num_seqs=int(os.environ.get("MAX_NUM_SEQS", "128")),
            max_num_batched_tokens=int(os.environ.get("MAX_NUM_BATCHED_TOKENS", "8192")),
            gpu_memory_utilization=float(os.environ.get("GPU_MEMORY_UTILIZATION", "0.85")),
            tensor_parallel_size=int(os.environ.get("TENSOR_PARALLEL_SIZE", "1")),
            pipeline_parallel_size=int(os.environ.get("PIPELINE_PARALLEL_SIZE", "1")),
            quantization="bitsandbytes" if os.environ.get("USE_8BIT", "").lower() == "true" else None,
        )
        self.engine: Any = AsyncLLMEngine.from_engine_args(args)
        self.tokenizer: Any = None
        log_event(log, "llm loaded", model_id=ctx.model_id, backend=self.name, device=ctx.device)

    async def stream(self, params: ChatParams, job: Job) -> AsyncGenerator[Delta, None]:
        from vllm import SamplingParams

        if self.tokenizer is None:
            self.tokenizer = await self.engine.get_tokenizer()
        prompt = self.tokenizer.apply_chat_template(params.messages, tokenize=False, add_generation_prompt=True)
        sampling = SamplingParams(
            temperature=params.temperature, top_p=params.top_p, top_k=params.top_k, max_tokens=params.max_tokens
        )
        request_id = uuid.uuid4().hex
        sent = 0
        finish = "stop"
        prompt_tokens = completion = 0
        finished = False
        try:
            async for output in self.engine.generate(prompt, sampling, request_id):
                result = output.outputs[0]
                prompt_tokens = len(output.prompt_token_ids or [])
                completion = len(result.token_ids)
                job.steps_done = completion
                if len(result.text) > sent:
                    yield Delta(result.text[sent:], prompt_tokens, completion)
                    sent = len(result.text)
                finish = result.finish_reason or finish
            finished = True
        finally:
            if not finished:  # the client went away: free the engine's slot now
                await self.engine.abort(request_id)
        yield Delta("", prompt_tokens, completion, finish_reason=finish)
