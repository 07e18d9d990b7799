"""Packages that re-export their modules' public names without importing them all when the package is imported.

A package's ``__init__`` lists where each name lives and sets ``__getattr__ = lazy_exports(__name__, {...})``
(PEP 562): ``from package import Name`` then loads only ``Name``'s module, so importing one light module of a
package (``lpnode.protocol.admin_access``) does not load the servers and gRPC its siblings need. Type checkers
see the names through imports under ``if TYPE_CHECKING:`` in the same ``__init__``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(package: str, homes: Mapping[str, Sequence[str]]) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package``: ``homes`` maps each submodule (its name within the package) to the names
    it exports. A name is imported on first use and kept on the package."""
    where = {name: f"{package}.{module}" for module, names in homes.items() for name in names}

    def __getattr__(name: str) -> Any:
        home = where.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
