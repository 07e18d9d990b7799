"""The registry of tiny models: one entry per model, filled by the family modules.

A family module (``diffusion``, ``safety_checker``, later ``whisper`` ...)
calls :func:`register` at import time for each model it can build. The
``save`` callable of an entry writes the model's files into an empty folder
(normally with ``save_pretrained``); the cache layout around it is handled by
``_layout``. ``needs`` lists the ids of helper models (the safety checker) that
must be built whenever this one is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TinyModel:
    """A tiny random-weight model that can be built offline."""

    model_id: str
    """Hugging Face id the model is saved under, e.g. ``lpnode/tiny-text-to-image``."""
    pipeline: str
    """The pipeline that serves it, e.g. ``text-to-image``; ``""`` for helper models."""
    description: str
    """One line shown to users."""


@dataclass(frozen=True)
class Entry:
    """How to build one tiny model."""

    model: TinyModel
    save: Callable[[Path], None]
    needs: tuple[str, ...] = ()


_ENTRIES: dict[str, Entry] = {}


def register(
    model_id: str,
    pipeline: str,
    description: str,
    save: Callable[[Path], None],
    needs: tuple[str, ...] = (),
) -> TinyModel:
    """Add a model to the registry; ids must be unique."""
    if model_id in _ENTRIES:
        raise ValueError(f"tiny model {model_id!r} is already registered")
    model = TinyModel(model_id=model_id, pipeline=pipeline, description=description)
    _ENTRIES[model_id] = Entry(model=model, save=save, needs=needs)
    return model


def entries() -> list[Entry]:
    """All registered entries, in registration order."""
    return list(_ENTRIES.values())


def entry(model_id: str) -> Entry:
    """The entry of ``model_id``; KeyError when unknown."""
    return _ENTRIES[model_id]


def seed_for(key: str) -> int:
    """A stable 63-bit seed derived from ``key`` (e.g. ``"<model id>/unet"``)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") >> 1


@contextmanager
def seeded(key: str) -> Iterator[None]:
    """Seed torch's CPU generator from ``key`` without disturbing the caller's RNG.

    Wrap the construction of each random-weight module in it, so every machine
    builds the same weights whatever else ran before. Modules are built on the
    CPU, so only the CPU generator is seeded (and restored afterwards).
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed_for(key))
        yield
