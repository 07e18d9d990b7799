"""Errors the runner pool raises to the orchestrator's request handlers.

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

from lpnode.errors import BadRequestError, ConfigError, UnavailableError


class PoolConfigError(ConfigError):
    """The pool's configuration cannot work (e.g. more warm runners than slots)."""


class UnknownModelError(BadRequestError):
    """No aiModels.json entry serves this pipeline and model."""


class InsufficientCapacity(UnavailableError):
    """No capacity now; ``message`` is exactly ``insufficient capacity`` (what go-livepeer answers),
    ``reason`` says why, for logs and operators."""

    def __init__(self, reason: str) -> None:
        super().__init__("insufficient capacity", retry_after=1)
        self.reason = reason

    def __str__(self) -> str:
        return f"insufficient capacity: {self.reason}"


class RunnerUnavailableError(UnavailableError):
    """The runner for a lease could not be made ready in time."""


class PoolClosedError(UnavailableError):
    """The pool is closing or closed; no new leases."""
