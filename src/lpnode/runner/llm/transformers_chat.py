"""Chat generation with transformers: the model's chat template, ``generate`` in a worker thread,
tokens handed to the event loop as they come, and a stop check before every new token."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
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
    """A transformers streamer that detokenizes incrementally and pushes whole characters to a queue
    on the event loop (never half a UTF-8 sequence). Each token costs a decode of a short window, not
    of everything generated so far."""

    def __init__(self, tokenizer: Any, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any], job: Job) -> None:
        self._tokenizer = tokenizer
        self._loop = loop
        self._queue = queue
        self._job = job
        self._prompt_seen = False
        self._tokens: list[int] = []
        self._prefix = 0  # tokens before this index have been emitted and are context only
        self._read = 0  # tokens before this index have been emitted
        self.generated = 0

    def _decode(self, start: int, end: int | None = None) -> str:
        text: str = self._tokenizer.decode(self._tokens[start:end], skip_special_tokens=True)
        return text

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # the first call carries the prompt
            self._prompt_seen = True
            return
        ids = value.reshape(-1).tolist()
        self.generated += len(ids)
        self._job.steps_done = self.generated
        self._tokens.extend(ids)
        # Decode the new tokens together with the previous ones, so merges and spaces come out right.
        before = self._decode(self._prefix, self._read)
        after = self._decode(self._prefix)
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self._emit(after[len(before) :])
            self._prefix, self._read = self._read, len(self._tokens)

    def end(self) -> None:
        before = self._decode(self._prefix, self._read)
        after = self._decode(self._prefix)
        if len(after) > len(before):
            self._emit(after[len(before) :])

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
        # One generate thread per admitted request: the runner's in-flight limit, not the loop's pool.
        self._executor = ThreadPoolExecutor(max_workers=ctx.max_in_flight, thread_name_prefix="lpnode-llm")
        log_event(
            log,
            "llm loaded",
            model_id=ctx.model_id,
            backend=self.name,
            device=ctx.device,
            dtype=str(dtype).removeprefix("torch."),
        )

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

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

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        streamer = _DeltaStreamer(self.tokenizer, loop, queue, job)
        prompt_tokens = 0

        def generate() -> None:
            nonlocal prompt_tokens
            try:
                inputs = self._prompt(params)  # the chat template runs here, not on the event loop
                prompt_tokens = int(inputs["input_ids"].shape[-1])
                if self.context_tokens and prompt_tokens + params.max_tokens > self.context_tokens:
                    raise BadRequestError(
                        f"The prompt ({prompt_tokens} tokens) plus max_tokens ({params.max_tokens}) exceeds the "
                        f"model's context of {self.context_tokens} tokens; lower max_tokens or shorten the "
                        "conversation."
                    )
                with torch.inference_mode():
                    self.model.generate(
                        **inputs,
                        streamer=streamer,
                        stopping_criteria=[_stop_when_cancelled(job)],
                        **self._generation_options(params),
                    )
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _END)

        worker = loop.run_in_executor(self._executor, generate)
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
                # Nobody reads how generation ended now; read it here so asyncio does not log it.
                worker.add_done_callback(lambda f: f.cancelled() or f.exception())
            await asyncio.wait([worker])
