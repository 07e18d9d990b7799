"""Chat generation with transformers: the model's chat template, ``generate`` in a worker thread,
tokens handed to the event loop as they come, and a stop check before every new token."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Any

from lpnode.errors import BadRequestError, ModelStoreError
from lpnode.logs import log_event
from lpnode.runner.device import weights_dtype
from lpnode.runner.llm.backend import ChatParams, Delta
from lpnode.runner.model_files import require_cached
from lpnode.runner.pipelines.base import Job, LoadContext

log = logging.getLogger("lpnode.runner")
_END = object()


class _DeltaStreamer:
    """A transformers streamer that decodes token by token and pushes whole characters to a queue
    on the event loop (never half a UTF-8 sequence)."""

    def __init__(self, tokenizer: Any, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any], job: Job) -> None:
        self._tokenizer = tokenizer
        self._loop = loop
        self._queue = queue
        self._job = job
        self._prompt_seen = False
        self._tokens: list[int] = []
        self._printed = 0
        self.generated = 0

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # the first call carries the prompt
            self._prompt_seen = True
            return
        ids = value.reshape(-1).tolist()
        self.generated += len(ids)
        self._job.steps_done = self.generated
        self._tokens.extend(ids)
        text = self._tokenizer.decode(self._tokens, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return  # wait for the rest of a multi-byte character
        self._emit(text[self._printed :])
        self._printed = len(text)

    def end(self) -> None:
        text = self._tokenizer.decode(self._tokens, skip_special_tokens=True)
        self._emit(text[self._printed :])

    def _emit(self, piece: str) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, (piece, self.generated))


def _stop_when_cancelled(job: Job) -> Any:
    """A stopping criterion that ends generation once ``job`` is cancelled (checked every token)."""
    import torch
    import transformers

    base: Any = transformers.StoppingCriteria

    class StopWhenCancelled(base):  # type: ignore[misc]
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), job.cancelled, dtype=torch.bool, device=input_ids.device)

    return StopWhenCancelled()


class TransformersChat:
    name = "transformers"

    def __init__(self, ctx: LoadContext) -> None:
        import transformers

        require_cached(ctx.model_dir, ctx.model_id, "config.json", kind="transformers model")
        options: dict[str, Any] = {"cache_dir": str(ctx.model_dir), "local_files_only": not ctx.allow_downloads}
        dtype = weights_dtype(ctx.device, ctx.model_dir, ctx.model_id, bfloat16=ctx.flag("BFLOAT16"))
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(ctx.model_id, **options)
            model: Any = transformers.AutoModelForCausalLM.from_pretrained(ctx.model_id, dtype=dtype, **options)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelStoreError(f"could not load {ctx.model_id!r} from {ctx.model_dir}: {exc}") from exc
        if not getattr(self.tokenizer, "chat_template", None):
            raise ModelStoreError(
                f"{ctx.model_id!r} has no chat template, so it cannot serve chat requests; "
                "use an instruction-tuned (chat) model"
            )
        self.model = model.to(ctx.device).eval()
        self.device = ctx.device
        self.context_tokens: int | None = getattr(model.config, "max_position_embeddings", None)
        log_event(
            log,
            "llm loaded",
            model_id=ctx.model_id,
            backend=self.name,
            device=ctx.device,
            dtype=str(dtype).removeprefix("torch."),
        )

    def _prompt(self, params: ChatParams) -> Any:
        try:
            encoded: Any = self.tokenizer.apply_chat_template(
                params.messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
        except Exception as exc:  # jinja TemplateError: the template rejects this conversation
            raise BadRequestError(f"The model's chat template rejected the messages: {exc}") from None
        return encoded.to(self.device)

    def _generation_options(self, params: ChatParams) -> dict[str, Any]:
        options: dict[str, Any] = {"max_new_tokens": params.max_tokens}
        if params.temperature <= 0:
            options["do_sample"] = False
        else:
            options.update(
                do_sample=True,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k if params.top_k > 0 else 0,
            )
        if self.tokenizer.pad_token_id is not None:
            options["pad_token_id"] = self.tokenizer.pad_token_id
        return options

    async def stream(self, params: ChatParams, job: Job) -> AsyncGenerator[Delta, None]:
        import torch

        inputs = self._prompt(params)
        prompt_tokens = int(inputs["input_ids"].shape[-1])
        if self.context_tokens and prompt_tokens + params.max_tokens > self.context_tokens:
            raise BadRequestError(
                f"The prompt ({prompt_tokens} tokens) plus max_tokens ({params.max_tokens}) exceeds the model's "
                f"context of {self.context_tokens} tokens; lower max_tokens or shorten the conversation."
            )
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        streamer = _DeltaStreamer(self.tokenizer, loop, queue, job)

        def generate() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(
                        **inputs,
                        streamer=streamer,
                        stopping_criteria=[_stop_when_cancelled(job)],
                        **self._generation_options(params),
                    )
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _END)

        worker = loop.run_in_executor(None, generate)
        completion = 0
        try:
            while (item := await queue.get()) is not _END:
                piece, completion = item
                if piece:
                    yield Delta(piece, prompt_tokens, completion)
            await worker  # raises what generate raised
            finish = "length" if streamer.generated >= params.max_tokens else "stop"
            yield Delta("", prompt_tokens, streamer.generated, finish_reason=finish)
        finally:
            if not worker.done():  # the client went away: stop before the next token
                job.cancel()
            await asyncio.wait([worker])
