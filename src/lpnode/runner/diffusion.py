"""What the diffusers-based pipelines share: loading from the models dir, seeds, step callbacks
(so a disconnected client stops the job between steps) and turning images into ``Media``."""

from __future__ import annotations

import inspect
import json
import logging
import random
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from PIL import Image

from lpnode.errors import ModelStoreError
from lpnode.logs import log_event
from lpnode.runner.device import has_fp16_weights, weights_dtype
from lpnode.runner.media import png_data_url
from lpnode.runner.model_files import require_cached
from lpnode.runner.pipelines.base import Job, LoadContext
from lpnode.runner.safety import SafetyChecker
from lpnode.schemas import Media

log = logging.getLogger("lpnode.runner")


def read_model_index(ctx: LoadContext, model_id: str | None = None) -> dict[str, Any]:
    """The diffusers ``model_index.json`` of a cached model; ModelNotFoundError with the fix if absent."""
    model_id = model_id or ctx.model_id
    path = require_cached(ctx.model_dir, model_id, "model_index.json", kind="diffusers pipeline")
    index: dict[str, Any] = json.loads(path.read_text())
    return index


def load_diffusers(cls: Any, ctx: LoadContext, model_id: str | None = None, **kwargs: Any) -> Any:
    """``cls.from_pretrained(model_id, cache_dir=MODEL_DIR)`` with the dtype/variant rules, moved to
    the device, progress bars off. Library errors become ModelStoreError with the model named."""
    import torch

    model_id = model_id or ctx.model_id
    if not ctx.allow_downloads:
        index = read_model_index(ctx, model_id)
        if "safety_checker" in index and "safety_checker" not in kwargs:
            # The safety check is ours (see SafetyChecker): it flags, never blanks, images.
            kwargs.update(safety_checker=None, requires_safety_checker=False)
    dtype = weights_dtype(ctx.device, ctx.model_dir, model_id, bfloat16=ctx.flag("BFLOAT16"))
    options: dict[str, Any] = {"cache_dir": str(ctx.model_dir), "dtype": dtype}
    if dtype == torch.float16 and has_fp16_weights(ctx.model_dir, model_id):
        options["variant"] = "fp16"
    if not ctx.allow_downloads:
        options["local_files_only"] = True
    try:
        pipe = cls.from_pretrained(model_id, **options, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelStoreError(f"could not load {model_id!r} from {ctx.model_dir}: {exc}") from exc
    pipe.to(ctx.device)
    pipe.set_progress_bar_config(disable=True)
    log_event(
        log,
        "diffusers pipeline loaded",
        model_id=model_id,
        cls=type(pipe).__name__,
        dtype=str(dtype).removeprefix("torch."),
        device=ctx.device,
    )
    return pipe


def step_callbacks(pipe: Any, job: Job) -> dict[str, Any]:
    """Keyword arguments that make ``pipe`` call ``job.checkpoint()`` after every denoising step."""
    params = inspect.signature(pipe.__call__).parameters
    if "callback_on_step_end" in params:

        def on_step_end(_pipe: Any, _step: int, _timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            job.checkpoint()
            return kwargs

        return {"callback_on_step_end": on_step_end}
    if "callback" in params:
        return {"callback": lambda *_: job.checkpoint(), "callback_steps": 1}
    return {}


def accepted_kwargs(pipe: Any, candidates: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``candidates`` that ``pipe.__call__`` accepts."""
    params = inspect.signature(pipe.__call__).parameters
    return {k: v for k, v in candidates.items() if k in params}


def split_prompts(name: str, text: str) -> dict[str, str]:
    """``"a|b|c"`` → ``{name: "a", name_2: "b", name_3: "c"}`` (multi-encoder models such as SDXL/SD3)."""
    parts = [p.strip() for p in text.split("|", 3)[:3]] if text else [""]
    out = {name: parts[0]}
    for i, part in enumerate(parts[1:], start=2):
        out[f"{name}_{i}"] = part
    return out


def choose_seed(seed: int | None) -> int:
    """The request's seed, or a random one when absent."""
    return random.randint(0, 2**32 - 1) if seed is None else seed


def generator(device: str, seed: int) -> Any:
    import torch

    gen_device = "cpu" if device.startswith("mps") else device
    return torch.Generator(gen_device).manual_seed(seed)


_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(pipe: Any) -> threading.Lock:
    """The lock around calls to ``pipe``: a diffusers pipeline keeps per-call state in its scheduler
    (timesteps, step index), so two calls at once corrupt each other. With ``--max-in-flight`` above 1,
    jobs are admitted together and take turns on the model."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(pipe)
        if lock is None:
            lock = _LOCKS[pipe] = threading.Lock()
        return lock


def generate_images(pipe: Any, kwargs: dict[str, Any], seed: int, count: int, device: str, job: Job) -> list[Any]:
    """``count`` images, one call each with seed ``seed + i``, so image i is reproducible on its own
    (and a batch never needs more memory than one image)."""
    call = accepted_kwargs(pipe, kwargs)
    images = []
    for i in range(count):
        with model_lock(pipe):
            output = pipe(
                **call, num_images_per_prompt=1, generator=generator(device, seed + i), **step_callbacks(pipe, job)
            )
        images.append(output.images[0])
    return images


def to_media(images: Sequence[Image.Image], seeds: Sequence[int], checker: SafetyChecker | None) -> list[Media]:
    """PNG data URLs with their seeds and NSFW flags (all False when the check is off)."""
    flags = checker.flags(list(images)) if checker is not None else [False] * len(images)
    return [
        Media(url=png_data_url(img), seed=seed, nsfw=bool(flag))
        for img, seed, flag in zip(images, seeds, flags, strict=True)
    ]
