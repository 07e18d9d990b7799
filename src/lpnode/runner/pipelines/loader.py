"""Find a pipeline class named by import path (``package.module:Class``) or by an installed entry point.

This is what lets a pipeline live outside lpnode: a runner serves whatever class the operator names, and a
package makes its pipelines known by name through the entry-point group ``lpnode.pipelines``::

    [project.entry-points."lpnode.pipelines"]
    edge-detect = "my_pipelines.edges:EdgeDetect"

The loader is generic (``base`` says what the class must subclass), so batch and live pipelines share it.
Each way a name can fail is its own one-line :class:`ConfigError` that says what to do.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lpnode.errors import ConfigError

ENTRY_POINT_GROUP = "lpnode.pipelines"
_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclass(frozen=True)
class InstalledPipeline:
    """One entry point of an installed package: ``name = "target"`` from distribution ``distribution``."""

    name: str
    target: str
    distribution: str


def is_import_path(text: str) -> bool:
    """True when ``text`` is written ``module:attr`` (rather than being a pipeline name)."""
    return ":" in text


def installed_pipelines(group: str = ENTRY_POINT_GROUP) -> dict[str, list[InstalledPipeline]]:
    """Every entry point of ``group`` by name. A name with more than one entry is declared by several
    installed packages (see :func:`installed_target`)."""
    found: dict[str, list[InstalledPipeline]] = {}
    for point in importlib.metadata.entry_points(group=group):
        dist = point.dist.name if point.dist is not None else "unknown package"
        item = InstalledPipeline(point.name, point.value, dist)
        if item not in found.setdefault(point.name, []):
            found[point.name].append(item)
    return found


def installed_target(name: str, group: str = ENTRY_POINT_GROUP) -> InstalledPipeline | None:
    """The entry point called ``name``, or None. Two packages declaring the same name is a ConfigError."""
    items = installed_pipelines(group).get(name, [])
    targets = {i.target for i in items}
    if len(targets) > 1:
        listed = ", ".join(f"{i.distribution} ({i.target})" for i in items)
        raise ConfigError(
            f"pipeline {name!r} is declared by more than one installed package: {listed}; "
            "uninstall one of them, or name the class itself with --pipeline-class module:Class"
        )
    return items[0] if items else None


def load_pipeline_class(target: str, base: type, *, group: str = ENTRY_POINT_GROUP) -> type[Any]:
    """The class ``target`` names: ``module:Class`` (``Class`` may be dotted), or the name of an entry point
    in ``group``. It must be a concrete subclass of ``base``. Importing runs the module's top level, so a
    pipeline module should import nothing heavy there."""
    text = target.strip()
    if not is_import_path(text):
        found = installed_target(text, group)
        if found is None:
            raise ConfigError(
                f"no installed package declares a pipeline named {text!r} (entry-point group {group}); install "
                "the package that provides it, or name the class itself as module:Class"
            )
        return _load(found.target, base, via=f"pipeline {text!r} (declared by {found.distribution})")
    return _load(text, base, via=f"pipeline class {text!r}")


def _load(target: str, base: type, via: str) -> type[Any]:
    if not _TARGET.match(target):
        raise ConfigError(f"{via} must be written module:Class, e.g. my_pipelines.edges:EdgeDetect")
    module_name, _, attr_path = target.partition(":")
    module = _import(module_name, via)
    value: object = module
    for part in attr_path.split("."):
        if not hasattr(value, part):
            hint = _suggest(part, module.__dict__.items(), base)
            raise ConfigError(f"{via}: module {module_name!r} has no attribute {attr_path!r}{hint}")
        value = getattr(value, part)
    if not (isinstance(value, type) and issubclass(value, base)):
        kind = f"class {value.__qualname__}" if isinstance(value, type) else f"a value of type {type(value).__name__}"
        raise ConfigError(
            f"{via} names {kind}, not a pipeline class: it must subclass {_public_name(base)}{_other_kind(value)}"
        )
    if inspect.isabstract(value):
        missing = ", ".join(sorted(getattr(value, "__abstractmethods__", ())))
        raise ConfigError(f"{via} is abstract: define {missing} on it")
    return value


def _import(module_name: str, via: str) -> object:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Missing: the module itself or a package it lives in. Anything else is a dependency it imports.
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ConfigError(
                f"{via}: no module named {module_name!r}; install the package that provides it, or add its "
                "directory to PYTHONPATH"
            ) from None
        raise ConfigError(f"{via}: importing {module_name!r} failed: {_one_line(exc)}") from None
    except Exception as exc:  # the module's own code raised while importing: say what, never a traceback
        raise ConfigError(f"{via}: importing {module_name!r} failed: {_one_line(exc)}") from None


def _suggest(missing: str, names: Iterable[tuple[str, object]], base: type) -> str:
    candidates = sorted(
        name
        for name, value in names
        if isinstance(value, type) and issubclass(value, base) and value is not base and not inspect.isabstract(value)
    )
    if not candidates:
        return ""
    return f"; pipeline classes there: {', '.join(candidates)}"


def _public_name(cls: type) -> str:
    """``lpnode.runner.pipelines.BatchPipeline`` rather than the private module it is defined in."""
    module = cls.__module__
    package = module.rsplit(".", 1)[0]
    if getattr(sys.modules.get(package), cls.__name__, None) is cls:
        module = package
    return f"{module}.{cls.__qualname__}"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _other_kind(value: object) -> str:
    """A hint when ``value`` is a pipeline of the other kind (live for batch, or batch for live)."""
    if not isinstance(value, type):
        return ""
    names = {klass.__module__ + "." + klass.__qualname__ for klass in value.__mro__}
    if "lpnode.live.pipeline.Pipeline" in names:
        return "; it is a live pipeline: serve it with --pipeline live-video-to-video"
    if "lpnode.runner.pipelines.base.BatchPipeline" in names:
        return "; it is a batch pipeline: leave out --pipeline live-video-to-video"
    return ""
