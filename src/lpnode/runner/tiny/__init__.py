"""Tiny random-weight models for offline demos and tests.

Each tiny model is a real architecture (the actual diffusers/transformers
classes: ``StableDiffusionPipeline``, ``StableVideoDiffusionPipeline``,
``StableDiffusionSafetyChecker`` ...) shrunk to a few hundred kilobytes and
filled with seeded random weights. It is saved in Hugging Face cache layout
(``models--org--name/refs/main`` + ``snapshots/<rev>/``), so serving code loads
it with a plain ``from_pretrained(model_id, cache_dir=models_dir)`` exactly like
a real checkpoint, offline, and runs in a fraction of a second on a CPU.

The point is to exercise the real loading and inference path without a GPU or
a download. The outputs are noise: assert on structure (types, sizes, frame
counts), never on content.

Usage::

    from lpnode.runner import tiny
    tiny.build(models_dir, "text-to-image")   # + the safety checker it needs
    # then: AutoPipelineForText2Image.from_pretrained("lpnode/tiny-text-to-image",
    #                                                 cache_dir=models_dir)

New families register their models by calling ``_registry.register`` at import
time in their own module, imported below.
"""

from __future__ import annotations

from pathlib import Path

from . import blip as blip  # image-to-text
from . import diffusion as diffusion  # registers its models
from . import llm as llm  # llm
from . import lora as lora  # registers its model
from . import safety_checker as safety_checker  # registers its model
from . import sam2 as sam2  # segment-anything-2
from . import vits as vits  # text-to-speech
from . import whisper as whisper  # audio-to-text
from ._layout import is_present, write_snapshot
from ._layout import snapshot_dir as _snapshot_dir
from ._registry import Entry, TinyModel, entries, entry

__all__ = ["TinyModel", "available", "build", "pipelines", "snapshot_dir"]


def available() -> list[TinyModel]:
    """Every tiny model that can be built, in a stable order."""
    return [e.model for e in entries()]


def pipelines() -> list[str]:
    """Pipeline names that have at least one tiny model, in the runner's route order."""
    from lpnode.runner.pipelines import pipeline_names

    order = pipeline_names()
    names = {m.pipeline for m in available() if m.pipeline}
    return sorted(names, key=lambda name: order.index(name) if name in order else len(order))


def snapshot_dir(models_dir: Path, model_id: str) -> Path:
    """Where the files of ``model_id`` live under ``models_dir``."""
    return _snapshot_dir(Path(models_dir), model_id)


def _selected(pipeline: str) -> list[Entry]:
    """The entries for ``pipeline`` plus the helpers they need, in registry order."""
    if pipeline == "all":
        return entries()
    choices = pipelines()
    if pipeline not in choices:
        raise ValueError(f"unknown pipeline {pipeline!r}; choose from: {', '.join(['all', *choices])}")
    wanted: set[str] = set()
    pending = [e.model.model_id for e in entries() if e.model.pipeline == pipeline]
    while pending:
        model_id = pending.pop()
        if model_id not in wanted:
            wanted.add(model_id)
            pending.extend(entry(model_id).needs)
    return [e for e in entries() if e.model.model_id in wanted]


def build(models_dir: Path, pipeline: str = "all", *, force: bool = False) -> list[TinyModel]:
    """Build the tiny models for ``pipeline`` (``"all"``: every one) into ``models_dir``.

    Helper models they need (the safety checker) are built too. A model whose
    snapshot already exists is skipped unless ``force``. Returns the models
    actually built. Raises ``ValueError`` for an unknown pipeline name.
    """
    models_dir = Path(models_dir)
    built: list[TinyModel] = []
    for e in _selected(pipeline):
        model_id = e.model.model_id
        if not force and is_present(models_dir, model_id):
            continue
        write_snapshot(models_dir, model_id, e.save)
        built.append(e.model)
    return built
