"""Noticing that a model's files changed: a cheap fingerprint of its folder in the models dir.

The pool stops restarting a runner that keeps failing to load its model, and starts it again once the
model's files change (``lpnode models pull``, ``lpnode models tiny``, a copy). A fingerprint is the folder's
directories and their modification times (a file added or removed changes its directory's), or ``None``
when the folder does not exist.
"""

from __future__ import annotations

import os
from pathlib import Path

from lpnode.runner.device import repo_folder

Fingerprint = frozenset[tuple[str, int]] | None
MAX_DIRECTORIES = 10_000  # a bound on the walk; a model's cache folder holds far fewer


def files_fingerprint(models_dir: Path, model_id: str) -> Fingerprint:
    """The fingerprint of ``model_id``'s files in ``models_dir``: ``None`` when it has no folder there."""
    folder = repo_folder(models_dir, model_id)
    seen: set[tuple[str, int]] = set()
    try:
        seen.add(("", folder.stat().st_mtime_ns))
    except OSError:
        return None
    for root, dirs, _files in os.walk(folder):
        for name in dirs:
            path = os.path.join(root, name)
            try:
                seen.add((os.path.relpath(path, folder), os.stat(path).st_mtime_ns))
            except OSError:
                continue
        if len(seen) >= MAX_DIRECTORIES:
            break
    return frozenset(seen)
