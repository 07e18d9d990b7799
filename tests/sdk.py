"""The livepeer-gateway SDK (PyPI) in a virtualenv of its own: it needs Python >= 3.12, this project 3.11."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from filelock import FileLock

SDK_VERSION = "1.0.0"


def python_312_or_later() -> str | None:
    """A working Python >= 3.12 interpreter: on PATH, or installed by pyenv (whose shims may not run it)."""
    candidates = [shutil.which(name) for name in ("python3.13", "python3.12")]
    candidates += [str(p) for p in sorted(Path.home().glob(".pyenv/versions/3.1[2-9]*/bin/python3"), reverse=True)]
    for candidate in filter(None, candidates):
        check = subprocess.run(
            [candidate, "-c", "import sys; sys.exit(sys.version_info < (3, 12))"], capture_output=True, timeout=30
        )
        if check.returncode == 0:
            return candidate
    return None


def sdk_python() -> Path:
    """A Python 3.12+ venv with the livepeer-gateway SDK, made once and reused (first run: ~30 s, needs PyPI)."""
    base = python_312_or_later()
    if base is None:
        pytest.skip("the livepeer-gateway SDK needs Python >= 3.12; none found on PATH or under ~/.pyenv/versions")
    venv = Path(tempfile.gettempdir()) / f"lpnode-sdk-venv-{SDK_VERSION}"
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    with FileLock(f"{venv}.lock"):  # xdist workers: one installs, the others wait
        if not marker.exists():
            subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True, timeout=120)
            install = subprocess.run(
                [str(python), "-m", "pip", "install", "-q", f"livepeer-gateway=={SDK_VERSION}"],
                capture_output=True,
                text=True,
                timeout=300,
            )
            if install.returncode != 0:
                pytest.skip(f"could not install livepeer-gateway {SDK_VERSION}: {install.stderr[-500:]}")
            marker.touch()
    return python
