"""How much does each install profile weigh, and how fast does ``lpnode`` start in each?

In one run, three throwaway virtual environments are built in a temp dir from this checkout:

- **empty**: ``python -m venv`` alone (pip and setuptools), the baseline subtracted from the others;
- **core**: ``pip install .``: every role but the model stack;
- **full**: ``pip install "$TORCH"`` then ``pip install '.[all]'``: the core plus the ``runner`` and ``media``
  extras (torch, diffusers, transformers, PyAV, aiortc, ...), what ``make up`` installs less the dev tools.
  ``TORCH`` is the Makefile's pin (default ``torch==2.13.0``, the CPU wheel here).

Size is the bytes under each venv's ``site-packages``, less the empty venv's. Start-up is the wall time of a
fresh process, timed in interleaved rounds (core, full, core, full, ...) so a busy patch of this shared VM hits
both alike: ``lpnode --help``, ``lpnode keys list --help`` (a light command's flags), and importing each
long-running role's server module (what ``lpnode gateway``, ``lpnode orchestrator`` and ``lpnode worker`` load
before they bind a port). The venvs are deleted at the end.

Usage::

    python benchmarks/install_profiles.py                # print the table (~2 min, needs the package index)
    python benchmarks/install_profiles.py --write-docs   # also update docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, write_docs

START_MARK = "<!-- install_profiles:start -->"
END_MARK = "<!-- install_profiles:end -->"
DOC_TEXT = """`benchmarks/install_profiles.py` builds three throwaway venvs from the checkout in one run: an empty one
(pip and setuptools, subtracted from the others), **core** (`pip install .`) and **full** (the Makefile's torch
pin, then `pip install '.[all]'`: the `runner` and `media` extras too; `make up` adds only the dev tools). Size
is the bytes under `site-packages`. Start-up is the wall time of a fresh process, in interleaved rounds after one
warm-up each: `lpnode --help`, `lpnode keys list --help` (reading a light command's flags loads only its
module), and importing the server module each long-running role loads before it binds a
port; for reference, importing torch, and aiortc + PyAV + NumPy, in the full venv: what each of those start-ups
would add if a core module imported them at the top (`tests/unit/test_install_profiles.py` keeps them out). The
venvs are deleted at the end."""
PROBES: dict[str, str | list[str]] = {
    "lpnode --help": ["--help"],
    "lpnode keys list --help": ["keys", "list", "--help"],
    "import lpnode.gateway.server": "lpnode.gateway.server",
    "import lpnode.orchestrator.server": "lpnode.orchestrator.server",
    "import lpnode.worker.node": "lpnode.worker.node",
}
REFERENCES = {"import torch": "torch", "import aiortc, av, numpy": "aiortc, av, numpy"}
"""Timed in the full venv only: what a core path would pay if it imported the extras' libraries."""


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def tree_bytes(path: Path) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            file = Path(folder, name)
            if not file.is_symlink():
                total += file.stat().st_size
    return total


def build(venv: Path, installs: list[list[str]]) -> float:
    """Make ``venv`` and run each ``pip install ARGS``; the seconds it took (network included)."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    for args in installs:
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", *args], check=True)
    return time.monotonic() - started


def start_seconds(venv: Path, probe: str | list[str]) -> float:
    """One run of ``probe``: ``lpnode`` with these arguments, or importing this module."""
    if isinstance(probe, list):
        command = [str(venv / "bin" / "lpnode"), *probe]
    else:
        command = [str(venv / "bin/python"), "-c", f"import {probe}"]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd="/")
    return time.perf_counter() - started


def heavy_present(venv: Path) -> str:
    found = [m for m in ("torch", "diffusers", "transformers", "av", "aiortc", "numpy") if _has(venv, m)]
    return ", ".join(found) or "none"


def _has(venv: Path, module: str) -> bool:
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([str(venv / "bin/python"), "-c", code], check=False).returncode == 0


LARGEST = """
import importlib.metadata as md, json, sys
from pathlib import Path
site = Path(sys.argv[1])
sizes = {d.metadata["Name"]: sum((site / f).stat().st_size for f in d.files or [] if (site / f).is_file())
         for d in md.distributions(path=[str(site)])}
print(json.dumps(sorted(sizes.items(), key=lambda item: -item[1])))
"""


def largest(venv: Path, skip: tuple[str, ...] = ("pip", "setuptools")) -> list[tuple[str, int]]:
    """The venv's distributions by size, largest first (pip and setuptools left out)."""
    site = site_packages(venv)
    done = subprocess.run([str(venv / "bin/python"), "-c", LARGEST, str(site)], capture_output=True, text=True)
    return [(name, size) for name, size in json.loads(done.stdout) if name not in skip]


def mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="start-up timings per probe and profile (default 10)")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    torch = os.environ.get("TORCH", "torch==2.13.0")
    with tempfile.TemporaryDirectory(prefix="lpnode-install-") as tmp:
        venvs = {name: Path(tmp, name) for name in ("empty", "core", "full")}
        seconds = {
            "empty": build(venvs["empty"], []),
            "core": build(venvs["core"], [[str(ROOT)]]),
            "full": build(venvs["full"], [[torch], [f"{ROOT}[all]"]]),
        }
        base = tree_bytes(site_packages(venvs["empty"]))
        size = {name: tree_bytes(site_packages(venvs[name])) - base for name in ("core", "full")}
        heavy = {name: heavy_present(venvs[name]) for name in ("core", "full")}
        core_largest = largest(venvs["core"])[:10]
        times: dict[tuple[str, str], list[float]] = {(p, n): [] for p in PROBES for n in ("core", "full")}
        for module in PROBES.values():  # one warm-up each: the first run also compiles bytecode
            for name in ("core", "full"):
                start_seconds(venvs[name], module)
        for module in REFERENCES.values():
            start_seconds(venvs["full"], module)
        for _ in range(args.rounds):
            for probe, module in PROBES.items():
                for name in ("core", "full"):
                    times[probe, name].append(start_seconds(venvs[name], module))
            for probe, module in REFERENCES.items():
                times.setdefault((probe, "full"), []).append(start_seconds(venvs["full"], module))

    lines = [
        "| profile | install | site-packages (less an empty venv) | model-stack modules present | pip install time |",
        "|---|---|---:|---|---:|",
        f"| core | `pip install .` | {mb(size['core'])} | {heavy['core']} | {seconds['core']:.0f} s |",
        f"| full | `pip install '.[all]'` | {mb(size['full'])} | {heavy['full']} | {seconds['full']:.0f} s |",
        "",
        "| start-up (wall, fresh process) | core p50 (ms) | full p50 (ms) | core min (ms) | full min (ms) |",
        "|---|---:|---:|---:|---:|",
    ]
    for probe in PROBES:
        core, full = times[probe, "core"], times[probe, "full"]
        lines.append(
            f"| `{probe}` | {statistics.median(core) * 1e3:.0f} | {statistics.median(full) * 1e3:.0f} | "
            f"{min(core) * 1e3:.0f} | {min(full) * 1e3:.0f} |"
        )
    for probe in REFERENCES:
        full = times[probe, "full"]
        lines.append(f"| `{probe}` (reference) | – | {statistics.median(full) * 1e3:.0f} | – | {min(full) * 1e3:.0f} |")
    ratio = size["core"] / size["full"]
    lines += ["", f"- size, core / full: **{ratio:.3f}** ({mb(size['core'])} of {mb(size['full'])})"]
    lines += ["- the core's largest: " + ", ".join(f"{name} {mb(size)}" for name, size in core_largest)]
    lines += ["- install times come from pip's warm cache on this machine: they compare, they do not predict"]
    table = "\n".join(lines)
    print(table)
    if args.write_docs:
        section = "\n".join(
            [
                START_MARK,
                "## Install size and start-up",
                "",
                DOC_TEXT,
                "",
                "Command: `.venv/bin/python benchmarks/install_profiles.py --write-docs`",
                "",
                f"Date: {dt.date.today().isoformat()}. Machine: {os.cpu_count()} CPUs, {platform.system()} "
                f"{platform.release()}, Python {platform.python_version()}, {torch} (full).",
                "",
                table,
                "",
                END_MARK,
            ]
        )
        write_docs(section, START_MARK, END_MARK)
    return 0


if __name__ == "__main__":
    sys.exit(main())
