"""Keeping a child process running: :class:`Supervisor` restarts it with :class:`RestartBackoff` when it exits,
and gives up, saying why, when it keeps exiting soon after each start (``lpnode up``'s orchestrators)."""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from lpnode.logs import log_event

log = logging.getLogger("lpnode.up")


@dataclass
class RestartBackoff:
    """How long to wait before starting a child that exited again: ``first`` seconds, doubling up to
    ``longest`` while it keeps exiting; both reset once a run lasted ``steady`` seconds. ``None`` (give up)
    at the ``limit``-th exit in a row that came within ``steady`` seconds of its start."""

    first: float = 1.0
    longest: float = 30.0
    steady: float = 60.0
    limit: int = 5
    quick_exits: int = 0
    _next: float = 0.0

    def after_exit(self, ran_seconds: float) -> float | None:
        """The wait before the next start, given how long the run that just ended lasted; ``None``: give up."""
        if ran_seconds >= self.steady:
            self.quick_exits, self._next = 0, 0.0
        else:
            self.quick_exits += 1
            if self.quick_exits >= self.limit:
                return None
        delay = self._next or self.first
        self._next = min(self.longest, delay * 2)
        return delay


def exit_reason(returncode: int) -> str:
    """``was killed by SIGKILL`` or ``exited with status 1``."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


class Supervisor:
    """Keeps one child process running: :meth:`start` it, :meth:`watch` it (a thread restarts it with
    :class:`RestartBackoff` whenever it exits), :meth:`stop` it. Once the backoff gives up, ``gave_up`` says
    why and ``on_give_up`` is called (from the watching thread). No child is started after :meth:`stop`."""

    def __init__(
        self,
        name: str,
        start: Callable[[], subprocess.Popen[bytes]],
        ready: Callable[[subprocess.Popen[bytes], threading.Event], bool],
        backoff: RestartBackoff | None = None,
        poll_seconds: float = 0.2,
    ) -> None:
        self.name = name
        self._start = start
        self._ready = ready
        self.backoff = backoff or RestartBackoff()
        self.poll_seconds = poll_seconds
        self.on_give_up: Callable[[], object] = lambda: None
        self.gave_up = ""
        self.restarts = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> subprocess.Popen[bytes]:
        with self._lock:
            self.proc, self._started_at = self._start(), time.monotonic()
            return self.proc

    def watch(self) -> None:
        """Start restarting the child when it exits (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name=f"lpnode-supervise-{self.name}", daemon=True)
            self._thread.start()

    def _watch(self) -> None:
        while True:
            proc = self.proc
            assert proc is not None
            while proc.poll() is None:
                if self._stopping.wait(self.poll_seconds):
                    return
            if self._stopping.is_set():
                return
            ran = time.monotonic() - self._started_at
            reason = exit_reason(proc.returncode)
            delay = self.backoff.after_exit(ran)
            if delay is None:
                b = self.backoff
                self.gave_up = (
                    f"the {self.name} stopped {b.limit} times in a row, each within {b.steady:g}s of its start "
                    f"(the last one {reason}); see its lines above"
                )
                log_event(log, f"{self.name} keeps failing; stopping", logging.ERROR, reason=reason)
                self.on_give_up()
                return
            log_event(
                log, f"{self.name} exited; restarting it", logging.WARNING, pid=proc.pid, reason=reason,
                ran_seconds=round(ran, 1), restart_in_seconds=delay,
            )  # fmt: skip
            if self._stopping.wait(delay):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                self.proc, self._started_at = self._start(), time.monotonic()
                self.restarts += 1
            if self._ready(self.proc, self._stopping):
                log_event(log, f"{self.name} serving again", pid=self.proc.pid, restarts=self.restarts)

    def stop(self) -> None:
        """Stop watching, then stop the child (SIGTERM, then SIGKILL if it lingers)."""
        with self._lock:
            self._stopping.set()
            proc = self.proc
        if self._thread is not None:
            self._thread.join(timeout=30)
        if proc is not None:
            stop_child(proc)


def stop_child(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM ``proc``, then SIGKILL if it is still running after 40 s; returns once it has exited."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
