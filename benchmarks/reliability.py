"""Reliability in figures: the fault matrix of ``tests/reliability`` repeated, and a soak with client disconnects
and injected faults, every process real and on loopback with the tiny text-to-image model.

- **Fault matrix** (``--repeat`` times each): a runner SIGKILLed mid-job, an orchestrator frozen with SIGSTOP
  (gateway ``--timeout 8``), an orchestrator SIGKILLed mid-job (each with a second orchestrator offering the
  model), a remote worker SIGKILLed mid-job (a second worker attached), and the orchestrator of ``lpnode up``
  SIGKILLed. For each: what the clients saw, the longest wait, how soon the part that was hit served again,
  lost requests and orphaned processes. The faults are the ones the tests assert on (``tests/reliability/
  faults.py``), so the figures and the tests measure one thing.
- **Soak**: ``--soak`` mixed text-to-image requests (sizes, steps, images per prompt) at ``--concurrency``
  through a gateway in front of two orchestrators, of which ``--disconnects`` are abandoned by their client
  and ``--faults`` carry an injected fault (in turn: orchestrator A's runner SIGKILLed, orchestrator A
  frozen for a second, an input over the limits). Reported: served, failed by status, lost (no answer),
  usage records against requests (none twice), and memory (RSS) and open files of every process before and
  after.

Usage::

    .venv/bin/python benchmarks/reliability.py                 # ~15 min on 2 cores; prints the tables
    .venv/bin/python benchmarks/reliability.py --write-docs    # ... and refreshes its section of docs/reliability.md
    .venv/bin/python benchmarks/reliability.py --soak 0 --write-docs   # the fault matrix only (the soak's figures
                                                                       # in the docs are kept)
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import os
import random
import signal
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _common

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "reliability")]

import faults  # noqa: E402  (tests/reliability: the faults the tests assert on)
import requests  # noqa: E402
from live_nodes import LiveNetwork, write_clip  # noqa: E402
from nodes import BODY, Answer, Pair, Up, Workers, call, start_shared_runner, wait_until  # noqa: E402

from procs import RunnerProcess, wait_gone  # noqa: E402
from up_stack import pids_under  # noqa: E402

DOCS = ROOT / "docs" / "reliability.md"
START, END = "<!-- reliability:start -->", "<!-- reliability:end -->"
FROZEN_TIMEOUT = 8.0
SOAK_TIMEOUT = 20.0
RSS_BOUND_MIB = 64.0
FDS_BOUND = 16
SETTLE_SECONDS = 20.0
KEPT_NOTE = "(From the last full run"


# -- the fault matrix -------------------------------------------------------------------------------------------


def fault_matrix(
    runner: RunnerProcess, models_dir: Path, work: Path, repeat: int, deadline: _common.Deadline
) -> dict[str, list[faults.Outcome]]:
    results: dict[str, list[faults.Outcome]] = collections.defaultdict(list)

    def keep(outcome: faults.Outcome) -> faults.Outcome:
        results[outcome.fault].append(outcome)
        print(f"  {outcome.fault}: {summary(outcome.statuses)}, orphans {len(outcome.orphans)}", flush=True)
        return outcome

    for round_ in range(repeat):
        deadline.check("fault matrix")
        root = work / f"pair{round_}"
        pair = Pair(runner, models_dir, root)
        last = None
        try:
            pair.open_gateway(root / "gw-runner")
            keep(faults.kill_runner_mid_job(pair))
            pair.open_gateway(root / "gw-frozen", timeout=FROZEN_TIMEOUT)
            keep(faults.freeze_orchestrator(pair))
            pair.open_gateway(root / "gw-kill")
            last = keep(faults.kill_orchestrator_mid_job(pair))
        finally:
            left = pair.stop()
        if last is not None:
            last.orphans += left
    deadline.check("fault matrix")
    network = Workers(models_dir, work / "workers")
    try:
        for round_ in range(repeat):
            deadline.check("fault matrix")
            keep(faults.kill_worker_mid_job(network))
            if round_ < repeat - 1:
                network.respawn(0)
    finally:
        network.stop()
    deadline.check("fault matrix")
    live = LiveNetwork(work / "live")
    clip = work / "live" / "clip.mp4"
    frames = write_clip(clip, 16.0)
    try:
        for round_ in range(repeat):
            deadline.check("fault matrix")
            keep(faults.kill_live_runner_mid_stream(live, clip, frames, work / "live" / f"round{round_}"))
    finally:
        left = live.stop()
    results["live runner SIGKILLed mid-stream"][-1].orphans += left
    for round_ in range(repeat):
        deadline.check("fault matrix")
        up = Up(runner, work / f"up{round_}")
        try:
            watched = pids_under(up.proc.pid)
            outcome = keep(faults.kill_up_orchestrator(up))
            watched += pids_under(up.proc.pid)
        finally:
            up.stop()
        outcome.orphans += wait_gone([up.proc.pid, *watched])
    return results


def summary(statuses: list[int]) -> str:
    counts = collections.Counter(statuses)
    return ", ".join(f"{n}×{s if s else 'no answer'}" for s, n in sorted(counts.items()))


def matrix_table(results: dict[str, list[faults.Outcome]]) -> list[str]:
    lines = [
        "| fault | runs | what the clients saw (count × status) | longest wait | back after (median / max) "
        "| not served | no answer at all | orphaned processes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for fault, outcomes in results.items():
        statuses = [s for o in outcomes for s in o.statuses]
        backs = [o.back_seconds for o in outcomes if o.back_seconds is not None]
        if backs:
            back = f"{statistics.median(backs):.1f} s / {max(backs):.1f} s"
            if len(backs) < len(outcomes):
                back += f" ({len(outcomes) - len(backs)} never)"
        else:
            back = "—"
        worst = max(o.worst_seconds for o in outcomes)
        lost = sum(o.lost for o in outcomes)
        unanswered = sum(o.unanswered for o in outcomes)
        orphans = sum(len(o.orphans) for o in outcomes)
        lines.append(
            f"| {fault} | {len(outcomes)} | {summary(statuses)} | {worst:.1f} s | {back} | {lost} | {unanswered} "
            f"| {orphans} |"
        )
    return lines


# -- the soak --------------------------------------------------------------------------------------------------


@dataclass
class SoakResult:
    requests: int = 0
    answers: list[Answer] = field(default_factory=list)
    disconnected: int = 0
    disconnects_answered_first: int = 0
    injected: collections.Counter[str] = field(default_factory=collections.Counter)
    usage_rows: int = 0
    usage_duplicates: int = 0
    usage_by_status: collections.Counter[int] = field(default_factory=collections.Counter)
    processes: dict[str, tuple[tuple[float, int], tuple[float, int]]] = field(default_factory=dict)
    seconds: float = 0.0


def rss_and_fds(pid: int) -> tuple[float, int]:
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def soak_processes(pair: Pair, runner: RunnerProcess) -> dict[str, int]:
    assert pair.gateway is not None
    found = {"gateway": pair.gateway.proc.pid, "orchestrator A": pair.a.proc.pid, "orchestrator B": pair.b.proc.pid}
    found["runner behind B"] = runner.proc.pid
    return found


def mixed_body(rng: random.Random) -> dict[str, Any]:
    width, height = rng.choice([(64, 64), (96, 64), (64, 128), (128, 128)])
    steps, images = rng.randint(2, 8), rng.choice([1, 1, 1, 2])
    return BODY | {"width": width, "height": height, "num_inference_steps": steps, "num_images_per_prompt": images}


class Injector:
    """Injects the soak's faults, one at a time, in turn: A's runner SIGKILLed (when it has one), A frozen for a
    second, an input over the limits."""

    KINDS = ("runner SIGKILL", "orchestrator SIGSTOP 1 s", "input over the limits")

    def __init__(self, pair: Pair, result: SoakResult) -> None:
        self.pair, self.result = pair, result
        self.turn = 0
        self.lock = threading.Lock()

    def inject(self, url: str) -> Answer:
        with self.lock:
            kind = self.KINDS[self.turn % len(self.KINDS)]
            self.turn += 1
            if kind == "runner SIGKILL":
                pids = self.pair.a_runner_pids()
                if pids:
                    os.kill(pids[0], signal.SIGKILL)
                else:
                    kind = "orchestrator SIGSTOP 1 s"  # no runner up yet: freeze instead
            if kind == "orchestrator SIGSTOP 1 s":
                self.pair.a.proc.send_signal(signal.SIGSTOP)
                threading.Timer(1.0, self.pair.a.proc.send_signal, (signal.SIGCONT,)).start()
            self.result.injected[kind] += 1
        if kind == "input over the limits":
            return call(url, BODY | {"num_inference_steps": 10_000}, timeout=60)
        return call(url, BODY, timeout=60)


def soak(
    runner: RunnerProcess, models_dir: Path, work: Path, total: int, concurrency: int, disconnects: float,
    fault_share: float, deadline: _common.Deadline,
) -> SoakResult:  # fmt: skip
    rng = random.Random(19)
    kinds = ["disconnect"] * round(total * disconnects) + ["fault"] * round(total * fault_share)
    kinds += ["request"] * (total - len(kinds))
    rng.shuffle(kinds)
    result = SoakResult(requests=total)
    pair = Pair(runner, models_dir, work / "soak")
    try:
        pair.open_gateway(work / "soak" / "gw", timeout=SOAK_TIMEOUT)
        url = pair.url
        with concurrent.futures.ThreadPoolExecutor(8) as pool:  # warm every hop before the "before" figures
            list(pool.map(lambda _: call(url, BODY), range(40)))
        pids = soak_processes(pair, runner)
        before = {name: rss_and_fds(pid) for name, pid in pids.items()}
        injector = Injector(pair, result)
        bodies = [mixed_body(rng) for _ in kinds]
        waits = [rng.uniform(0.05, 0.5) for _ in kinds]
        lock = threading.Lock()

        def one(index: int) -> None:
            deadline.check("soak")
            kind = kinds[index]
            if kind == "fault":
                answer = injector.inject(url)
            elif kind == "disconnect":
                started = time.monotonic()
                try:
                    answered = requests.post(url, json=bodies[index], timeout=(5, waits[index]))
                    answer = Answer(answered.status_code, time.monotonic() - started)
                    with lock:
                        result.disconnects_answered_first += 1
                except requests.RequestException:
                    with lock:
                        result.disconnected += 1
                    return
            else:
                answer = call(url, bodies[index], timeout=120)
            with lock:
                result.answers.append(answer)

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(total)))
        result.seconds = time.monotonic() - started
        # Past every keep-alive (aiohttp pools keep idle connections 15 s): what is still open then is held.
        time.sleep(SETTLE_SECONDS)
        wait_until(lambda: pair.a_runner_ready(), timeout=60)
        after = {name: rss_and_fds(pid) for name, pid in pids.items() if os.path.exists(f"/proc/{pid}")}
        result.processes = {name: (before[name], after[name]) for name in after}
    finally:
        pair.stop()
    with sqlite3.connect(work / "soak" / "gw" / "gateway.sqlite") as db:
        rows = db.execute("SELECT status, request_id FROM usage ORDER BY id").fetchall()
    warmup = 40
    result.usage_rows = len(rows) - warmup
    ids = collections.Counter(request_id for _, request_id in rows)
    result.usage_duplicates = sum(n - 1 for n in ids.values() if n > 1)
    result.usage_by_status = collections.Counter(status for status, _ in rows[warmup:])
    return result


def soak_table(result: SoakResult, concurrency: int) -> list[str]:
    statuses = collections.Counter(a.status for a in result.answers)
    served = statuses.pop(200, 0)
    lost = statuses.pop(0, 0)
    failed = ", ".join(f"{n}×{s}" for s, n in sorted(statuses.items())) or "none"
    sent = len(result.answers) + result.disconnected
    rate = sent / result.seconds if result.seconds else 0.0
    usage = ", ".join(f"{n}×{s}" for s, n in sorted(result.usage_by_status.items()))
    lines = [
        "| figure | value |",
        "|---|---|",
        f"| requests (concurrency {concurrency}) | {result.requests} in {result.seconds:.0f} s ({rate:.1f}/s) |",
        f"| served (200) | {served} |",
        f"| failed, by status | {failed} |",
        f"| lost (no answer at all) | {lost} |",
        f"| abandoned by their client | {result.disconnected} (and {result.disconnects_answered_first} answered "
        "before the client gave up) |",
        f"| injected faults | {', '.join(f'{n}× {k}' for k, n in result.injected.items())} |",
        f"| usage records / requests that reached the gateway | {result.usage_rows} / {sent} ({usage}) |",
        f"| requests metered twice | {result.usage_duplicates} |",
    ]
    lines += ["", "| process | RSS before → after | open files before → after | within bounds |", "|---|---|---|---|"]
    for name, ((rss0, fd0), (rss1, fd1)) in result.processes.items():
        ok = rss1 - rss0 <= RSS_BOUND_MIB and fd1 - fd0 <= FDS_BOUND
        lines.append(f"| {name} | {rss0:.0f} → {rss1:.0f} MiB | {fd0} → {fd1} | {'yes' if ok else '**no**'} |")
    return lines


# -- docs and main ------------------------------------------------------------------------------------------------


def kept_soak() -> list[str]:
    """The soak's figures already in the docs (from ``### Soak`` to the end of the section), or none."""
    text = DOCS.read_text()
    if START not in text or END not in text:
        return []
    section = text.partition(START)[2].partition(END)[0]
    at = section.find("### Soak")
    if at < 0:
        return []
    lines = section[at:].rstrip("\n").split("\n")
    if len(lines) > 2 and lines[2].startswith(KEPT_NOTE):  # kept once already: drop the note and its blank line
        del lines[1:3]
    return lines


def write_section(section: str) -> None:
    text = DOCS.read_text()
    if START in text and END in text:
        head, _, rest = text.partition(START)
        _, _, tail = rest.partition(END)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOCS.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each fault (default 5)")
    parser.add_argument("--soak", type=int, default=2000, help="requests in the soak (default 2000; 0: none)")
    parser.add_argument("--concurrency", type=int, default=32, help="soak concurrency (default 32)")
    parser.add_argument("--disconnects", type=float, default=0.10, help="share abandoned by the client (0.10)")
    parser.add_argument("--faults", type=float, default=0.05, help="share carrying an injected fault (0.05)")
    parser.add_argument("--budget", type=float, default=1800, help="seconds the whole run may take (default 1800)")
    parser.add_argument("--write-docs", action="store_true", help="refresh this section of docs/reliability.md")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _common.sigterm_as_interrupt)
    deadline = _common.Deadline(args.budget)
    command = " ".join(["benchmarks/reliability.py", *sys.argv[1:]])
    with tempfile.TemporaryDirectory(prefix="lpnode-reliability-") as tmp:
        work = Path(tmp)
        models = work / "models"
        print("building the tiny text-to-image model ...", flush=True)
        _common.build_models(models)
        runner = start_shared_runner(models, work / "shared-runner.log")
        try:
            print(f"fault matrix, {args.repeat} runs of each fault:", flush=True)
            matrix = fault_matrix(runner, models, work, args.repeat, deadline)
            result = None
            if args.soak:
                print(f"soak: {args.soak} requests at concurrency {args.concurrency} ...", flush=True)
                result = soak(
                    runner, models, work, args.soak, args.concurrency, args.disconnects, args.faults, deadline
                )
        finally:
            runner.stop()
    info = _common.machine_info()
    lines = [
        START,
        "## Figures",
        "",
        f"`.venv/bin/python {command}` on {info['nproc']} cores ({info['cpu']}), Python {info['python']}, "
        f"torch {info['torch']}, {info['os']}. The machine was shared with other work while it ran, so times "
        "are longer than on a quiet one; the counts (lost, orphaned, metered twice) do not depend on it.",
        "",
        "### Fault matrix",
        "",
        *matrix_table(matrix),
    ]
    if result is not None:
        share = f"{args.disconnects:.0%} client disconnects, {args.faults:.0%} injected faults"
        lines += ["", f"### Soak: {args.soak} mixed requests, {share}", "", *soak_table(result, args.concurrency)]
    elif args.write_docs and (soak_lines := kept_soak()):
        lines += ["", *soak_lines[:1], "", f"{KEPT_NOTE}, `benchmarks/reliability.py --write-docs`.)"]
        lines += soak_lines[1:]
    lines.append(END)
    section = "\n".join(lines)
    print(section)
    if args.write_docs:
        write_section(section)
        print(f"wrote {DOCS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
