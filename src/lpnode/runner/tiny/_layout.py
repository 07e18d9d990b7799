"""Hugging Face cache layout: where a model's snapshot lives and how one is written.

A model ``org/name`` lives in ``models_dir/models--org--name/``:

- ``refs/main`` holds the snapshot revision (40 hex characters),
- ``snapshots/<revision>/`` holds the files written by ``save_pretrained``.

No ``blobs/`` folder and no symlinks are needed: ``from_pretrained(model_id,
cache_dir=models_dir)`` resolves plain files in the snapshot folder, online or
offline. The revision here is the sha1 of the model id, so every machine agrees.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def repo_dir(models_dir: Path, model_id: str) -> Path:
    """The cache folder of ``model_id`` (``models--{org}--{name}``)."""
    return Path(models_dir) / ("models--" + model_id.replace("/", "--"))


def revision(model_id: str) -> str:
    """The snapshot revision used for ``model_id``: sha1 of the id, 40 hex."""
    return hashlib.sha1(model_id.encode("utf-8")).hexdigest()


def snapshot_dir(models_dir: Path, model_id: str) -> Path:
    """The folder holding the files of ``model_id``."""
    return repo_dir(models_dir, model_id) / "snapshots" / revision(model_id)


def is_present(models_dir: Path, model_id: str) -> bool:
    """True when a complete snapshot exists and ``refs/main`` points at it."""
    ref = repo_dir(models_dir, model_id) / "refs" / "main"
    try:
        current = ref.read_text(encoding="utf-8").strip()
    except OSError:
        return False
    return current == revision(model_id) and snapshot_dir(models_dir, model_id).is_dir()


def write_snapshot(models_dir: Path, model_id: str, save: Callable[[Path], None]) -> Path:
    """Write a snapshot of ``model_id`` with ``save(folder)`` and move it into place.

    ``save`` fills an empty temporary folder next to the final one; only when it
    returns is the folder renamed to ``snapshots/<revision>`` and ``refs/main``
    written, so a crash never leaves a half snapshot that counts as present.
    An existing snapshot of the same revision is replaced.
    """
    rev = revision(model_id)
    root = repo_dir(models_dir, model_id)
    snapshots = root / "snapshots"
    snapshots.mkdir(parents=True, exist_ok=True)
    final = snapshots / rev

    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{rev[:8]}-", dir=snapshots))
    try:
        save(tmp)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".old-{rev[:8]}-", dir=snapshots))
            os.replace(final, old / rev)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    refs = root / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    fd, tmp_ref = tempfile.mkstemp(prefix=".main-", dir=refs)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(rev)
    os.replace(tmp_ref, refs / "main")
    return final
