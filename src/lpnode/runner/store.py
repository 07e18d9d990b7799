"""The model store: a Hugging Face cache directory (``models--org--name/{refs,snapshots,blobs}``),
the same layout ai-runner containers read from ``/models``.

``pull`` fills it from the Hub (resumable, with progress); ``list_models`` says what is there, how big
it is and which pipelines can serve it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lpnode.errors import HubUnreachableError, ModelStoreError

# diffusers pipeline classes → the lpnode pipelines that can serve them
_DIFFUSERS_CLASSES: dict[str, tuple[str, ...]] = {
    "StableDiffusionInstructPix2PixPipeline": ("image-to-image",),
    "StableDiffusionUpscalePipeline": ("upscale",),
    "StableVideoDiffusionPipeline": ("image-to-video",),
}
_TEXT_TO_IMAGE_FAMILIES = ("StableDiffusion", "Flux", "PixArt", "Kandinsky", "LatentConsistency")
# transformers architectures (config.json) → pipelines, by name fragment
_ARCHITECTURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("SafetyChecker", ("safety-checker",)),
    ("SpeechSeq2Seq", ("audio-to-text",)),
    ("Whisper", ("audio-to-text",)),
    ("Blip", ("image-to-text",)),
    ("Vits", ("text-to-speech",)),
    ("SpeechT5ForTextToSpeech", ("text-to-speech",)),
    ("ParlerTTS", ("text-to-speech",)),
    ("Sam2", ("segment-anything-2",)),
    ("ForCausalLM", ("llm",)),
)


@dataclass(frozen=True)
class StoredModel:
    model_id: str
    revision: str
    size_bytes: int
    files: int
    pipelines: tuple[str, ...]
    path: Path


DEFAULT_MODELS_DIR = Path("~/.lpnode/models").expanduser()
"""The models dir of every lpnode command when none is given: the orchestrator's (``DATA_DIR/models`` with
its default data dir ``~/.lpnode``), so a model pulled with no flags is where the orchestrator looks."""


def models_dir_default() -> Path:
    """``MODEL_DIR`` when set (the ai-runner contract), else :data:`DEFAULT_MODELS_DIR`."""
    return Path(os.environ["MODEL_DIR"]).expanduser() if os.environ.get("MODEL_DIR") else DEFAULT_MODELS_DIR


def pull(
    model_id: str,
    models_dir: Path,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    revision: str | None = None,
    token: str | None = None,
    progress: bool | None = None,
) -> Path:
    """Download ``model_id`` into ``models_dir``; the snapshot path. Files already there are kept, so an
    interrupted pull continues where it stopped, file by file (huggingface_hub restarts a file that was cut
    mid-way; the partial file a killed pull left behind is removed first). ``progress``: huggingface_hub's
    progress bars on stderr; by default only when stderr is a terminal (a log gets no bar updates)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.utils.tqdm import disable_progress_bars, enable_progress_bars

    if model_id.count("/") != 1:
        raise ModelStoreError(f"{model_id!r} is not a Hugging Face repo id; expected org/name")
    models_dir.mkdir(parents=True, exist_ok=True)
    discard_interrupted(models_dir, model_id)
    show = sys.stderr.isatty() if progress is None else progress
    if show:
        enable_progress_bars()
    else:
        disable_progress_bars()
    try:
        path = snapshot_download(
            model_id,
            cache_dir=str(models_dir),
            allow_patterns=list(include) or None,
            ignore_patterns=list(exclude) or None,
            revision=revision,
            token=token or os.environ.get("HF_TOKEN") or None,
        )
    except GatedRepoError:
        raise ModelStoreError(
            f"{model_id} is gated: accept its licence on huggingface.co, then pass --token or set HF_TOKEN"
        ) from None
    except RepositoryNotFoundError:
        raise ModelStoreError(
            f"{model_id} was not found on the Hub (a private repo needs --token or HF_TOKEN)"
        ) from None
    except RevisionNotFoundError:
        raise ModelStoreError(f"{model_id} has no revision {revision!r}") from None
    except LocalEntryNotFoundError as exc:
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        reason = str(exc).splitlines()[0]
        raise HubUnreachableError(
            f"cannot reach the Hugging Face Hub at {endpoint} to fetch {model_id} ({reason}); check the "
            "network or proxy, or set HF_ENDPOINT to a mirror. Partial downloads resume on the next pull."
        ) from None
    except OSError as exc:
        raise ModelStoreError(f"could not write {model_id} into {models_dir}: {exc}") from None
    return Path(path)


def discard_interrupted(models_dir: Path, model_id: str) -> int:
    """Remove the partial files killed pulls of ``model_id`` left in its ``blobs`` (huggingface_hub never
    reuses them); the bytes freed. A partial file whose download is still running elsewhere (its lock is
    held) is left alone."""
    from filelock import FileLock, Timeout

    folder = models_dir / ("models--" + model_id.replace("/", "--"))
    freed = 0
    for partial in sorted((folder / "blobs").glob("*.incomplete")):
        # named <etag>.<unique>.incomplete; the download holds .locks/<folder>/<etag>.lock while it runs
        lock = models_dir / ".locks" / folder.name / (partial.name.split(".", 1)[0] + ".lock")
        try:
            with FileLock(str(lock), timeout=0):
                size = partial.stat().st_size
                partial.unlink()
                freed += size
        except (Timeout, OSError):
            continue
    return freed


def blob_sizes(models_dir: Path, model_id: str) -> dict[str, int]:
    """The complete files (blobs) of ``model_id`` in ``models_dir`` and their sizes; {} when it has none."""
    blobs = models_dir / ("models--" + model_id.replace("/", "--")) / "blobs"
    if not blobs.is_dir():
        return {}
    return {p.name: p.stat().st_size for p in blobs.iterdir() if p.is_file() and not p.name.endswith(".incomplete")}


def _pipelines_for(snapshot: Path) -> tuple[str, ...]:
    index = snapshot / "model_index.json"
    if index.is_file():
        try:
            cls = str(json.loads(index.read_text()).get("_class_name", ""))
        except (OSError, ValueError):
            return ()
        if cls in _DIFFUSERS_CLASSES:
            return _DIFFUSERS_CLASSES[cls]
        if cls.startswith(_TEXT_TO_IMAGE_FAMILIES):
            return ("text-to-image", "image-to-image")
        return ()
    config = snapshot / "config.json"
    if config.is_file():
        try:
            data = json.loads(config.read_text())
        except (OSError, ValueError):
            return ()
        names = " ".join(data.get("architectures") or [data.get("_class_name", "")])
        for fragment, pipelines in _ARCHITECTURES:
            if fragment in names:
                return pipelines
        return ()
    if any(snapshot.glob("*lightning*unet.safetensors")):
        return ("text-to-image", "image-to-image")
    return ()


def _folder_size(folder: Path) -> tuple[int, int]:
    """Bytes and file count of a cache folder, counting each blob once (snapshots link into blobs)."""
    seen: set[Path] = set()
    size = files = 0
    for path in folder.rglob("*"):
        if not path.is_file() or path.parent.name == "refs" or path.name.endswith(".lock"):
            continue
        target = path.resolve()
        if target in seen:
            continue
        seen.add(target)
        if "snapshots" in path.parts:
            files += 1
        size += target.stat().st_size
    return size, files


def list_models(models_dir: Path) -> list[StoredModel]:
    """Models present in ``models_dir`` (those with at least one snapshot), sorted by id."""
    out: list[StoredModel] = []
    if not models_dir.is_dir():
        return out
    for folder in sorted(models_dir.glob("models--*")):
        model_id = folder.name.removeprefix("models--").replace("--", "/", 1)
        ref = folder / "refs" / "main"
        revision = ref.read_text().strip() if ref.is_file() else ""
        snapshot = folder / "snapshots" / revision if revision else None
        if snapshot is None or not snapshot.is_dir():
            snapshots = sorted((folder / "snapshots").glob("*")) if (folder / "snapshots").is_dir() else []
            if not snapshots:
                continue
            snapshot = snapshots[-1]
            revision = snapshot.name
        size, files = _folder_size(folder)
        out.append(StoredModel(model_id, revision, size, files, _pipelines_for(snapshot), snapshot))
    return out


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"
