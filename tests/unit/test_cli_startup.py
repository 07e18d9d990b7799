"""``lpnode`` starts quickly: reading a command's flags loads that command's module only, and no command's flags
load the servers, the Ethereum stack or the HTTP clients (they load when the command runs). Packages that
re-export their modules' names load each on first use, and every name they list resolves to its module's object.

Measured start-up times are in docs/benchmarks.md (benchmarks/install_profiles.py); this file checks what makes
them, in fresh interpreters, not how long they take.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

from lpnode.cli import COMMANDS, build_parser

NEVER_FOR_FLAGS = (
    "aiohttp", "docker", "eth_account", "grpc", "huggingface_hub", "hypercorn", "numpy", "psycopg", "py_ecc",
    "starlette", "torch", "web3",
)  # fmt: skip
LIGHT_COMMANDS = ("keys", "usage", "tickets", "wallet", "chain", "deposit", "devchain", "trickle", "live", "status")
LAZY_PACKAGES = ("lpnode.protocol", "lpnode.orchestrator", "lpnode.orchestrator.pool", "lpnode.byoc", "lpnode.trickle",
                 "lpnode.gateway.live")  # fmt: skip


def loaded_by(code: str) -> set[str]:
    """The top-level packages a fresh interpreter has loaded after running ``code``."""
    script = f"import sys\n{code}\nimport json\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_every_commands_flags_load_no_server_client_or_chain_library() -> None:
    loaded = loaded_by("from lpnode.cli import build_parser\nbuild_parser()")
    assert not {m for m in loaded if m.split(".")[0] in NEVER_FOR_FLAGS}, "move these imports into the command's run"


@pytest.mark.parametrize("command", LIGHT_COMMANDS)
def test_a_light_command_loads_only_its_own_module(command: str) -> None:
    code = (
        "import contextlib, io\nfrom lpnode.cli import build_parser\n"
        f"with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        f"    build_parser({command!r}).parse_args([{command!r}, '--help'])"
    )
    loaded = loaded_by(code)
    assert not {m for m in loaded if m.split(".")[0] in NEVER_FOR_FLAGS}
    assert "lpnode.gateway.server" not in loaded and "lpnode.orchestrator.server" not in loaded


def test_a_parser_for_one_command_parses_its_lines_as_the_whole_parser_does() -> None:
    line = ["keys", "create", "alice", "--rate-per-minute", "60", "--json"]
    assert vars(build_parser("keys").parse_args(line)) == vars(build_parser().parse_args(line))
    assert set(COMMANDS) == set(
        next(a for a in build_parser()._actions if a.dest == "command").choices  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_lazy_packages_export_every_name_they_list(package: str) -> None:
    loaded = loaded_by(f"import {package}")
    assert loaded <= loaded_by("import lpnode.lazy_exports") | {package, *package_parents(package)}, (
        "importing the package alone loads none of its modules"
    )
    module = importlib.import_module(package)
    for name in module.__all__:
        value = getattr(module, name)
        home = value.__module__ if hasattr(value, "__module__") and not isinstance(value, (int, str, dict)) else None
        if home is not None and home.startswith(package):
            assert getattr(importlib.import_module(home), name) is value
    with pytest.raises(AttributeError, match="has no attribute"):
        module.no_such_name  # noqa: B018


def package_parents(package: str) -> list[str]:
    parts = package.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]
