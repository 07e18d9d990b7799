"""The package layout's dependency rules, read from the source.

Packages are split by role (runner, live, orchestrator, gateway, worker, signer); below them sit what roles
share: the wire libraries (protocol, payments, trickle, schemas, pipelines), byoc and dashboard, and the
top-level modules (errors, logs, results, http_relay, serving). ``cli`` and ``up`` are the only modules that
wire roles together. The rules:

- a runner (runner, live) imports no orchestrator, gateway, worker or signer code: it is a standalone
  ai-runner twin;
- gateway and orchestrator do not import each other, the gateway imports no runner code, a worker none of the
  gateway's;
- the wire libraries import no role, nor byoc or dashboard;
- byoc and dashboard import no role (each role's side of BYOC and its pages' data live in the role);
- no private name (``_x``, a module or a name) is imported from another package.

Every import in ``src/lpnode`` is read with :mod:`ast` (absolute and relative, at module level and inside
functions, under ``if TYPE_CHECKING`` too: a type is a dependency as well). A failure lists every offending
``module:line -> target`` with the rule it breaks, so one run shows all that is left to move.

Packages are the first name under ``lpnode``: ``lpnode.gateway.live.page`` belongs to ``gateway``, and a
top-level module (``lpnode.errors``) is its own package.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import lpnode

SOURCE = Path(lpnode.__file__).parent

ROLES = frozenset({"runner", "live", "orchestrator", "gateway", "worker", "signer"})
SHARED = frozenset(
    {
        "protocol", "payments", "trickle", "schemas", "pipelines", "byoc", "dashboard",
        "errors", "logs", "results", "http_relay", "serving", "http_limits", "uvicorn_config", "audio_length", "extras",
        "mp4", "child_supervisor", "lazy_exports",
    }
)  # fmt: skip
WIRING = frozenset({"cli", "up", "up_chain", "go_flags", "go_flags_doc", "go_starter"})
"""The only modules that wire roles together: they may import anything."""
WIRE_LIBRARIES = frozenset({"protocol", "payments", "trickle", "schemas", "pipelines"})
"""What roles share (with the top-level shared modules); they know no role."""

FORBIDDEN: dict[str, tuple[frozenset[str], str]] = {
    "runner": (frozenset({"orchestrator", "gateway", "worker", "signer"}), "a runner is a standalone ai-runner twin"),
    "live": (frozenset({"orchestrator", "gateway", "worker", "signer"}), "a runner is a standalone ai-runner twin"),
    "gateway": (frozenset({"orchestrator", "runner"}), "roles share only the wire libraries"),
    "orchestrator": (frozenset({"gateway"}), "roles share only the wire libraries"),
    "worker": (frozenset({"gateway"}), "a worker does not reach into the gateway"),
    **{name: (ROLES | {"byoc", "dashboard"}, "wire libraries know no role") for name in WIRE_LIBRARIES},
    "byoc": (ROLES, "each role's side of BYOC lives in the role"),
    "dashboard": (ROLES, "each role supplies its data through dashboard.sources"),
}
"""Package -> (packages it must not import, why)."""


@dataclass(frozen=True)
class Import:
    module: str
    """The importing module, ``lpnode.gateway.server``."""
    line: int
    target: str
    """The imported module, ``lpnode.gateway.directory`` (for ``from a import b``: ``a``)."""
    names: tuple[str, ...]
    """The names taken from ``target`` by ``from target import ...``; empty for ``import target``."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a (possibly relative) ``from ... import`` names."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports() -> Iterator[Import]:
    for path in sorted(SOURCE.rglob("*.py")):
        module = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(module, node.lineno, alias.name, ())
            elif isinstance(node, ast.ImportFrom):
                target = resolve(module, path.name == "__init__.py", node)
                yield Import(module, node.lineno, target, tuple(a.name for a in node.names))


def package(module: str) -> str | None:
    """``gateway`` for ``lpnode.gateway.x``; ``None`` outside lpnode (and for ``lpnode`` itself)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "lpnode" and len(parts) > 1 else None


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def targets(found: Import) -> Iterator[str]:
    """Every lpnode module the import reaches: ``from lpnode import gateway`` reaches ``lpnode.gateway``
    (``from lpnode import __version__`` reaches only ``lpnode``)."""
    yield found.target
    if found.target == "lpnode":
        for name in found.names:
            if (SOURCE / name).is_dir() or (SOURCE / f"{name}.py").is_file():
                yield f"lpnode.{name}"


def test_every_package_has_a_rule_or_is_shared() -> None:
    """A new package must be placed (role, shared or wiring) before the rules can say anything about it."""
    found = {package(module_name(p)) for p in SOURCE.rglob("*.py")} - {None}
    unplaced = found - ROLES - SHARED - WIRING
    assert not unplaced, f"place these packages in test_package_rules.py: {sorted(unplaced)}"


def forbidden_arrows(found: Iterable[Import]) -> list[str]:
    """``module:line -> target (rule)`` for each import the rules forbid."""
    problems = []
    for each in found:
        source = package(each.module)
        if source is None or source not in FORBIDDEN:
            continue
        forbidden, why = FORBIDDEN[source]
        for target in targets(each):
            destination = package(target)
            if destination in forbidden:
                problems.append(f"{each.module}:{each.line} -> {target} ({source} -> {destination}: {why})")
    return sorted(set(problems))


def private_imports(found: Iterable[Import]) -> list[str]:
    """``module:line -> target (names)`` for each private name or module taken from another package."""
    problems = []
    for each in found:
        source, destination = package(each.module), package(each.target)
        if destination is None or source == destination:
            continue
        hidden = [p for p in each.target.split(".") if private(p)] + [n for n in each.names if private(n)]
        if hidden:
            problems.append(f"{each.module}:{each.line} -> {each.target} ({', '.join(hidden)})")
    return sorted(problems)


def test_no_import_crosses_a_forbidden_arrow() -> None:
    problems = forbidden_arrows(imports())
    assert not problems, "imports the package rules forbid:\n" + "\n".join(problems)


def test_no_private_name_is_imported_from_another_package() -> None:
    problems = private_imports(imports())
    assert not problems, "private names imported from another package:\n" + "\n".join(problems)


def test_the_rule_reader_sees_relative_and_nested_imports() -> None:
    """The reader itself: a relative import and one inside a function are both found and resolved."""
    tree = ast.parse("def f():\n    from ..gateway import directory\n    from . import units\n")
    nested, sibling = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert resolve("lpnode.dashboard.doctor", False, nested) == "lpnode.gateway"
    assert resolve("lpnode.dashboard", True, nested) == "lpnode.gateway"
    assert resolve("lpnode.dashboard.doctor", False, sibling) == "lpnode.dashboard"
    assert package("lpnode.gateway.live.page") == "gateway" and package("lpnode.errors") == "errors"


def test_the_rules_report_each_offending_arrow_and_private_name() -> None:
    found = [
        Import("lpnode.dashboard.doctor", 3, "lpnode.gateway.orch_client", ("OrchestratorClient",)),
        Import("lpnode.worker.link", 7, "lpnode.protocol.tls_pinning", ("_name_in",)),
        Import("lpnode.trickle.command", 9, "lpnode", ("orchestrator", "__version__")),
        Import("lpnode.gateway.server", 11, "lpnode.orchestrator.pool._state", ()),
        Import("lpnode.cli", 1, "lpnode.gateway.server", ()),  # the wiring may import anything
        Import("lpnode.gateway.live.page", 2, "lpnode.gateway._x", ("_y",)),  # within one package
    ]
    assert forbidden_arrows(found) == [
        "lpnode.dashboard.doctor:3 -> lpnode.gateway.orch_client (dashboard -> gateway: "
        "each role supplies its data through dashboard.sources)",
        "lpnode.gateway.server:11 -> lpnode.orchestrator.pool._state (gateway -> orchestrator: "
        "roles share only the wire libraries)",
        "lpnode.trickle.command:9 -> lpnode.orchestrator (trickle -> orchestrator: wire libraries know no role)",
    ]
    assert private_imports(found) == [
        "lpnode.gateway.server:11 -> lpnode.orchestrator.pool._state (_state)",
        "lpnode.worker.link:7 -> lpnode.protocol.tls_pinning (_name_in)",
    ]
