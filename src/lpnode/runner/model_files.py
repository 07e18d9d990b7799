"""Finding a model's files in the models dir, with errors that say how to fetch what is missing."""

from __future__ import annotations

from pathlib import Path

from lpnode.errors import ModelNotFoundError
from lpnode.runner.device import repo_folder

SAFETY_CHECKED_PIPELINES = frozenset({"text-to-image", "image-to-image", "image-to-video", "upscale"})
"""The pipelines whose runners load the image safety checker besides their model: their requests ask for
the check unless they send ``safety_check=false`` (ai-runner's default)."""


def pull_hint(model_id: str, model_dir: Path) -> str:
    return f"fetch it with: lpnode models pull {model_id} --models-dir {model_dir}"


def cached_file(model_dir: Path, model_id: str, filename: str) -> Path | None:
    """Path of ``filename`` in the cached snapshot of ``model_id``, or None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(model_id, filename, cache_dir=str(model_dir))
    return Path(found) if isinstance(found, str) else None


def require_cached(model_dir: Path, model_id: str, filename: str, kind: str = "model") -> Path:
    """Path of ``filename`` of ``model_id``; ModelNotFoundError with the pull command when absent.
    ``kind`` names what the file makes the repo ("diffusers pipeline", "transformers model")."""
    path = cached_file(model_dir, model_id, filename)
    if path is not None:
        return path
    if not repo_folder(model_dir, model_id).is_dir():
        raise ModelNotFoundError(
            f"model {model_id!r} is not in the models dir {model_dir}; " + pull_hint(model_id, model_dir)
        )
    raise ModelNotFoundError(
        f"model {model_id!r} in {model_dir} has no {filename}: it is not a {kind} or its download is "
        "incomplete; " + pull_hint(model_id, model_dir)
    )
