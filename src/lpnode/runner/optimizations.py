"""Optimisation flags for the diffusion pipelines (``TORCH_COMPILE``, ``DEEPCACHE``, ``SFAST``).

Each flag is applied when the library it needs is installed; otherwise the runner says so in its log
and serves unoptimised, as the reference runner does.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from lpnode.logs import log_event
from lpnode.runner.pipelines.base import LoadContext

log = logging.getLogger("lpnode.runner")


def apply_optimizations(pipe: Any, ctx: LoadContext) -> None:
    if ctx.flag("SFAST") and ctx.flag("DEEPCACHE"):
        log_event(log, "SFAST and DEEPCACHE are both set; DEEPCACHE may lower SFAST's gain", logging.WARNING)
    if ctx.flag("SFAST"):
        _stable_fast(pipe)
    if ctx.flag("DEEPCACHE") and not re.search(r"[-_](lightning|turbo)", ctx.model_id, re.IGNORECASE):
        _deepcache(pipe)
    if ctx.flag("TORCH_COMPILE") and hasattr(pipe, "unet"):
        import torch

        pipe.unet = torch.compile(pipe.unet, mode="max-autotune", fullgraph=True)
        pipe.vae.decode = torch.compile(pipe.vae.decode, mode="max-autotune", fullgraph=True)
        log_event(log, "optimisation applied", flag="TORCH_COMPILE")


def _stable_fast(pipe: Any) -> None:
    try:
        from sfast.compilers.diffusion_pipeline_compiler import (  # type: ignore[import-not-found]
            CompilationConfig,
            compile,
        )
    except ImportError:
        log_event(log, "optimisation skipped: stable-fast is not installed", logging.WARNING, flag="SFAST")
        return
    compile(pipe, CompilationConfig.Default())
    log_event(log, "optimisation applied", flag="SFAST")


def _deepcache(pipe: Any) -> None:
    try:
        from DeepCache import DeepCacheSDHelper  # type: ignore[import-not-found]
    except ImportError:
        log_event(log, "optimisation skipped: DeepCache is not installed", logging.WARNING, flag="DEEPCACHE")
        return
    helper = DeepCacheSDHelper(pipe=pipe)
    helper.set_params(cache_interval=3, cache_branch_id=0)
    helper.enable()
    log_event(log, "optimisation applied", flag="DEEPCACHE")
