"""The core install (``pip install lpnode``) runs without the extras' libraries, and says which extra a command needs.

Two checks, one per angle:

- **read from the source**: starting from each core role's entry module, every module reached through
  module-level imports (what Python runs on import: not imports inside functions, not those under
  ``if TYPE_CHECKING``) imports none of :data:`lpnode.extras.HEAVY_MODULES` at module level. A failure names the
  module, the line and the chain of imports that reaches it;
- **run**: a fresh interpreter in which those libraries cannot be imported (a meta-path finder refuses them, as
  if they were not installed: this venv has them all) imports the entry modules, runs every ``lpnode COMMAND
  --help``, and ``lpnode runner`` and ``lpnode up`` print the one-line ``pip install`` hint with exit status 2.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import pytest

import lpnode
from lpnode.errors import ConfigError, MissingExtraError
from lpnode.extras import HEAVY_MODULES, MEDIA, RUNNER, Extra, installed, missing_message, require

SOURCE = Path(lpnode.__file__).parent

CORE_ENTRY_MODULES = (
    "lpnode.cli",
    "lpnode.up",
    "lpnode.gateway.server",
    "lpnode.gateway.keys_command",
    "lpnode.gateway.doctor",
    "lpnode.gateway.live.play",
    "lpnode.gateway.live.play_command",
    "lpnode.gateway.state_postgres",
    "lpnode.orchestrator.server",
    "lpnode.orchestrator.doctor",
    "lpnode.orchestrator.model_check",
    "lpnode.orchestrator.pool.docker",
    "lpnode.worker.node",
    "lpnode.signer.server",
    "lpnode.go_starter",
    "lpnode.byoc.command",
    "lpnode.dashboard.command",
    "lpnode.trickle.command",
    "lpnode.payments.command",
    "lpnode.payments.devchain_command",
    "lpnode.runner.store",
)
"""What the core roles load: every command's module, the servers, the Docker backend, PostgreSQL state."""

# A fresh interpreter where the extras' libraries are not importable, whatever this venv holds.
BLOCKER = f"""
import sys
BLOCKED = {sorted(HEAVY_MODULES)!r}

class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
"""

PROBE = """
import argparse, asyncio, contextlib, importlib, io, json
for module in MODULES:
    importlib.import_module(module)
from starlette.applications import Starlette
from lpnode.cli import build_parser, main
from lpnode.gateway.live.webrtc_routes import WebRtcRoutes


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exc:
            status = exc.code
    return [status, out.getvalue(), err.getvalue()]


async def post(app, path):
    scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [(b"content-type", b"application/sdp")], "http_version": "1.1", "scheme": "http",
             "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1), "root_path": ""}
    body, sent = [{"type": "http.request", "body": b"v=0", "more_body": False}], []
    async def receive():
        return body.pop() if body else {"type": "http.disconnect"}
    async def send(message):
        sent.append(message)
    await app(scope, receive, send)
    return [sent[0]["status"], json.loads(sent[1]["body"])["error"]["message"]]


commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
report = {"commands": sorted(commands)}
report["help"] = {" ".join(a): run(a) for a in [["--help"], *[[name, "--help"] for name in sorted(commands)]]}
report["hints"] = {" ".join(a): run(a) for a in HINTS}
app = Starlette(routes=WebRtcRoutes(lambda: None).routes())
paths = ["/live/video-to-video/s/whip", "/live/video-to-video/s/whep"]
report["routes"] = {path: asyncio.run(post(app, path)) for path in paths}
report["loaded"] = sorted({name.split(".")[0] for name in sys.modules} & set(BLOCKED))
print(json.dumps(report))
"""


def without_extras(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + code, *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_core_runs_without_the_extras_and_each_command_names_the_extra_it_needs(tmp_path: Path) -> None:
    models = tmp_path / "aiModels.json"
    models.write_text(json.dumps([{"pipeline": "text-to-image", "model_id": "stabilityai/sd-turbo", "warm": True}]))
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    orchestrator = ["orchestrator", "--ai-models", str(models), "--data-dir", str(tmp_path / "orch")]
    orchestrator += ["--orch-secret", "s", "--service-addr", "127.0.0.1:1", "--cli-addr", "off"]
    hints = [
        ["up", "--data-dir", str(tmp_path / "up")],
        ["models", "tiny", "--models-dir", str(tmp_path / "models")],
        ["openapi", "--output", str(tmp_path / "runner.json")],
        orchestrator,
        ["live", "play", str(video), "--pipeline", "noop"],
    ]
    done = without_extras(f"MODULES = {list(CORE_ENTRY_MODULES)!r}\nHINTS = {hints!r}\n" + PROBE)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)

    assert {"gateway", "orchestrator", "worker", "runner", "up", "keys", "byoc", "doctor"} <= set(report["commands"])
    failed = {argv: result for argv, result in report["help"].items() if result[0] != 0 or "usage:" not in result[1]}
    assert not failed, f"--help failed without the extras: {failed}"

    stack = "needs the model stack: pip install 'lpnode[runner]'"
    assert {argv: (status, err) for argv, (status, _, err) in report["hints"].items()} == {
        " ".join(hints[0]): (2, f"lpnode: error: lpnode up {stack}\n"),
        " ".join(hints[1]): (2, f"lpnode: error: lpnode models tiny {stack}\n"),
        " ".join(hints[2]): (2, f"lpnode: error: lpnode openapi {stack}\n"),
        " ".join(hints[3]): (
            2,
            f'lpnode: error: the local runner of text-to-image "stabilityai/sd-turbo" {stack} '
            '(or give the entry a "url", or use --runner-backend docker)\n',
        ),
        " ".join(hints[4]): (
            2,
            "lpnode: error: lpnode live play needs video encoding and WebRTC: pip install 'lpnode[media]'\n",
        ),
    }
    assert sorted(path.name for path in tmp_path.iterdir()) == ["aiModels.json", "clip.mp4"]  # nothing built first

    media = "on this gateway needs video encoding and WebRTC: pip install 'lpnode[media]'"
    assert report["routes"] == {
        "/live/video-to-video/s/whip": [501, f"WHIP ingest {media}"],
        "/live/video-to-video/s/whep": [501, f"WHEP playback {media}"],
    }
    assert report["loaded"] == []


def test_lpnode_runner_without_the_model_stack_prints_one_line_and_exits_2() -> None:
    argv = ["runner", "--pipeline", "text-to-image", "--model-id", "stabilityai/sd-turbo"]
    # What the `lpnode` console script runs, in an interpreter where the model stack is not importable.
    done = without_extras("from lpnode.cli import main\nsys.exit(main(sys.argv[1:]))", *argv)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "lpnode: error: lpnode runner needs the model stack: pip install 'lpnode[runner]'\n"


def test_the_hint_names_the_missing_modules_of_a_partial_install_only() -> None:
    absent = Extra("demo", "a demo stack", ("no_such_module_a", "no_such_module_b"))
    partial = Extra("demo", "a demo stack", ("json", "no_such_module_b"))
    assert missing_message(absent, "lpnode demo") == "lpnode demo needs a demo stack: pip install 'lpnode[demo]'"
    assert missing_message(partial, "lpnode demo") == (
        "lpnode demo needs a demo stack (no_such_module_b is not installed): pip install 'lpnode[demo]'"
    )
    with pytest.raises(MissingExtraError) as raised:
        require(partial, "lpnode demo")
    assert raised.value.extra == "demo" and isinstance(raised.value, ConfigError)  # the CLI's exit status 2
    require(Extra("demo", "a demo stack", ("json",)), "lpnode demo")  # installed: no error
    assert installed(RUNNER) and installed(MEDIA)  # this venv has everything (make installs '.[all,dev]')


# -- read from the source ------------------------------------------------------------------------------------


def module_path(module: str) -> Path | None:
    relative = Path(*module.split(".")[1:])
    for candidate in (SOURCE / relative / "__init__.py", SOURCE / relative.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def module_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """The imports Python runs when the module is imported: at the top, in ``if``/``try``/``with`` blocks and class
    bodies; not in functions, nor under ``if TYPE_CHECKING``."""
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        elif isinstance(node, ast.If) and _type_checking(node.test):
            pending.extend(node.orelse)
        else:
            pending.extend(child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt))


def imported_modules(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The absolute modules an import statement loads (``from a import b`` loads ``a.b`` too when b is a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level == 0:
        target = node.module or ""
    else:
        base = module.split(".")
        if path.name != "__init__.py":
            base.pop()
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, *([node.module] if node.module else [])])
    return [target, *(f"{target}.{alias.name}" for alias in node.names if module_path(f"{target}.{alias.name}"))]


def heavy_imports_reached(entries: tuple[str, ...]) -> list[str]:
    """``module:line imports X (via a -> b -> module)`` for each extra's library the entries load at import."""
    via: dict[str, str | None] = {entry: None for entry in entries}
    queue = deque(entries)
    problems = []
    while queue:
        module = queue.popleft()
        path = module_path(module)
        if path is None:
            continue
        parents = [".".join(module.split(".")[:i]) for i in range(2, module.count(".") + 1)]
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in module_level_imports(tree):
            for target in imported_modules(module, path, node):
                top = target.split(".")[0]
                if top in HEAVY_MODULES:
                    chain, step = [module], via[module]
                    while step is not None:
                        chain.append(step)
                        step = via[step]
                    problems.append(f"{module}:{node.lineno} imports {target} (via {' -> '.join(reversed(chain))})")
                elif top == "lpnode":
                    for reached in [*(".".join(target.split(".")[:i]) for i in range(2, target.count(".") + 2))]:
                        if reached not in via:
                            via[reached] = module
                            queue.append(reached)
        for parent in parents:  # importing a.b.c runs a/__init__ and a/b/__init__ first
            if parent not in via:
                via[parent] = module
                queue.append(parent)
    return sorted(set(problems))


def test_no_core_module_imports_an_extras_library_at_module_level() -> None:
    problems = heavy_imports_reached(CORE_ENTRY_MODULES)
    assert not problems, (
        "core modules import an extra's library when imported; move the import into the function that needs it:\n"
        + "\n".join(problems)
    )


def test_the_source_reader_finds_module_level_imports_and_skips_the_rest() -> None:
    tree = ast.parse(
        "import torch\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import diffusers\n"
        "try:\n    import av\nexcept ImportError:\n    pass\n"
        "class A:\n    import numpy\n"
        "def f():\n    import aiortc\n"
    )
    found = sorted(
        name for node in module_level_imports(tree) for name in imported_modules("lpnode.x", SOURCE / "x.py", node)
    )
    assert found == ["av", "numpy", "torch", "typing"]
    # The whole reader: modules of the extras, reached from an entry, are reported with the chain that reaches them.
    problems = heavy_imports_reached(("lpnode.live.runner_app",))
    assert any(
        re.fullmatch(r"lpnode\.live\.media:\d+ imports av \(via lpnode\.live\.runner_app -> .*\)", p) for p in problems
    )
