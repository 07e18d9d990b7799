"""The runner pool: supervised runners for the orchestrator, and leases on their capacity.

See ``docs/runner-pool.md``. Backends: :class:`ProcessBackend` (``lpnode runner`` child processes) and
:class:`ExternalBackend` (``url`` entries); a Docker backend implements the same :class:`RunnerBackend`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lpnode.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from lpnode.orchestrator.pool.backend import RunnerBackend, RunnerHandle, RunnerSpec
    from lpnode.orchestrator.pool.errors import (
        InsufficientCapacity,
        PoolClosedError,
        PoolConfigError,
        RunnerUnavailableError,
        UnknownModelError,
    )
    from lpnode.orchestrator.pool.external import ExternalBackend
    from lpnode.orchestrator.pool.pool import LeasedRunner, RunnerPool
    from lpnode.orchestrator.pool.ports import PORT_BASES, pick_port
    from lpnode.orchestrator.pool.process import ProcessBackend, ProcessSettings
    from lpnode.orchestrator.pool.status import ModelStatus, RunnerStatus
    from lpnode.orchestrator.pool.timings import PoolTimings

_EXPORTS = {
    "backend": (
        "RunnerBackend",
        "RunnerHandle",
        "RunnerSpec",
    ),
    "errors": (
        "InsufficientCapacity",
        "PoolClosedError",
        "PoolConfigError",
        "RunnerUnavailableError",
        "UnknownModelError",
    ),
    "external": ("ExternalBackend",),
    "pool": (
        "LeasedRunner",
        "RunnerPool",
    ),
    "timings": ("PoolTimings",),
    "ports": (
        "PORT_BASES",
        "pick_port",
    ),
    "process": (
        "ProcessBackend",
        "ProcessSettings",
    ),
    "status": (
        "ModelStatus",
        "RunnerStatus",
    ),
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "PORT_BASES",
    "ExternalBackend",
    "InsufficientCapacity",
    "LeasedRunner",
    "ModelStatus",
    "PoolClosedError",
    "PoolConfigError",
    "PoolTimings",
    "ProcessBackend",
    "ProcessSettings",
    "RunnerBackend",
    "RunnerHandle",
    "RunnerPool",
    "RunnerSpec",
    "RunnerStatus",
    "RunnerUnavailableError",
    "UnknownModelError",
    "pick_port",
]
