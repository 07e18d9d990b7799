"""Lazy, ``Any``-typed access to diffusers and transformers.

Both libraries are slow to import (several seconds) and untyped for mypy. The
builders import them on first use through these accessors, so listing the
registry stays cheap and calls into them need no per-line ``type: ignore``.
"""

from __future__ import annotations

import importlib
from typing import Any


def diffusers() -> Any:
    """The ``diffusers`` module."""
    return importlib.import_module("diffusers")


def transformers() -> Any:
    """The ``transformers`` module."""
    return importlib.import_module("transformers")
