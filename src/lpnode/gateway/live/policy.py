"""The rules a live stream's media loops follow, as small values the tests can drive with a clock.

- :class:`LiveSettings`: every wait and bound of a live stream (go-livepeer's numbers by default), with
  ``LPNODE_LIVE_*`` environment overrides for operators and tests.
- :class:`SwapBudget`: at most ``max_swaps`` orchestrator swaps within ``window`` seconds (go: 2 in 3 min).
- :class:`StallWatch`: when to give up on an orchestrator: no output segment for ``output_gap`` seconds
  while input is recent, or no event for ``event_gap`` seconds.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace

from lpnode.errors import ConfigError

Clock = Callable[[], float]
ENV_PREFIX = "LPNODE_LIVE_"


@dataclass(frozen=True)
class LiveSettings:
    """Waits in seconds and bounds of the gateway's live streams."""

    start_timeout: float = 90.0
    """An orchestrator must answer ``POST /live-video-to-video`` within this (go: 5 s, but a cold live runner
    may need longer)."""
    start_attempts: int = 6
    """Orchestrators tried for one start or swap."""
    keepalive: float = 10.0
    """``{"keep":"alive"}`` on the control channel this often."""
    output_gap: float = 30.0
    """No output segment for this long while input is recent: swap orchestrators."""
    event_gap: float = 30.0
    """No event for this long: swap orchestrators."""
    input_timeout: float = 60.0
    """No input segment for this long ends the stream."""
    max_in_flight: int = 3
    """Input segments being sent at once; more are dropped, never queued."""
    max_swaps: int = 2
    swap_window: float = 180.0
    stop_drain: float = 8.0
    """On stop, how long the output of the last input may take to come back (the runner closes its output
    channel when done, which ends the wait early)."""
    keep_ended: float = 60.0
    """An ended stream's status stays readable this long."""
    max_streams: int = 64
    """Streams one gateway runs at once; more starts are refused with 503."""
    ring_segments: int = 16
    ring_bytes: int = 5 * 1024 * 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LiveSettings:
        """Defaults, overridden by ``LPNODE_LIVE_<FIELD>`` variables (e.g. ``LPNODE_LIVE_OUTPUT_GAP=5``)."""
        env = os.environ if env is None else env
        settings = cls()
        changes: dict[str, float | int] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            kind = int if f.type in ("int", int) else float
            try:
                value = kind(raw)
            except ValueError:
                raise ConfigError(f"{ENV_PREFIX}{f.name.upper()} must be a number, got {raw!r}") from None
            if value <= 0:
                raise ConfigError(f"{ENV_PREFIX}{f.name.upper()} must be positive, got {raw!r}")
            changes[f.name] = value
        return replace(settings, **changes)  # type: ignore[arg-type]


class SwapBudget:
    """At most ``max_swaps`` swaps in any ``window`` seconds."""

    def __init__(self, max_swaps: int, window: float, clock: Clock = time.monotonic) -> None:
        self.max_swaps = max_swaps
        self.window = window
        self.clock = clock
        self._swaps: deque[float] = deque()

    def take(self) -> bool:
        """Count one swap if the budget allows it now; False when it does not."""
        now = self.clock()
        while self._swaps and now - self._swaps[0] > self.window:
            self._swaps.popleft()
        if len(self._swaps) >= self.max_swaps:
            return False
        self._swaps.append(now)
        return True

    @property
    def used(self) -> int:
        return len(self._swaps)


class StallWatch:
    """Output and event times of one orchestrator attempt; :meth:`problem` says when to give up on it."""

    def __init__(self, output_gap: float, event_gap: float, clock: Clock = time.monotonic) -> None:
        self.output_gap = output_gap
        self.event_gap = event_gap
        self.clock = clock
        started = clock()
        self.last_output = started
        self.last_event = started

    def output(self) -> None:
        self.last_output = self.clock()

    def event(self) -> None:
        self.last_event = self.clock()

    def problem(self, last_input: float) -> str | None:
        """Why this attempt is stalled, or None. Output is only expected while input is recent."""
        now = self.clock()
        input_recent = now - last_input < self.output_gap
        if input_recent and now - self.last_output > self.output_gap:
            return f"timeout waiting for segments: no output for {self.output_gap:g}s"
        if now - self.last_event > self.event_gap:
            return f"timeout waiting for events: none for {self.event_gap:g}s"
        return None
