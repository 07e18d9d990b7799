"""LoRA adapters for the diffusion pipelines: applying the ``loras`` request field.

``loras`` is a JSON object mapping a Hugging Face repo id to a weight ≥ 0, at most 4 per request
(parsed and checked by :func:`lpnode.schemas.checks.parse_loras`). Up to 12 adapters stay loaded; the
least recently used one is dropped beyond that.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

from lpnode.errors import LoraLoadingError
from lpnode.logs import log_event
from lpnode.runner.device import repo_folder
from lpnode.runner.pipelines.base import LoadContext

log = logging.getLogger("lpnode.runner")

MAX_LOADED = 12


def _adapter_name(repo: str) -> str:
    return repo.replace("/", "--").replace(".", "_")


class LoraAdapters:
    """The adapters loaded into one diffusers pipeline. Used from one worker thread at a time."""

    def __init__(self, pipe: Any, ctx: LoadContext) -> None:
        self._pipe = pipe
        self._ctx = ctx
        self._loaded: OrderedDict[str, str] = OrderedDict()  # repo -> adapter name, oldest first
        self._active = False

    def apply(self, weights: dict[str, float]) -> None:
        """Make exactly ``weights`` active (none when empty)."""
        if not weights:
            if self._active:
                self._pipe.disable_lora()
                self._active = False
            return
        for repo in weights:
            self._ensure_loaded(repo)
        names = [self._loaded[repo] for repo in weights]
        self._pipe.set_adapters(names, adapter_weights=list(weights.values()))
        self._pipe.enable_lora()
        self._active = True

    def _weight_name(self, repo: str) -> str:
        """The LoRA weights file in the cached snapshot of ``repo`` (diffusers cannot guess it offline)."""
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            snapshot = Path(snapshot_download(repo, cache_dir=str(self._ctx.model_dir), local_files_only=True))
        except (LocalEntryNotFoundError, OSError):
            raise LoraLoadingError(f"LoRa repository '{repo}' not found.") from None
        files = sorted(p.name for p in snapshot.glob("*.safetensors"))
        if "pytorch_lora_weights.safetensors" in files:
            return "pytorch_lora_weights.safetensors"
        if len(files) > 1:
            files = [f for f in files if "lora" in f.lower()] or files
        if len(files) != 1:
            found = ", ".join(files) or "none"
            raise LoraLoadingError(
                f"LoRa repository '{repo}' needs exactly one .safetensors weights file at its top level; found {found}."
            )
        return files[0]

    def _ensure_loaded(self, repo: str) -> None:
        if repo in self._loaded:
            self._loaded.move_to_end(repo)
            return
        if not hasattr(self._pipe, "load_lora_weights"):
            raise LoraLoadingError(f"LoRas are not supported by model '{self._ctx.model_id}'.")
        try:
            import peft  # noqa: F401
        except ImportError:
            raise LoraLoadingError("LoRa support needs the 'peft' package installed on the runner.") from None
        if not self._ctx.allow_downloads and not repo_folder(self._ctx.model_dir, repo).is_dir():
            raise LoraLoadingError(f"LoRa repository '{repo}' not found.")
        name = _adapter_name(repo)
        options: dict[str, Any] = {"cache_dir": str(self._ctx.model_dir), "adapter_name": name}
        if not self._ctx.allow_downloads:
            options["local_files_only"] = True
            options["weight_name"] = self._weight_name(repo)
        try:
            self._pipe.load_lora_weights(repo, **options)
        except OSError:
            raise LoraLoadingError(f"LoRa repository '{repo}' not found.") from None
        except (ValueError, KeyError, RuntimeError) as exc:
            log_event(log, "lora rejected", logging.WARNING, repo=repo, reason=str(exc).splitlines()[0])
            raise LoraLoadingError(f"LoRa incompatible with base model: '{self._ctx.model_id}'.") from None
        self._loaded[repo] = name
        log_event(log, "lora loaded", repo=repo, adapter=name)
        while len(self._loaded) > MAX_LOADED:
            old_repo, old_name = self._loaded.popitem(last=False)
            self._pipe.delete_adapters(old_name)
            log_event(log, "lora evicted", repo=old_repo)
