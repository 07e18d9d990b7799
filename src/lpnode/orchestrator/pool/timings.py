"""The runner pool's waits, apart from the pool so settings and flags can name them without loading it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PoolTimings:
    """Every wait the pool makes, in seconds. Defaults are go-livepeer's."""

    start_timeout: float = 180.0  # a managed runner must be IDLE/OK within this; LOADING longer is a failure
    external_start_timeout: float = 120.0
    health_interval: float = 5.0
    health_timeout: float = 5.0
    failures_to_restart: int = 2
    ready_poll: float = 0.5  # how often /health is asked while a runner starts
    max_restart_delay: float = 30.0
    close_timeout: float = 30.0
    load_failures_to_stop: int = 3  # runners of a model that failed to load the same way, in a row
    files_poll: float = 10.0  # how often a stopped model's files are checked for a change
