"""The runner pool: supervised runners for the orchestrator, and leases on their capacity.

See ``docs/runner-pool.md``. Backends: :class:`ProcessBackend` (``lpnode runner`` child processes) and
:class:`ExternalBackend` (``url`` entries); a Docker backend implements the same :class:`RunnerBackend`.
"""

from lpnode.orchestrator.pool.backend import RunnerBackend, RunnerHandle, RunnerSpec
from lpnode.orchestrator.pool.errors import (
    InsufficientCapacity,
    PoolClosedError,
    PoolConfigError,
    RunnerUnavailableError,
    UnknownModelError,
)
from lpnode.orchestrator.pool.external import ExternalBackend
from lpnode.orchestrator.pool.pool import LeasedRunner, PoolTimings, RunnerPool
from lpnode.orchestrator.pool.ports import PORT_BASES, pick_port
from lpnode.orchestrator.pool.process import ProcessBackend, ProcessSettings
from lpnode.orchestrator.pool.status import ModelStatus, RunnerStatus

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
