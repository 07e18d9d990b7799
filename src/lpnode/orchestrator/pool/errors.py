"""Errors the runner pool raises to the orchestrator's request handlers (defined in :mod:`lpnode.errors`).

LpnodeError
├── ConfigError
│   └── PoolConfigError          the models and slots given to the pool cannot work together
└── JobError
    ├── BadRequestError
    │   └── UnknownModelError    the (pipeline, model_id) is not in aiModels.json (400)
    └── UnavailableError         503, carries Retry-After
        ├── InsufficientCapacity every runner for the model is busy and no slot can be freed
        ├── RunnerUnavailableError  the runner failed to start, is still starting at the deadline,
        │                           or (external) is not healthy
        └── PoolClosedError      the pool is shutting down
"""

from __future__ import annotations

from lpnode.errors import ConfigError, InsufficientCapacity, PoolClosedError, RunnerUnavailableError, UnknownModelError


class PoolConfigError(ConfigError):
    """The pool's configuration cannot work (e.g. more warm runners than slots)."""


__all__ = ["InsufficientCapacity", "PoolClosedError", "PoolConfigError", "RunnerUnavailableError", "UnknownModelError"]
