"""Make a directory look like an installed package declaring ``lpnode.pipelines`` entry points.

A ``<name>.dist-info`` directory with ``METADATA`` and ``entry_points.txt`` on ``sys.path`` (or
``PYTHONPATH``) is what ``pip install`` leaves behind, and it is all ``importlib.metadata`` reads, so
tests can declare entry points without installing anything into the shared environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def declare_pipelines(site: Path, distribution: str, pipelines: Mapping[str, str]) -> Path:
    """Write ``site/<distribution>-0.1.0.dist-info`` declaring ``pipelines`` (name → module:Class)."""
    info = site / f"{distribution.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.1.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in pipelines.items())
    (info / "entry_points.txt").write_text("[lpnode.pipelines]\n" + lines)
    return site
