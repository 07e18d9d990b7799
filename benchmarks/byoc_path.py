"""What do lpnode's BYOC hops add to a job, next to calling the container directly?

In one run, on one machine: ONE echo BYOC container (the BYOC kit, ``lpnode byoc serve``, an ``async``
job that returns its JSON input), ONE ``lpnode orchestrator`` (TLS, its default; no local models, an
``--orch-secret``) with the container registered as capability ``echo`` (capacity 64, price 0), and ONE
``lpnode gateway`` with ``--orch-addr`` pointing at that orchestrator. The same small JSON body is sent:

(a) direct: ``POST /echo`` to the container (plain HTTP/1.1);
(b) orchestrator (one hop): ``POST /process/request/echo`` to the orchestrator over TLS with a ``Livepeer``
    header, as the livepeer-gateway SDK sends it;
(c) gateway → orchestrator (two hops): ``POST /process/request/echo`` to the gateway, which asks the
    orchestrator for a job token (``GET /process/token``) and then relays the job.

Each at concurrency 1 and 32. The modes run in interleaved rounds (at c=1 request by request; at c=32
one burst per mode per round, the first mode rotating), so a slow patch of this shared VM hits all of
them alike. Request counts are fixed (``--rounds``), and the whole run is bounded by ``--budget``.

Usage::

    python benchmarks/byoc_path.py                # print the tables
    python benchmarks/byoc_path.py --write-docs   # also update docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from _common import (
    Deadline,
    free_port,
    log_tail,
    machine_info,
    nearest_rank,
    sigterm_as_interrupt,
    start_lpnode,
    stop_process,
    write_docs,
)

SECRET = "byoc-bench-secret"
START_MARK = "<!-- byoc_path:start -->"
END_MARK = "<!-- byoc_path:end -->"
BODY = json.dumps({"text": "hello", "n": 1}).encode()
CONTAINER = """
from lpnode.byoc.kit import ByocApp

app = ByocApp("echo")


@app.job()
async def echo(inputs):
    return inputs
"""
DIRECT, ORCH, GATEWAY = "direct", "orchestrator", "gateway"
LABELS = {DIRECT: "direct", ORCH: "orchestrator (one hop)", GATEWAY: "gateway → orchestrator"}


@dataclass
class Mode:
    key: str
    concurrency: int
    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    failed: int = 0

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0

    def p(self, q: float) -> float:
        return nearest_rank(self.latencies, q) * 1000


def wait_http(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 60) -> None:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"a process exited with {proc.returncode}:\n{log_tail(log_path)}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout:g}s:\n{log_tail(log_path)}")


def register(orch_url: str, container_url: str) -> None:
    body = json.dumps({"name": "echo", "url": container_url, "capacity": 64}).encode()
    request = urllib.request.Request(
        f"{orch_url}/capability/register", data=body, headers={"Authorization": SECRET}, method="POST"
    )
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with urllib.request.urlopen(request, timeout=10, context=context) as answer:
        if answer.read().strip() != b"ok":
            raise RuntimeError("registration failed")


async def one(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> tuple[float, bool]:
    t0 = time.perf_counter()
    try:
        async with session.post(url, data=BODY, headers=headers) as answer:
            data = await answer.read()
            ok = answer.status == 200 and json.loads(data) == json.loads(BODY)
    except (aiohttp.ClientError, ValueError):
        ok = False
    return time.perf_counter() - t0, ok


async def measure(urls: dict[str, str], rounds: int, concurrencies: list[int], deadline: Deadline) -> list[Mode]:
    header = base64.b64encode(json.dumps({"capability": "echo", "request": "{}", "timeout_seconds": 30}).encode())
    headers = {
        DIRECT: {"Content-Type": "application/json"},
        ORCH: {"Content-Type": "application/json", "Livepeer": header.decode()},
        GATEWAY: {"Content-Type": "application/json", "Livepeer": header.decode()},
    }
    connector = aiohttp.TCPConnector(limit=0, ssl=False, keepalive_timeout=3)
    modes = {(k, c): Mode(k, c) for c in concurrencies for k in urls}
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def burst(mode: Mode, record: bool) -> None:
            t0 = time.perf_counter()
            results = await asyncio.gather(
                *(one(session, urls[mode.key], headers[mode.key]) for _ in range(mode.concurrency))
            )
            if record:
                mode.wall += time.perf_counter() - t0
                mode.latencies += [s for s, ok in results if ok]
                mode.failed += sum(1 for _, ok in results if not ok)

        for mode in modes.values():  # warm-up: connections, TLS sessions
            for _ in range(3 if mode.concurrency == 1 else 1):
                await burst(mode, record=False)
        for r in range(rounds):
            for c in concurrencies:
                order = list(urls)
                order = order[r % len(order) :] + order[: r % len(order)]
                repeats = 20 if c == 1 else 1
                for _ in range(repeats):
                    for key in order:
                        deadline.check("measuring")
                        await burst(modes[(key, c)], record=True)
    return list(modes.values())


def report(modes: list[Mode], rounds: int) -> str:
    lines = ["| path | c | requests | failed | p50 (ms) | p99 (ms) | throughput (req/s) |"]
    lines += ["|---|---:|---:|---:|---:|---:|---:|"]
    for m in modes:
        lines.append(
            f"| {LABELS[m.key]} | {m.concurrency} | {len(m.latencies)} | {m.failed} | {m.p(0.5):.1f} | "
            f"{m.p(0.99):.1f} | {m.throughput:.0f} |"
        )
    by = {(m.key, m.concurrency): m for m in modes}
    lines += ["", "Added over direct (p50) and throughput relative to direct:", ""]
    lines += [
        "| c | orchestrator added p50 (ms) | gateway → orchestrator added p50 (ms) "
        "| throughput: orchestrator | gateway → orchestrator |"
    ]
    lines += ["|---:|---:|---:|---:|---:|"]
    for c in sorted({m.concurrency for m in modes}):
        d, o, g = by[(DIRECT, c)], by[(ORCH, c)], by[(GATEWAY, c)]
        lines.append(
            f"| {c} | +{o.p(0.5) - d.p(0.5):.1f} | +{g.p(0.5) - d.p(0.5):.1f} | "
            f"{o.throughput / d.throughput:.2f} | {g.throughput / d.throughput:.2f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="rounds (c=1: 20 requests per mode each; c=32: 1 burst)")
    parser.add_argument("--budget", type=float, default=600, help="seconds the whole run may take")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, sigterm_as_interrupt)
    deadline = Deadline(args.budget)
    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="byoc-bench-") as tmp:
        work = Path(tmp)
        (work / "container.py").write_text(CONTAINER)
        (work / "aiModels.json").write_text("[]")
        ports = {name: free_port() for name in ("container", "orch", "http", "cli")}
        container_url = f"http://127.0.0.1:{ports['container']}"
        orch_url = f"https://127.0.0.1:{ports['orch']}"
        procs: list[subprocess.Popen[bytes]] = []
        try:
            log = work / "container.log"
            procs.append(
                start_lpnode(["byoc", "serve", "container:app", "--port", str(ports["container"])], log, cwd=work)
            )
            wait_http(container_url + "/health", procs[-1], log)
            log = work / "orch.log"
            orch = ["orchestrator", "--ai-models", str(work / "aiModels.json"), "--orch-secret", SECRET]
            orch += ["--service-addr", f"127.0.0.1:{ports['orch']}", "--data-dir", str(work / "orch")]
            procs.append(start_lpnode(orch, log))
            wait_http(orch_url + "/healthz", procs[-1], log)
            register(orch_url, container_url)
            log = work / "gateway.log"
            gateway = ["gateway", "--orch-addr", f"127.0.0.1:{ports['orch']}"]
            gateway += ["--http-addr", f"127.0.0.1:{ports['http']}", "--cli-addr", f"127.0.0.1:{ports['cli']}"]
            gateway += ["--data-dir", str(work / "gw"), "--log-level", "warning"]
            procs.append(start_lpnode(gateway, log))
            wait_http(f"http://127.0.0.1:{ports['http']}/healthz", procs[-1], log)
            urls = {
                DIRECT: f"{container_url}/echo",
                ORCH: f"{orch_url}/process/request/echo",
                GATEWAY: f"http://127.0.0.1:{ports['http']}/process/request/echo",
            }
            modes = asyncio.run(measure(urls, args.rounds, [1, 32], deadline))
        finally:
            for proc in reversed(procs):
                stop_process(proc)
    table = report(modes, args.rounds)
    print(table)
    if args.write_docs:
        info = machine_info()
        section = "\n".join(
            [
                START_MARK,
                "## BYOC path: gateway → orchestrator → container, against the container alone",
                "",
                "`benchmarks/byoc_path.py` sends the same small JSON body to an echo BYOC container (the BYOC kit, "
                "`lpnode byoc serve`, an `async` job returning its input) directly, through `lpnode orchestrator` "
                "(TLS, `POST /process/request/echo` with a `Livepeer` header, as the livepeer-gateway SDK sends it), "
                "and through `lpnode gateway` → that orchestrator (the gateway fetches a job token with "
                "`GET /process/token` for every job, then relays it), at concurrency 1 and 32. The orchestrator "
                "serves no local models; the container is registered with capacity 64 and price 0. The modes run "
                f"in interleaved rounds ({args.rounds} rounds: at c=1, 20 requests per mode per round, alternating; "
                "at c=32, one burst of 32 per mode per round, the first mode rotating). Latency runs from the send "
                "to the last byte of the answer; throughput is requests / time in the mode's bursts.",
                "",
                "Command: `.venv/bin/python benchmarks/byoc_path.py --write-docs`",
                "",
                f"Date: {dt.date.today().isoformat()}. Machine: {info['nproc']} CPUs ({info['cpu']}), "
                f"{info['os']}, Python {info['python']}. Load average (1 min) at the start: {load_at_start:.2f}.",
                "",
                table,
                "",
                "The echo container answers in about a millisecond, so the throughput ratios show the hops' own "
                "cost per request, not what a model sees: a job that computes for a second would see the added p50 "
                "(a few ms at c=1) and nothing else. The gateway's hop costs more than the orchestrator's because "
                "each BYOC job is two round trips from the gateway (a job token, then the job), as in go-livepeer. "
                "A load average above 2 means other work shared the 2 cores during the run.",
                END_MARK,
            ]
        )
        write_docs(section, START_MARK, END_MARK)
        print("wrote docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
