"""The live runner's state machine, its health mapping, and the ``status`` event it publishes.

States (ai-runner's ``PipelineState``): ``LOADING``, ``OFFLINE``, ``ONLINE``, ``DEGRADED_INPUT``,
``DEGRADED_INFERENCE``, ``ERROR``. :meth:`StatusTracker.compute` applies ai-runner's rules, first match
wins (times in seconds; fps over 10 s windows):

1. ERROR stays ERROR until the pipeline process is restarted; a dead process is ERROR.
2. Not ready: LOADING, or ERROR once loading took over 180 s.
3. No stream: OFFLINE, or DEGRADED_INPUT for 3 s after the last input.
4. No input for 60 s (counted from the stream's start or its last input frame, never from an earlier
   stream's): the stream is stopped (DEGRADED_INPUT); still running at 90 s: ERROR.
5. No output since the stream started or the params last changed: ONLINE for 2 s, then DEGRADED_INPUT
   if input stalled, DEGRADED_INFERENCE until 10 s, then ERROR.
6. Output stalled over 5 s (and over the input gap + 1 s): ERROR.
7. An error in the last 15 s or a restart in the last 60 s: DEGRADED_INFERENCE.
8. Input gap over 2 s or input under 15 fps: DEGRADED_INPUT.
9. Output gap over 2 s or output under min(10, 0.8 × input fps): DEGRADED_INFERENCE.
10. Otherwise ONLINE.

``/health`` maps LOADING → LOADING, OFFLINE → IDLE, ERROR → ERROR, anything else → OK.
Clocks are wall-clock seconds passed in by the caller, so tests drive the machine with made-up times.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

LOAD_TIMEOUT = 180.0
OFFLINE_GRACE = 3.0
INPUT_IDLE_STOP = 60.0
INPUT_IDLE_ERROR = 90.0
FIRST_OUTPUT_GRACE = 2.0
FIRST_OUTPUT_TIMEOUT = 10.0
OUTPUT_STALL = 5.0
RECENT_ERROR = 15.0
RECENT_RESTART = 60.0
GAP = 2.0
MIN_INPUT_FPS = 15.0
FPS_WINDOW = 10.0
MAX_RESTART_LOGS = 100


class PipelineState(StrEnum):
    LOADING = "LOADING"
    OFFLINE = "OFFLINE"
    ONLINE = "ONLINE"
    DEGRADED_INPUT = "DEGRADED_INPUT"
    DEGRADED_INFERENCE = "DEGRADED_INFERENCE"
    ERROR = "ERROR"


def health_of(state: PipelineState) -> str:
    """The ``/health`` status go-livepeer reads: IDLE returns the runner to its pool, ERROR kills it."""
    if state is PipelineState.LOADING:
        return "LOADING"
    if state is PipelineState.OFFLINE:
        return "IDLE"
    if state is PipelineState.ERROR:
        return "ERROR"
    return "OK"


class FpsMeter:
    """Events per second over the last ``window`` seconds."""

    def __init__(self, window: float = FPS_WINDOW) -> None:
        self.window = window
        self._times: deque[float] = deque()

    def add(self, now: float) -> None:
        self._times.append(now)
        self._trim(now)

    def fps(self, now: float) -> float:
        self._trim(now)
        return len(self._times) / self.window

    def reset(self) -> None:
        self._times.clear()

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self.window:
            self._times.popleft()


def _ms(t: float | None) -> int | None:
    return None if t is None else int(t * 1000)


def params_hash(params: dict[str, Any]) -> str:
    """md5 of the params as sorted JSON (ai-runner's ``last_params_hash``)."""
    return hashlib.md5(json.dumps(params, sort_keys=True).encode()).hexdigest()


@dataclass
class Verdict:
    state: PipelineState
    stop_stream: bool = False
    """The stream has had no input too long: the caller stops it."""


@dataclass
class StatusTracker:
    """What the runner knows about its pipeline and stream, and the state it is in."""

    pipeline: str
    start_time: float
    state: PipelineState = PipelineState.LOADING
    last_state_update_time: float | None = None
    ready: bool = False
    load_started: float = 0.0
    streaming: bool = False
    stream_start_time: float | None = None
    last_input_time: float | None = None
    last_output_time: float | None = None
    last_params_update_time: float | None = None
    last_params: dict[str, Any] | None = None
    last_params_hash: str | None = None
    last_error_time: float | None = None
    last_error: str | None = None
    last_restart_time: float | None = None
    last_restart_logs: list[str] | None = None
    restart_count: int = 0
    input_fps: FpsMeter = field(default_factory=FpsMeter)
    output_fps: FpsMeter = field(default_factory=FpsMeter)
    _unsent: set[str] = field(default_factory=set)

    # -- facts ---------------------------------------------------------------------------------
    def loading(self, now: float) -> None:
        """A (new) pipeline process started loading; clears a sticky ERROR."""
        self.ready = False
        self.load_started = now
        self._set(PipelineState.LOADING, now)

    def loaded(self, ready: bool) -> None:
        self.ready = ready

    def stream_started(self, now: float) -> None:
        """A new stream: every clock of the previous stream starts over, so its input and output gaps,
        fps and errors count from ``now`` (a stream started minutes after the last one ended is not
        stopped for the old one's silence). The process's restarts and the params stay."""
        self.streaming = True
        self.stream_start_time = now
        self.last_input_time = None
        self.last_output_time = None
        self.last_error_time = None
        self.last_error = None
        self.input_fps.reset()
        self.output_fps.reset()
        if self.ready and self.state is not PipelineState.ERROR:
            self._set(PipelineState.ONLINE, now)  # /health says OK from the start answer on

    def stream_stopped(self) -> None:
        self.streaming = False

    def input_frame(self, now: float) -> None:
        self.last_input_time = now
        self.input_fps.add(now)

    def output_frame(self, now: float) -> None:
        self.last_output_time = now
        self.output_fps.add(now)

    def params_updated(self, params: dict[str, Any], now: float) -> None:
        self.last_params_update_time = now
        self.last_params = params
        self.last_params_hash = params_hash(params)
        self._unsent.add("last_params")

    def error(self, message: str, now: float) -> None:
        self.last_error = message
        self.last_error_time = now

    def restarted(self, logs: list[str], now: float) -> None:
        self.restart_count += 1
        self.last_restart_time = now
        self.last_restart_logs = logs[-MAX_RESTART_LOGS:]
        self._unsent.add("last_restart_logs")

    # -- the machine ---------------------------------------------------------------------------
    def compute(self, now: float, process_alive: bool) -> Verdict:
        """Apply the rules (module docstring) and remember the resulting state."""
        verdict = self._rules(now, process_alive)
        self._set(verdict.state, now)
        return verdict

    def _set(self, state: PipelineState, now: float) -> None:
        if state is not self.state or self.last_state_update_time is None:
            self.state = state
            self.last_state_update_time = now

    def _rules(self, now: float, alive: bool) -> Verdict:
        S = PipelineState
        if self.state is S.ERROR or not alive:
            return Verdict(S.ERROR)
        if not self.ready:
            return Verdict(S.ERROR if now - self.load_started > LOAD_TIMEOUT else S.LOADING)
        if not self.streaming:
            recent = self.last_input_time is not None and now - self.last_input_time <= OFFLINE_GRACE
            return Verdict(S.DEGRADED_INPUT if recent else S.OFFLINE)
        started = self.stream_start_time if self.stream_start_time is not None else now
        input_gap = now - (self.last_input_time if self.last_input_time is not None else started)
        if input_gap > INPUT_IDLE_ERROR:
            return Verdict(S.ERROR, stop_stream=True)
        if input_gap > INPUT_IDLE_STOP:
            return Verdict(S.DEGRADED_INPUT, stop_stream=True)
        since = max(started, self.last_params_update_time or started)
        if self.last_output_time is None or self.last_output_time < since:
            waited = now - since
            if waited < FIRST_OUTPUT_GRACE:
                return Verdict(S.ONLINE)
            if input_gap > GAP:
                return Verdict(S.DEGRADED_INPUT)
            return Verdict(S.DEGRADED_INFERENCE if waited < FIRST_OUTPUT_TIMEOUT else S.ERROR)
        output_gap = now - self.last_output_time
        if output_gap > OUTPUT_STALL and output_gap > input_gap + 1:
            return Verdict(S.ERROR)
        if (self.last_error_time is not None and now - self.last_error_time < RECENT_ERROR) or (
            self.last_restart_time is not None and now - self.last_restart_time < RECENT_RESTART
        ):
            return Verdict(S.DEGRADED_INFERENCE)
        in_fps = self.input_fps.fps(now)
        if input_gap > GAP or in_fps < MIN_INPUT_FPS:
            return Verdict(S.DEGRADED_INPUT)
        if output_gap > GAP or self.output_fps.fps(now) < min(10.0, 0.8 * in_fps):
            return Verdict(S.DEGRADED_INFERENCE)
        return Verdict(S.ONLINE)

    # -- the event -----------------------------------------------------------------------------
    def status_event(self, now: float) -> dict[str, Any]:
        """The ``status`` event body (ai-runner's ``PipelineStatus``; times in ms). ``last_params`` and
        ``last_restart_logs`` are sent once after they change, then null (as ai-runner does)."""
        send_params = "last_params" in self._unsent
        send_logs = "last_restart_logs" in self._unsent
        self._unsent.clear()
        return {
            "type": "status",
            "pipeline": self.pipeline,
            "start_time": _ms(self.start_time),
            "state": self.state.value,
            "last_state_update_time": _ms(self.last_state_update_time),
            "input_status": {
                "last_input_time": _ms(self.last_input_time),
                "fps": round(self.input_fps.fps(now), 2),
            },
            "inference_status": {
                "last_output_time": _ms(self.last_output_time),
                "fps": round(self.output_fps.fps(now), 2),
                "last_params_update_time": _ms(self.last_params_update_time),
                "last_params": self.last_params if send_params else None,
                "last_params_hash": self.last_params_hash,
                "last_error_time": _ms(self.last_error_time),
                "last_error": self.last_error,
                "last_restart_time": _ms(self.last_restart_time),
                "last_restart_logs": self.last_restart_logs if send_logs else None,
                "restart_count": self.restart_count,
            },
            "last_status_timestamp": _ms(now),
            "timestamp": _ms(now),
        }
