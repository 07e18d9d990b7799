"""The fault matrix: each fault injected into a running network (:mod:`nodes`) while clients wait on it, and
what came of it as an :class:`Outcome`.

Every function here leaves the network running (except what it killed) and returns; the caller stops the
network and counts what outlived it. The tests assert on one outcome per fault, ``benchmarks/reliability.py``
repeats each and reports the figures.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from live_nodes import LiveClient, LiveNetwork, write_clip
from nodes import LONG, Answer, Burst, Pair, Up, Workers, call, wait_until

from procs import wait_gone
from up_stack import pids_under

BUSY_TIMEOUT = 30.0  # how long a job may take to reach the part a fault is aimed at


@dataclass
class Outcome:
    """What clients saw when ``fault`` was injected, and what it left behind."""

    fault: str
    answers: list[Answer]
    """Every request the clients sent around the fault, in the order sent."""
    back_seconds: float | None = None
    """Seconds from the fault until the part that was hit served again (None: it is not meant to come back)."""
    orphans: list[int] = field(default_factory=list)
    """Processes the fault should have ended (a dead parent's children) still running."""
    notes: list[str] = field(default_factory=list)
    served_by: list[str] = field(default_factory=list)
    """Where a fault checks it: the orchestrators that served the requests sent once the hit part was back."""

    @property
    def statuses(self) -> list[int]:
        return [a.status for a in self.answers]

    @property
    def lost(self) -> int:
        """Requests that were not served (any status but 200, or no answer)."""
        return sum(1 for a in self.answers if a.status != 200)

    @property
    def unanswered(self) -> int:
        return sum(1 for a in self.answers if a.status == 0)

    @property
    def worst_seconds(self) -> float:
        return max((a.seconds for a in self.answers), default=0.0)


def _wait_busy(check_busy: Callable[[], bool], what: str) -> None:
    if wait_until(check_busy, BUSY_TIMEOUT) is None:
        raise AssertionError(f"no job reached {what} within {BUSY_TIMEOUT:g}s")


def _a_ready(pair: Pair) -> None:
    if wait_until(pair.a_runner_ready, timeout=120, interval=0.2) is None:
        raise AssertionError(f"orchestrator A has no ready runner:\n{pair.a.log()}")


def kill_runner_mid_job(pair: Pair, clients: int = 4) -> Outcome:
    """SIGKILL orchestrator A's runner while it works on a job; A restarts it, B serves meanwhile."""
    _a_ready(pair)
    burst = Burst(pair.url, LONG, clients)
    _wait_busy(lambda: pair.a_in_use() >= 1, "orchestrator A's runner")
    victims = pair.a_runner_pids()
    assert victims, "orchestrator A shows no runner pid"
    os.kill(victims[0], signal.SIGKILL)
    killed_at = time.monotonic()
    answers = burst.answers()
    back = wait_until(lambda: pair.a_runner_ready(not_pid=victims[0]), timeout=90, interval=0.2)
    return Outcome(
        "runner SIGKILLed mid-job",
        answers,
        back_seconds=None if back is None else time.monotonic() - killed_at,
        orphans=wait_gone(victims[:1], timeout=10),
    )


def kill_orchestrator_mid_job(pair: Pair, clients: int = 4) -> Outcome:
    """SIGKILL orchestrator A while a job runs on it; its runner must go with it, B serves the job."""
    _a_ready(pair)
    burst = Burst(pair.url, LONG, clients)
    _wait_busy(lambda: pair.a_in_use() >= 1, "orchestrator A")
    children = pids_under(pair.a.proc.pid)
    pair.a.proc.send_signal(signal.SIGKILL)
    answers = burst.answers()
    after = [pair.post() for _ in range(3)]
    return Outcome(
        "orchestrator SIGKILLed mid-job",
        answers + after,
        orphans=wait_gone([pair.a.proc.pid, *children], timeout=15),
    )


def freeze_orchestrator(pair: Pair, clients: int = 3) -> Outcome:
    """SIGSTOP orchestrator A while a job runs on it: the gateway must answer that job by its deadline and send
    the next ones to B; SIGCONT afterwards, and A must answer again."""
    _a_ready(pair)
    burst = Burst(pair.url, LONG, clients)
    _wait_busy(lambda: pair.a_in_use() >= 1, "orchestrator A")
    pair.a.proc.send_signal(signal.SIGSTOP)
    try:
        answers = burst.answers()
        after = [pair.post() for _ in range(3)]
    finally:
        pair.a.proc.send_signal(signal.SIGCONT)
    resumed_at = time.monotonic()
    back = wait_until(lambda: pair.a.get("/healthz", timeout=2).status_code == 200, timeout=30)
    return Outcome(
        "orchestrator frozen (SIGSTOP)",
        answers + after,
        back_seconds=None if back is None else time.monotonic() - resumed_at,
        notes=[f"answers after the first ones: {[a.status for a in after]}"],
    )


def kill_worker_mid_job(network: Workers, clients: int = 2) -> Outcome:
    """SIGKILL one remote worker while both work: its job must move to the other; its runner must exit."""
    burst = Burst(network.url, LONG | {"num_inference_steps": 100}, clients)
    _wait_busy(lambda: network.busy_workers() == 2, "both workers")
    victim = network.workers[0]
    children = victim.runner_pids()
    victim.proc.send_signal(signal.SIGKILL)
    answers = burst.answers()
    return Outcome(
        "remote worker SIGKILLed mid-job", answers, orphans=wait_gone([victim.proc.pid, *children], timeout=15)
    )


def kill_up_orchestrator(up: Up, recovery: float = 60.0) -> Outcome:
    """SIGKILL the orchestrator ``lpnode up`` started; up must restart it (requests are served again) or exit
    non-zero saying why. Every request sent until then is one of :attr:`Outcome.answers`."""
    victim = up.orchestrator_pid()
    assert victim is not None, up.log()
    children = pids_under(victim)
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    answers: list[Answer] = []
    back = None
    while time.monotonic() - killed_at < recovery and up.proc.poll() is None:
        answer = call(up.url, LONG | {"num_inference_steps": 2}, timeout=30)
        answers.append(answer)
        if answer.status == 200:
            back = time.monotonic() - killed_at
            break
        time.sleep(0.5)
    notes = [] if up.proc.poll() is None else [f"lpnode up exited with status {up.proc.returncode}"]
    return Outcome(
        "lpnode up's orchestrator SIGKILLed",
        answers,
        back_seconds=back,
        orphans=wait_gone([victim, *children], timeout=15),
        notes=notes,
    )


def _live_free(network: LiveNetwork) -> None:
    """Wait until both orchestrators have an idle live runner and no stream holds a slot. A stream stopped
    through the gateway holds its slot until its runner has finished the last input (a few seconds), and a start
    meanwhile is refused: the streams here start once both are free, so they measure the fault, not that drain."""
    if wait_until(lambda: all(network.runner_idle(n) for n in (network.a, network.b)), 60, interval=0.2) is None:
        held = {n.base_url: network.streams_on(n) for n in (network.a, network.b)}
        raise AssertionError(f"an orchestrator's live slot stayed held: {held}")


def kill_live_runner_mid_stream(network: LiveNetwork, clip: Path, frames: int, work: Path) -> Outcome:
    """SIGKILL the live runner serving a stream mid-stream: the stream must go on at the other orchestrator,
    the hit one must start its runner again and free the stream's slot, and the runner's pipeline process must
    go with it. Then two streams at once must be served, one by each orchestrator (the restarted runner takes
    one). The answers: the stream that was hit, then the two new ones."""
    work.mkdir(parents=True, exist_ok=True)
    _live_free(network)
    name = f"hit-{time.monotonic_ns()}"
    hit = LiveClient(network, clip, frames, name, work / f"{name}.ts")
    if wait_until(lambda: hit.output_segments() >= 2 and bool(hit.orchestrators), BUSY_TIMEOUT) is None:
        seen = hit.answer(timeout=5)
        raise AssertionError(f"the stream never gave output: {hit.last}\n{seen.message}")
    serving = network.node(hit.orchestrators[0])
    victims = network.runner_tree(serving)
    assert victims, "the serving orchestrator shows no runner pid"
    os.kill(victims[0], signal.SIGKILL)
    killed_at = time.monotonic()
    back = wait_until(lambda: network.runner_idle(serving, not_pid=victims[0]), timeout=90, interval=0.2)
    back_seconds = None if back is None else time.monotonic() - killed_at
    first = hit.answer()
    notes = [f"the hit stream: {hit.last.get('swaps')} swaps, orchestrators {hit.orchestrators}"]
    notes.append(f"its state: {hit.last.get('state')}, last error: {hit.last.get('last_error')}")
    notes.append(f"streams still held by the hit orchestrator: {network.streams_on(serving)}")
    _live_free(network)
    short = work / "short.mp4"
    short_frames = write_clip(short, 4.0)
    after = [LiveClient(network, short, short_frames, f"after{i}-{time.monotonic_ns()}", work / f"after{i}.ts")
             for i in range(2)]  # fmt: skip
    answers = [first, *(client.answer() for client in after)]
    return Outcome(
        "live runner SIGKILLed mid-stream",
        answers,
        back_seconds=back_seconds,
        orphans=wait_gone(victims, timeout=10),
        notes=notes,
        served_by=sorted(o for client in after for o in client.orchestrators),
    )
