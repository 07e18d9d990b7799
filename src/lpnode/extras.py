"""The optional parts of lpnode (pip extras), and the one-line answer when a command needs one that is missing.

``pip install lpnode`` is the core: gateway, orchestrator with external (``url``) and Docker runners, the remote
worker's link, BYOC, trickle, payments, the remote signer, dashboards, keys and usage, status and doctor. Two
extras add the rest (``all`` is both; ``docs/install.md``):

- ``runner``: the model stack (torch, diffusers, transformers, accelerate, peft, PyAV, NumPy): ``lpnode runner``,
  the runner processes an orchestrator or worker starts itself, ``lpnode up``'s tiny models, ``lpnode models
  tiny``, ``lpnode openapi``;
- ``media``: video encoding and WebRTC (PyAV, aiortc, NumPy): the gateway's WHIP/WHEP routes, ``lpnode live
  play``, image-to-video results encoded as MP4 on an orchestrator or worker.

:func:`installed` looks the extra's modules up without importing them (importing torch takes seconds), so a
command checks before it starts anything. :func:`require` raises :class:`~lpnode.errors.MissingExtraError`,
which the ``lpnode`` command prints as its usual one-line ``lpnode: error: ...`` with exit status 2; a route
answers :class:`~lpnode.errors.NotInstalledError` (501) with the same text.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from lpnode.errors import MissingExtraError


@dataclass(frozen=True)
class Extra:
    """One pip extra: ``lpnode[name]``."""

    name: str
    holds: str
    """What it adds, in a few words: ``the model stack``."""
    modules: tuple[str, ...]
    """Top-level modules it installs that lpnode imports; any of them missing means the extra is missing."""

    @property
    def install(self) -> str:
        return f"pip install 'lpnode[{self.name}]'"


RUNNER = Extra(
    "runner",
    "the model stack",
    ("torch", "diffusers", "transformers", "accelerate", "peft", "safetensors", "tokenizers", "av", "numpy"),
)
MEDIA = Extra("media", "video encoding and WebRTC", ("av", "aiortc", "numpy"))
EXTRAS = {extra.name: extra for extra in (RUNNER, MEDIA)}
VIDEO_ENCODING = Extra("media", "video encoding", ("av", "numpy"))
"""The part of ``media`` that encodes video (``runner`` has it too): what a node needs for MP4 results."""

HEAVY_MODULES = frozenset(module for extra in EXTRAS.values() for module in extra.modules)
"""Every module an extra brings: the core imports none of them at module level, only where a feature needs one
(``tests/unit/test_install_profiles.py`` checks both)."""


def missing_modules(extra: Extra) -> list[str]:
    """The extra's modules that cannot be imported here, without importing any of them."""
    return [module for module in extra.modules if not _findable(module)]


def installed(extra: Extra) -> bool:
    """Whether every module of ``extra`` is installed."""
    return not missing_modules(extra)


def missing_message(extra: Extra, what: str) -> str:
    """``{what} needs the model stack: pip install 'lpnode[runner]'``; when only some of the extra is missing
    (a partial install), it names what: ``... the model stack (peft is not installed): ...``."""
    absent = missing_modules(extra)
    partial = absent and len(absent) < len(extra.modules)
    detail = f" ({', '.join(absent)} {'is' if len(absent) == 1 else 'are'} not installed)" if partial else ""
    return f"{what} needs {extra.holds}{detail}: {extra.install}"


def require(extra: Extra, what: str) -> None:
    """Return when ``extra`` is installed; else raise :class:`MissingExtraError` saying that ``what`` (a command,
    flag or feature, e.g. ``lpnode runner``) needs it and how to install it."""
    if not installed(extra):
        raise MissingExtraError(missing_message(extra, what), extra.name)


def _findable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder that refuses the name; a half-imported module without a spec
        return False
