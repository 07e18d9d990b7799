"""What do lpnode's two hops (gateway → orchestrator) add to a job, next to two nginx reverse proxies?

In one run, on one machine: ONE ``lpnode runner`` (tiny text-to-image model, ``--threads 1``,
``--max-in-flight 1 --max-queue 128``, so every concurrent request waits in its queue instead of being
refused), ONE ``lpnode orchestrator`` (TLS, its default) whose aiModels.json lists that very runner as an
external ``url`` entry, and ONE ``lpnode gateway`` with ``--orch-addr`` pointing at that orchestrator. The
same JSON request (64x64, 2 steps, fixed seed) is sent:

(a) direct: ``POST /text-to-image`` to the runner over plain HTTP/1.1 (it answers the PNG inline, as a
    data URL);
(b) lpnode, two hops: ``POST /text-to-image`` to the gateway, which relays it to the orchestrator (TLS,
    the go-livepeer gateway headers), which relays it to the runner; the gateway stores the PNG (taken from
    the orchestrator's answer when it comes inline, else fetched from the URL the answer carries) and
    answers its own absolute ``/stream/...`` URL;
(c) nginx, two hops: the same request through two nginx reverse proxies in a chain (client → nginx A →
    nginx B → runner; plain HTTP/1.1, upstream keep-alive, response buffering on), which pass the
    runner's answer through unchanged: the practical floor for two HTTP hops.

Each at concurrency 1, 16 and 64 (``--concurrency``). One more row at concurrency 1 sends the request to
the orchestrator alone, with the headers the gateway sends, to split the lpnode path between its hops.

The client is one asyncio process (uvloop, aiohttp, one keep-alive session per path). A request's
latency runs from the send to the last byte of the answer; decoding and checking the answer (and
fetching a stored PNG) come after. The modes run in interleaved rounds (the concurrency-1 modes alternate
request by request, then each concurrent mode sends one burst, the first one rotating), so a slow patch
of this shared VM hits all of them alike. Around every request (every burst) the runner's, the
orchestrator's and the gateway's ``/metrics`` are read, and every process's CPU time from /proc.

nginx comes from the system (``apt-get install nginx``); without it the nginx rows are left out, with
the reason printed.

Usage::

    python benchmarks/gateway_path.py                # print the tables
    python benchmarks/gateway_path.py --write-docs   # also update docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import json
import os
import shlex
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import aiohttp

from _common import (
    DOCS,
    ROOT,
    Deadline,
    build_models,
    cpu_seconds,
    free_port,
    log_tail,
    machine_cpu_seconds,
    machine_info,
    met,
    nearest_rank,
    runner_args,
    sigterm_as_interrupt,
    start_runner,
    stop_runner,
    wait_idle,
    write_docs,
)

MODEL_ID = "lpnode/tiny-text-to-image"
SAFETY_ID = "lpnode/tiny-safety-checker"
PIPELINE = "text-to-image"
WORKER = "Livepeer-AI-Worker-1.0"
TARGET_FACTOR = 2.0  # lpnode's two hops may add at most twice what nginx's two hops add (p50)
TARGET_TEXT = "lpnode's two hops within 2× of nginx's added latency"
PNG_DATA_URL = "data:image/png;base64,"
UVICORN_KEEP_ALIVE = 3.0  # the runner and the gateway (uvicorn) close idle connections after 5 s; drop them first
MAX_FAILED = 0.3  # stop when more than this share of a mode's requests failed
START_MARK = "<!-- gateway_path:start -->"
END_MARK = "<!-- gateway_path:end -->"

# The paths, by key: what the tables call them.
DIRECT, LPNODE, NGINX, ORCH = "direct", "lpnode", "nginx", "orchestrator"
LABELS = {
    DIRECT: "direct",
    LPNODE: "lpnode: gateway → orchestrator",
    NGINX: "nginx → nginx",
    ORCH: "orchestrator alone (one hop)",
}


# -- what is measured -------------------------------------------------------------------------------


@dataclass
class Target:
    """Where a path's requests go, with which headers, and what kind of answer it must get."""

    key: str
    base_url: str
    headers: dict[str, str]
    tls: ssl.SSLContext | None
    answer: str  # "data": a PNG data URL; "url": a /stream/... URL on base_url
    hops: tuple[str, ...]  # the lpnode processes on the path, whose /metrics are read (besides the runner's)
    keep_alive: float
    session: aiohttp.ClientSession | None = None

    @property
    def name(self) -> str:
        return LABELS[self.key]

    def open(self, timeout: float) -> None:
        """One keep-alive session (a pool of connections, one per concurrent request) for this path."""
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=self.keep_alive, ssl=self.tls or True)
        self.session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout))

    async def post(self, payload: bytes) -> tuple[float, bytes, str]:
        """One job: (seconds from the send to the last byte of the answer, the answer, what went wrong: empty
        when the answer is a 200)."""
        assert self.session is not None
        t0 = time.perf_counter()
        try:
            url = f"{self.base_url}/{PIPELINE}"
            async with self.session.post(url, data=payload, headers=self.headers) as response:
                data = await response.read()
                latency = time.perf_counter() - t0
                if response.status != 200:
                    return latency, data, f"{response.status} {' '.join(data[:200].decode(errors='replace').split())}"
        except aiohttp.ClientError as exc:
            return time.perf_counter() - t0, b"", f"{type(exc).__name__}: {exc}"
        return latency, data, ""

    async def get(self, url: str) -> bytes:
        assert self.session is not None
        async with self.session.get(url) as response:
            data = await response.read()
            if response.status != 200:
                raise RuntimeError(f"{self.name}: GET {url} answered {response.status}: {data[:300]!r}")
            return data

    def image_url(self, answer: bytes) -> str:
        """The one image's URL, checked to be what this path must answer."""
        images = json.loads(answer)["images"]
        if len(images) != 1:
            raise RuntimeError(f"{self.name}: expected 1 image, got {len(images)}")
        url: str = images[0]["url"]
        if self.answer == "data" and not url.startswith(PNG_DATA_URL):
            raise RuntimeError(f"{self.name}: expected a PNG data URL, got {url[:60]!r}")
        if self.answer == "url" and not url.startswith(f"{self.base_url}/stream/"):
            raise RuntimeError(f"{self.name}: expected a {self.base_url}/stream/ URL, got {url[:80]!r}")
        return url

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


@dataclass
class Mode:
    target: Target
    concurrency: int
    latencies: list[float] = field(default_factory=list)  # seconds, one per request
    wall: float = 0.0  # seconds in this mode's timed blocks
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds by process group (runner, gateway, ...)
    metrics: dict[str, float] = field(default_factory=dict)  # deltas of the /metrics sums and counts
    outside: list[float] = field(default_factory=list)  # c=1: seconds of each request outside the runner's app
    errors: list[str] = field(default_factory=list)  # what each failed request got (not in the figures)

    @property
    def key(self) -> str:
        return self.target.key

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def requests(self) -> int:
        return len(self.latencies)

    def quantile(self, q: float) -> float:
        return nearest_rank(self.latencies, q)

    @property
    def throughput(self) -> float:
        return self.requests / self.wall

    def cpu_ms(self, process: str) -> float:
        """CPU time of ``process`` per request of this mode, in ms."""
        return self.cpu.get(process, 0.0) / self.requests * 1e3

    @property
    def mean_ms_client(self) -> float:
        return statistics.fmean(self.latencies) * 1e3

    def mean_ms(self, metric: str) -> float:
        return self.metrics.get(f"{metric}_sum", 0.0) / max(self.metrics.get(f"{metric}_count", 0.0), 1.0) * 1e3

    @property
    def outside_ms(self) -> float:
        """Mean ms a request spent outside the runner's app (its queue included): client minus runner app."""
        return self.mean_ms_client - self.mean_ms("runner_request")


# -- processes --------------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (an nginx master's workers), from /proc."""
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        pass
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                ppid = int(Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found.append(int(entry.name))
    return found


def gateway_asks_inline() -> bool:
    """Whether the gateway asks orchestrators for this pipeline's results inline (it leaves out
    ``Authorization: Livepeer-AI-Worker-1.0``, so the runner's data URL comes through) rather than as a file
    the orchestrator stores and the gateway then fetches."""
    from lpnode.gateway import forward

    inline: frozenset[str] = getattr(forward, "INLINE_RESULTS", frozenset())
    return PIPELINE in inline


def start_lpnode(command: str, args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """``python -m lpnode.cli COMMAND ARGS`` with one OpenMP thread and no network, logging to ``log_path``."""
    cmd = [sys.executable, "-m", "lpnode.cli", command, *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with log_path.open("wb") as log:
        # Own session: a Ctrl-C in the terminal reaches only this script, which then stops it.
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def get_json(url: str, tls: ssl.SSLContext | None = None) -> Any:
    with urllib.request.urlopen(url, timeout=2, context=tls) as response:
        return json.loads(response.read())


def wait_orchestrator(
    base_url: str, tls: ssl.SSLContext, proc: subprocess.Popen[bytes], log_path: Path, timeout: float
) -> None:
    """Until the orchestrator's ``/status`` shows the external runner IDLE or OK."""
    deadline = time.monotonic() + timeout
    seen = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"orchestrator exited with status {proc.returncode}:\n{log_tail(log_path)}")
        try:
            models = get_json(f"{base_url}/status", tls)["models"]
            states = [r["state"] for m in models for r in m["runners"]]
            seen = ",".join(states) or "no runner"
            if any(state in ("IDLE", "OK") for state in states):
                return
        except (OSError, ValueError, KeyError, TypeError):
            seen = "no answer"
        time.sleep(0.2)
    raise TimeoutError(f"orchestrator not ready after {timeout:.0f}s (runner states: {seen}):\n{log_tail(log_path)}")


def wait_gateway(
    admin_url: str, api_url: str, payload: bytes, proc: subprocess.Popen[bytes], log_path: Path, timeout: float
) -> None:
    """Until the gateway's admin ``/status`` shows its orchestrator ready and a job through it succeeds."""
    deadline = time.monotonic() + timeout
    seen = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with status {proc.returncode}:\n{log_tail(log_path)}")
        try:
            known = get_json(f"{admin_url}/status")["orchestrators"]
            seen = f"orchestrators: {known}"
            if known and all(o["ready"] for o in known):
                request = urllib.request.Request(
                    f"{api_url}/{PIPELINE}", data=payload, headers={"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(request, timeout=30) as response:
                    if response.status == 200:
                        return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            seen = f"{type(exc).__name__}: {exc}"
        time.sleep(0.3)
    raise TimeoutError(f"gateway not ready after {timeout:.0f}s ({seen}):\n{log_tail(log_path)}")


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL to the process group it leads (an nginx master and its workers)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


# -- nginx ------------------------------------------------------------------------------------------


def find_nginx() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def nginx_conf(prefix: Path, port: int, upstream_port: int, upstream_idle: float) -> str:
    """One reverse proxy on 127.0.0.1:``port`` to 127.0.0.1:``upstream_port``: HTTP/1.1 with a keep-alive pool
    to the upstream, buffering on (the default), no access log, every file in ``prefix``."""
    temp = "\n".join(f"    {kind}_temp_path {prefix}/{kind}_temp;" for kind in ("client_body", "proxy"))
    temp += "\n" + "\n".join(f"    {kind}_temp_path {prefix}/{kind}_temp;" for kind in ("fastcgi", "uwsgi", "scgi"))
    return f"""daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;

events {{
    worker_connections 1024;
}}

http {{
    access_log off;
{temp}
    proxy_max_temp_file_size 0;  # answers that outgrow the memory buffers go out as they come, never to disk
    client_max_body_size 100m;
    keepalive_requests 1000000;

    upstream next {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
        keepalive_timeout {upstream_idle:g}s;
        keepalive_requests 1000000;
    }}

    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://next;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def start_nginx(
    binary: str, prefix: Path, port: int, upstream_port: int, upstream_idle: float
) -> subprocess.Popen[bytes]:
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_conf(prefix, port, upstream_port, upstream_idle))
    cmd = [binary, "-p", f"{prefix}/", "-c", str(conf), "-e", str(prefix / "error.log")]
    with (prefix / "stderr.log").open("wb") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_http(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    problem = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode}: {log_tail(log_path, 5)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError as exc:
            problem = str(exc)
        time.sleep(0.1)
    raise TimeoutError(f"{url} not answering after {timeout:.0f}s ({problem}): {log_tail(log_path, 5)}")


# -- the run ----------------------------------------------------------------------------------------


class Probe:
    """Reads the processes' CPU time and /metrics sums around requests, and credits the deltas to a mode."""

    METRICS: ClassVar[dict[str, str]] = {
        "lpnode_runner_request_duration_seconds": "runner_request",
        "lpnode_runner_job_duration_seconds": "runner_job",
        "lpnode_runner_queue_wait_seconds": "runner_queue",
        "lpnode_orchestrator_job_duration_seconds": "orchestrator_job",
        "lpnode_gateway_request_duration_seconds": "gateway_request",
    }
    COUNTS: ClassVar[dict[str, str]] = {
        "runner": "runner_request_count",
        "orchestrator": "orchestrator_job_count",
        "gateway": "gateway_request_count",
    }

    def __init__(self, pids: dict[str, list[int]], urls: dict[str, str], tls: dict[str, ssl.SSLContext | None]) -> None:
        self.pids = pids  # process group name -> pids ("runner", "gateway", "orchestrator", "nginx")
        self.urls = urls  # lpnode process name -> base URL of its /metrics
        self.sessions = {
            name: aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(keepalive_timeout=UVICORN_KEEP_ALIVE, ssl=tls.get(name) or True),
                timeout=aiohttp.ClientTimeout(total=10),
            )
            for name in urls
        }

    def cpu(self) -> dict[str, float]:
        out = {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in self.pids.items()}
        out["client"] = time.process_time()
        return out

    async def metrics(self, name: str) -> dict[str, float]:
        async with self.sessions[name].get(self.urls[name] + "/metrics") as response:
            text = await response.text()
        out: dict[str, float] = {}
        for line in text.splitlines():
            metric, _, rest = line.partition("{")
            for suffix in ("_sum", "_count"):
                key = self.METRICS.get(metric.removesuffix(suffix)) if metric.endswith(suffix) else None
                if key is None or (key == "runner_request" and f'route="/{PIPELINE}"' not in rest):
                    continue
                out[key + suffix] = out.get(key + suffix, 0.0) + float(line.rsplit(" ", 1)[1])
        return out

    async def all_metrics(self, mode: Mode) -> dict[str, float]:
        """The runner's sums, and those of the lpnode processes ``mode`` goes through."""
        out: dict[str, float] = {}
        for name in ("runner", *mode.target.hops):
            out |= await self.metrics(name)
        return out

    async def credit(
        self, mode: Mode, before: dict[str, float], cpu: dict[str, float], expect: int
    ) -> dict[str, float]:
        """Add to ``mode`` the CPU used since ``cpu`` and the /metrics deltas since ``before``, and return
        those deltas. A request is counted when its answer is sent (the runner's just after), so wait
        (briefly) for ``expect`` more."""
        spent = self.cpu()
        for name, value in spent.items():
            mode.cpu[name] = mode.cpu.get(name, 0.0) + value - cpu[name]
        keys = [self.COUNTS[name] for name in ("runner", *mode.target.hops)]
        after = await self.all_metrics(mode)
        for _ in range(50):
            if all(after.get(key, 0.0) - before.get(key, 0.0) >= expect for key in keys):
                break
            await asyncio.sleep(0.01)
            after = await self.all_metrics(mode)
        deltas = {name: value - before.get(name, 0.0) for name, value in after.items()}
        for name, value in deltas.items():
            mode.metrics[name] = mode.metrics.get(name, 0.0) + value
        return deltas

    async def close(self) -> None:
        for session in self.sessions.values():
            await session.close()


@dataclass
class Outcome:
    modes: list[Mode]
    concurrencies: list[int]
    pairs: dict[str, list[float]]  # path key -> (path - direct) latency of each c=1 cycle
    fetch: dict[str, list[float]]  # path key -> seconds to GET the stored PNG its c=1 answer points to
    same_image: bool
    other_cpus: float  # CPUs other processes kept busy during the timed rounds (shared VM)
    steal_cpus: float
    nginx_skipped: str  # why there are no nginx rows; empty when there are

    def mode(self, key: str, concurrency: int) -> Mode | None:
        for m in self.modes:
            if m.key == key and m.concurrency == concurrency:
                return m
        return None


async def run(args: argparse.Namespace, targets: list[Target], probe: Probe, payload: bytes) -> Outcome:
    concurrencies: list[int] = args.concurrency
    singles = [Mode(t, 1) for t in targets]
    bursts = {c: [Mode(t, c) for t in targets if t.key != ORCH] for c in concurrencies}
    pairs: dict[str, list[float]] = {m.key: [] for m in singles[1:]}
    fetch: dict[str, list[float]] = {t.key: [] for t in targets if t.answer == "url"}
    images: dict[str, bytes] = {}
    deadline = Deadline(args.budget)
    # Failed requests are counted, reported and left out of the figures, up to a share of a mode's requests.
    planned = {1: args.requests, **{c: c * args.rounds for c in concurrencies}}

    for target in targets:
        target.open(args.timeout)

    async def checked(target: Target, answer: bytes, timed: bool) -> None:
        """Decode the answer outside the timed part; fetch a stored result as the caller would."""
        url = target.image_url(answer)
        if target.answer == "url":
            t0 = time.perf_counter()
            png = await target.get(url)
            if timed:
                fetch[target.key].append(time.perf_counter() - t0)
        else:
            png = base64.b64decode(url[len(PNG_DATA_URL) :])
        if not png.startswith(b"\x89PNG"):
            raise RuntimeError(f"{target.name}: the image is not a PNG")
        images.setdefault(target.key, png)
        if png != images[target.key]:
            raise RuntimeError(f"{target.name}: a different image for the same request and seed")

    def failed(mode: Mode, problem: str) -> None:
        """Count a failed request; stop when failures are no longer the exception."""
        mode.errors.append(problem)
        print(f"  {mode.name}, c={mode.concurrency}: a request failed: {problem}", flush=True)
        if len(mode.errors) > max(5, planned[mode.concurrency] * MAX_FAILED):
            raise RuntimeError(f"{mode.name}, c={mode.concurrency}: {len(mode.errors)} requests failed: {problem}")

    async def one(mode: Mode, timed: bool) -> float | None:
        """One c=1 request, with the CPU time and /metrics around it credited to ``mode``; its latency, or
        None when it failed."""
        deadline.check(mode.name)
        before = await probe.all_metrics(mode)
        cpu = probe.cpu()
        latency, answer, problem = await mode.target.post(payload)
        if problem:  # neither its CPU time nor its /metrics go to the mode
            failed(mode, problem)
            return None
        deltas = await probe.credit(mode, before, cpu, 1)
        mode.latencies.append(latency)
        if deltas.get("runner_request_count") == 1:
            mode.outside.append(latency - deltas["runner_request_sum"])
        mode.wall += latency
        await checked(mode.target, answer, timed)
        return latency

    async def burst(mode: Mode) -> None:
        """``mode.concurrency`` requests at once (the path's session opens a connection for each)."""
        deadline.check(mode.name)
        before = await probe.all_metrics(mode)
        cpu = probe.cpu()
        started = time.perf_counter()
        async with asyncio.timeout(min(args.timeout * 2, max(1.0, deadline.left()))):
            done = await asyncio.gather(*(mode.target.post(payload) for _ in range(mode.concurrency)))
        wall = time.perf_counter() - started
        await probe.credit(mode, before, cpu, sum(not problem for _, _, problem in done))
        mode.wall += wall
        for latency, answer, problem in done:
            if problem:
                failed(mode, problem)
                continue
            mode.latencies.append(latency)
            await checked(mode.target, answer, timed=False)

    async def a_round(modes: list[Mode], conc: dict[int, list[Mode]], cycles: int, turn: int, keep: bool) -> None:
        for _ in range(cycles):
            base = await one(modes[0], keep)
            for mode in modes[1:]:
                latency = await one(mode, keep)
                if keep and latency is not None and base is not None:
                    pairs[mode.key].append(latency - base)
        for group in conc.values():
            for k in range(len(group)):
                await burst(group[(turn + k) % len(group)])

    if args.warmup:
        sizes_text = ", ".join(str(c) for c in concurrencies)
        print(f"warm-up: {args.warmup} requests per c=1 mode, one burst per concurrent mode (c={sizes_text}) ...")
        scratch = [Mode(m.target, 1) for m in singles]
        scratch_bursts = {c: [Mode(m.target, c) for m in group] for c, group in bursts.items()}
        await a_round(scratch, scratch_bursts, args.warmup, 0, keep=False)

    sizes = [args.requests // args.rounds + (i < args.requests % args.rounds) for i in range(args.rounds)]
    busy, steal = machine_cpu_seconds()
    own = sum(probe.cpu().values())
    started = time.monotonic()
    for i, n in enumerate(sizes):
        print(f"round {i + 1}/{len(sizes)}: {n} requests per c=1 mode, one burst per concurrent mode ...", flush=True)
        await a_round(singles, bursts, n, i, keep=True)
    elapsed = time.monotonic() - started
    busy_end, steal_end = machine_cpu_seconds()
    others = max(0.0, (busy_end - busy - (sum(probe.cpu().values()) - own)) / elapsed)
    same = len(set(images.values())) == 1
    ordered = [m for m in singles if m.key != ORCH]
    for c in concurrencies:
        ordered += bursts[c]
    ordered += [m for m in singles if m.key == ORCH]
    return Outcome(
        ordered, [1, *concurrencies], pairs, fetch, same, others, (steal_end - steal) / elapsed, args.nginx_skipped
    )


def measure(args: argparse.Namespace, models_dir: Path, tmp: Path) -> Outcome:
    """Start the runner, the orchestrator, the gateway and nginx, run the rounds, always stop every process."""
    import uvloop

    from lpnode.gateway.orch_client import OrchestratorClient
    from lpnode.protocol.job_hop import encode_segment as segment_header

    args.inline = gateway_asks_inline()

    body = {
        "model_id": MODEL_ID,
        "prompt": "a lighthouse on a cliff at dusk",
        "width": args.size,
        "height": args.size,
        "num_inference_steps": args.steps,
        "seed": 1,
    }
    payload = json.dumps(body).encode()
    json_headers = {"Content-Type": "application/json"}
    runner_port, orch_port, api_port, admin_port = free_port(), free_port(), free_port(), free_port()
    runner_url, orch_url = f"http://127.0.0.1:{runner_port}", f"https://127.0.0.1:{orch_port}"
    api_url, admin_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{admin_port}"
    ai_models = tmp / "aiModels.json"
    entry = {"pipeline": PIPELINE, "model_id": MODEL_ID, "url": runner_url, "capacity": max(args.concurrency)}
    ai_models.write_text(json.dumps([entry]))
    logs = {"runner": tmp / "runner.log", "orchestrator": tmp / "orchestrator.log", "gateway": tmp / "gateway.log"}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    nginx_procs: list[subprocess.Popen[bytes]] = []
    loop_runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    try:
        procs["runner"] = start_runner(runner_args(models_dir, runner_port, args.max_queue), logs["runner"])
        orch_data = tmp / "orchestrator"
        orch_args = ["--ai-models", str(ai_models), "--models-dir", str(models_dir), "--data-dir", str(orch_data)]
        orch_args += ["--service-addr", f"127.0.0.1:{orch_port}", "--exit-with-parent"]
        procs["orchestrator"] = start_lpnode("orchestrator", orch_args, logs["orchestrator"])
        wait_idle(runner_port, procs["runner"], logs["runner"], timeout=180)
        print(f"runner IDLE on {runner_url} (pid {procs['runner'].pid})", flush=True)
        cert = orch_data / "tls" / "cert.pem"  # made at start, before the orchestrator serves
        waited = time.monotonic() + 60
        while not cert.exists() and time.monotonic() < waited and procs["orchestrator"].poll() is None:
            time.sleep(0.1)
        if not cert.exists():
            raise RuntimeError(f"the orchestrator made no certificate at {cert}:\n{log_tail(logs['orchestrator'])}")
        tls = ssl.create_default_context(cafile=str(cert))
        wait_orchestrator(orch_url, tls, procs["orchestrator"], logs["orchestrator"], timeout=120)
        print(f"orchestrator ready on {orch_url} (pid {procs['orchestrator'].pid})", flush=True)
        gateway_args = ["--orch-addr", f"127.0.0.1:{orch_port}", "--http-addr", f"127.0.0.1:{api_port}"]
        gateway_args += ["--cli-addr", f"127.0.0.1:{admin_port}", "--data-dir", str(tmp / "gateway")]
        procs["gateway"] = start_lpnode("gateway", gateway_args, logs["gateway"])
        wait_gateway(admin_url, api_url, payload, procs["gateway"], logs["gateway"], timeout=90)
        print(f"gateway ready on {api_url} (pid {procs['gateway'].pid})", flush=True)

        pids = {name: [proc.pid] for name, proc in procs.items()}
        nginx_url = ""
        binary = find_nginx()
        if binary is None:
            args.nginx_skipped = "nginx is not installed (`apt-get install nginx`)"
        else:
            b_port, a_port = free_port(), free_port()
            try:
                # B in front of the runner first, then A in front of B; the runner (uvicorn) drops idle
                # connections after 5 s, so B drops them first; B keeps its clients' for 75 s (its default).
                nginx_procs.append(start_nginx(binary, tmp / "nginx-b", b_port, runner_port, UVICORN_KEEP_ALIVE))
                wait_http(f"http://127.0.0.1:{b_port}/health", nginx_procs[-1], tmp / "nginx-b" / "error.log", 20)
                nginx_procs.append(start_nginx(binary, tmp / "nginx-a", a_port, b_port, 60.0))
                wait_http(f"http://127.0.0.1:{a_port}/health", nginx_procs[-1], tmp / "nginx-a" / "error.log", 20)
            except (OSError, RuntimeError, TimeoutError) as exc:
                args.nginx_skipped = f"nginx did not start: {exc}"
            else:
                nginx_url = f"http://127.0.0.1:{a_port}"
                pids["nginx"] = [pid for proc in nginx_procs for pid in (proc.pid, *children(proc.pid))]
                version = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)
                args.nginx_version = (version.stderr or version.stdout).strip().removeprefix("nginx version: ")
                print(f"nginx chain ready on {nginx_url} (pids {pids['nginx']})", flush=True)
        if args.nginx_skipped:
            print(f"skipping the nginx rows: {args.nginx_skipped}", flush=True)

        async def main() -> Outcome:
            client = OrchestratorClient()
            try:
                info = await client.get_info(orch_url)
            finally:
                await client.close()
            # What the gateway sends (its choice of inline results included), straight to the orchestrator.
            orch_headers = {
                **json_headers,
                "Livepeer-Segment": segment_header(info.auth_token, PIPELINE, MODEL_ID),
                "Livepeer-Payment": "",
                **({} if args.inline else {"Authorization": WORKER}),
                "Lpnode-Timeout": f"{args.timeout:.3f}",
            }
            targets = [
                Target(DIRECT, runner_url, json_headers, None, "data", (), UVICORN_KEEP_ALIVE),
                Target(LPNODE, api_url, json_headers, None, "url", ("gateway", "orchestrator"), UVICORN_KEEP_ALIVE),
            ]
            if nginx_url:
                targets.append(Target(NGINX, nginx_url, json_headers, None, "data", (), 60.0))
            orch_answer = "data" if args.inline else "url"
            targets.append(Target(ORCH, orch_url, orch_headers, tls, orch_answer, ("orchestrator",), 60.0))
            urls = {"runner": runner_url, "orchestrator": orch_url, "gateway": api_url}
            probe = Probe(pids, urls, {"orchestrator": tls})
            try:
                return await run(args, targets, probe, payload)
            finally:
                for target in targets:
                    await target.close()
                await probe.close()

        outcome = loop_runner.run(main())
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited during the run:\n{log_tail(logs[name])}")
        return outcome
    finally:
        loop_runner.close()
        for proc in nginx_procs:
            stop_group(proc)
        for name in ("gateway", "orchestrator", "runner"):  # each before the one it relays to
            if name in procs:
                stop_runner(procs[name])


# -- reporting --------------------------------------------------------------------------------------


def dash(value: float | None, fmt: str = "{:.1f}") -> str:
    return "–" if value is None else fmt.format(value)


def table(out: Outcome) -> str:
    rows = [
        "| path | c | requests | failed | p50 (ms) | p99 (ms) | throughput (req/s) | CPU ms/req: runner | gateway "
        "| orchestrator | nginx (both) | client |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in out.modes:
        gateway = m.cpu_ms("gateway") if "gateway" in m.target.hops else None
        orch = m.cpu_ms("orchestrator") if "orchestrator" in m.target.hops else None
        nginx = m.cpu_ms("nginx") if m.key == NGINX else None
        rows.append(
            f"| {m.name} | {m.concurrency} | {m.requests} | {len(m.errors)} | {m.quantile(0.5) * 1e3:.1f} | "
            f"{m.quantile(0.99) * 1e3:.1f} | {m.throughput:.2f} | {m.cpu_ms('runner'):.1f} | {dash(gateway)} "
            f"| {dash(orch)} | {dash(nginx)} | {m.cpu_ms('client'):.1f} |"
        )
    return "\n".join(rows)


@dataclass
class Added:
    """What one path adds over the direct one at one concurrency."""

    p50_ms: float
    p99_ms: float
    outside_ms: float  # mean time outside the runner's app (its queue included), path minus direct
    throughput_ratio: float


def added(direct: Mode, path: Mode) -> Added:
    return Added(
        (path.quantile(0.5) - direct.quantile(0.5)) * 1e3,
        (path.quantile(0.99) - direct.quantile(0.99)) * 1e3,
        path.outside_ms - direct.outside_ms,
        path.throughput / direct.throughput,
    )


def ratio_text(lpnode_ms: float, nginx_ms: float) -> str:
    return f"{lpnode_ms / nginx_ms:.1f}×" if nginx_ms > 0 else "n/a (nginx ≤ 0)"


def within_target(lpnode_ms: float, nginx_ms: float) -> bool:
    """lpnode adds at most ``TARGET_FACTOR`` times what nginx adds; when nginx's figure came out negative
    (nginx cannot make a request faster: the run's noise did), the floor is 0."""
    return lpnode_ms <= TARGET_FACTOR * max(nginx_ms, 0.0)


def comparison(out: Outcome) -> list[str]:
    rows = [
        "| c | lpnode added p50 (ms) | lpnode added p99 (ms) | nginx added p50 (ms) | nginx added p99 (ms) | "
        "lpnode / nginx, added p50 | added outside the runner app, mean: lpnode (ms) | nginx (ms) | "
        "throughput vs direct: lpnode | nginx | target (on the p50) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in out.concurrencies:
        direct, lp, ng = out.mode(DIRECT, c), out.mode(LPNODE, c), out.mode(NGINX, c)
        assert direct is not None and lp is not None
        a = added(direct, lp)
        if ng is None:
            rows.append(
                f"| {c} | {a.p50_ms:+.1f} | {a.p99_ms:+.1f} | – | – | – | {a.outside_ms:+.1f} | – | "
                f"{a.throughput_ratio:.3f} | – | – |"
            )
            continue
        n = added(direct, ng)
        rows.append(
            f"| {c} | {a.p50_ms:+.1f} | {a.p99_ms:+.1f} | {n.p50_ms:+.1f} | {n.p99_ms:+.1f} | "
            f"{ratio_text(a.p50_ms, n.p50_ms)} | {a.outside_ms:+.1f} | {n.outside_ms:+.1f} | "
            f"{a.throughput_ratio:.3f} | {n.throughput_ratio:.3f} | {met(within_target(a.p50_ms, n.p50_ms))} |"
        )
    return rows


def verdict_line(out: Outcome) -> str:
    if out.nginx_skipped:
        return f'Target "{TARGET_TEXT}": not judged, no nginx rows ({out.nginx_skipped}).'
    parts = []
    for c in out.concurrencies:
        direct, lp, ng = out.mode(DIRECT, c), out.mode(LPNODE, c), out.mode(NGINX, c)
        assert direct is not None and lp is not None and ng is not None
        a, n = added(direct, lp), added(direct, ng)
        parts.append(
            f"at c={c} {met(within_target(a.p50_ms, n.p50_ms))} ({a.p50_ms:+.1f} ms against {n.p50_ms:+.1f} ms: "
            f"{ratio_text(a.p50_ms, n.p50_ms)})"
        )
    return f'Target "{TARGET_TEXT}" (added p50 ≤ {TARGET_FACTOR:g} × nginx\'s): ' + ", ".join(parts) + "."


def outside_verdict_line(out: Outcome) -> str:
    """The same target on the added time outside the runner's app, which the model's speed does not move."""
    if out.nginx_skipped:
        return ""
    parts = []
    for c in out.concurrencies:
        direct, lp, ng = out.mode(DIRECT, c), out.mode(LPNODE, c), out.mode(NGINX, c)
        assert direct is not None and lp is not None and ng is not None
        a, n = added(direct, lp), added(direct, ng)
        parts.append(
            f"at c={c} {met(within_target(a.outside_ms, n.outside_ms))} ({a.outside_ms:+.1f} ms against "
            f"{n.outside_ms:+.1f} ms: {ratio_text(a.outside_ms, n.outside_ms)})"
        )
    return "The same target on the mean added time outside the runner's app: " + ", ".join(parts) + "."


def steady_lines(out: Outcome) -> list[str]:
    """The c=1 figures least moved by how fast the model happened to run."""
    lines = []
    pairs = {key: pair_median_ms(out, key) for key in (LPNODE, NGINX, ORCH)}
    text = ", ".join(f"{LABELS[k]} {dash(v, '{:+.1f}')} ms" for k, v in pairs.items() if v is not None)
    lines.append(f"- c=1, request by request (median over the {len(out.pairs[LPNODE])} side-by-side cycles): {text}")
    direct = out.mode(DIRECT, 1)
    assert direct is not None
    if direct.outside:
        base = statistics.median(direct.outside) * 1e3
        net = net_ms(out)
        text = ", ".join(f"{LABELS[k]} **{v:+.2f} ms**" for k, v in net.items())
        line = (
            "- c=1, net of how fast the model ran (each request's client latency minus the runner app's own "
            f"duration, median, path − direct; direct: {base:.2f} ms outside the app): {text}"
        )
        if LPNODE in net and NGINX in net:
            ok = within_target(net[LPNODE], net[NGINX])
            line += f"; lpnode / nginx {ratio_text(net[LPNODE], net[NGINX])}, target on this measure {met(ok)}"
        lines.append(line)
    return lines


def net_ms(out: Outcome) -> dict[str, float]:
    """Per path, at c=1: the median time a request spent outside the runner's app, minus the direct one's."""
    direct = out.mode(DIRECT, 1)
    if direct is None or not direct.outside:
        return {}
    base = statistics.median(direct.outside) * 1e3
    net = {}
    for key in (LPNODE, NGINX, ORCH):
        m = out.mode(key, 1)
        if m is not None and m.outside:
            net[key] = statistics.median(m.outside) * 1e3 - base
    return net


def pair_median_ms(out: Outcome, key: str) -> float | None:
    values = out.pairs.get(key)
    return statistics.median(values) * 1e3 if values else None


def breakdown(out: Outcome) -> list[str]:
    """One row per c=1 path: the client's mean latency split at the runner's app, the orchestrator's job and
    the gateway's request (each process's own /metrics), and what it adds over the direct path."""
    direct = out.mode(DIRECT, 1)
    assert direct is not None
    rows = [
        "| path (c=1) | client (ms) | runner app (ms) | orchestrator around the runner call (ms) | gateway around "
        "the orchestrator call (ms) | outside the first handler (ms) | added vs direct, mean (ms) | added, median "
        "of pairs (ms) | CPU ms/req of the hops |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in (m for m in out.modes if m.concurrency == 1):
        client, app = m.mean_ms_client, m.mean_ms("runner_request")
        orch = m.mean_ms("orchestrator_job") if "orchestrator" in m.target.hops else None
        gateway = m.mean_ms("gateway_request") if "gateway" in m.target.hops else None
        first = gateway if gateway is not None else orch if orch is not None else app
        hops_cpu = sum(m.cpu_ms(h) for h in m.target.hops) if m.target.hops else None
        if m.key == NGINX:
            hops_cpu = m.cpu_ms("nginx")
        rows.append(
            f"| {m.name} | {client:.1f} | {app:.1f} | {dash(None if orch is None else orch - app)} | "
            f"{dash(None if gateway is None or orch is None else gateway - orch)} | {client - first:.1f} | "
            f"{dash(None if m is direct else client - direct.mean_ms_client, '{:+.1f}')} | "
            f"{dash(pair_median_ms(out, m.key), '{:+.1f}')} | {dash(hops_cpu)} |"
        )
    return rows


def report_lines(out: Outcome) -> list[str]:
    lines = ["Added over direct, per concurrency (p50 and p99 of the client's latency; throughput ratio):", ""]
    lines += [*comparison(out), "", verdict_line(out), ""]
    if not out.nginx_skipped:
        lines += [outside_verdict_line(out), ""]
    lines += [*steady_lines(out), ""]
    lines += [
        "Where the time goes at c=1 (means over the same requests, from the client and from each process's "
        "`/metrics`: the runner app's request duration, the orchestrator's job duration, the gateway's request "
        "duration):",
        "",
        *breakdown(out),
        "",
    ]
    if out.fetch.get(ORCH):
        lines.append(
            f"- a GET of a PNG the orchestrator stored (its `/stream/...` URL, over TLS), from this client: p50 "
            f"{nearest_rank(out.fetch[ORCH], 0.5) * 1e3:.1f} ms; the gateway makes such a GET inside every job "
            "(to re-host the result)"
        )
    if out.fetch.get(LPNODE):
        lines.append(
            f"- fetching the PNG from the gateway's `/stream/...` URL, as its caller does next: p50 "
            f"{nearest_rank(out.fetch[LPNODE], 0.5) * 1e3:.1f} ms (not in the figures above)"
        )
    for c in out.concurrencies[1:]:
        parts = []
        for key in (DIRECT, LPNODE, NGINX):
            m = out.mode(key, c)
            if m is not None:
                parts.append(
                    f"{key} {m.mean_ms('runner_queue'):.0f} ms wait in the runner's queue, "
                    f"{m.mean_ms('runner_job'):.1f} ms model time per job"
                )
        lines.append(f"- c={c}: " + "; ".join(parts))
    lines += [
        f"- the machine is shared: during the timed rounds other processes kept about {out.other_cpus:.1f} of "
        f"its {os.cpu_count() or 1} CPUs busy on average, and the hypervisor stole about {out.steal_cpus:.1f}.",
        f"- the same PNG on every path (same seed): {'yes' if out.same_image else 'no'}",
    ]
    for m in out.modes:
        if m.errors:
            seen = sorted(set(m.errors), key=m.errors.index)
            lines.append(
                f"- failed requests, left out of the figures: {m.name} at c={m.concurrency}: {len(m.errors)} "
                f"({'; '.join(f'`{e}`' for e in seen[:3])})"
            )
    if out.nginx_skipped:
        lines.append(f"- no nginx rows: {out.nginx_skipped}")
    return lines


def inline_reading(out: Outcome) -> list[str]:
    """What the gateway's hop does and costs when it asks for image results inline."""
    fetch = nearest_rank(out.fetch[LPNODE], 0.5) * 1e3 if out.fetch.get(LPNODE) else None
    return [
        "- **The gateway's hop does more than relay**: it asks the orchestrator for the result inline (the "
        "orchestrator passes the runner's answer through), then stores the PNG itself (decoding the data URL "
        "and writing the file, on its event loop for small results) and rewrites the answer to its own "
        "`/stream/...` URL, so its caller gets a URL, not the PNG (fetching it is one more request: "
        f"p50 {dash(fetch, '{:.1f} ms')} from the gateway, the fetch line above). nginx passes the runner's "
        "answer, PNG inline, through unchanged.",
        "- **Profile** of the gateway (cProfile with a per-thread CPU clock on its event-loop thread, 300 jobs "
        "one at a time, start-up subtracted; the profiler inflates call-heavy code, so read the shares): "
        "aiohttp's client (the job to the orchestrator) about 17%; storing the PNG (base64 decoding, creating "
        "the request's directory, writing the file) about 15%; the event loop (uvloop's C code: polling, socket "
        "and TLS record I/O) about 14%; uvicorn and Starlette about 13%; the per-job log line, usage record "
        "and metrics about 10%; reading and checking the body about 4%; the rest is spread thin (the gateway's "
        "choice of orchestrator and its `Livepeer-Segment` header, asyncio's tasks, JSON). In the orchestrator's "
        "profile over the same jobs, hypercorn and h11 take about a quarter and aiohttp's client to the runner "
        "about a sixth. There is no single hot spot: the cost is the "
        "number of Python-level steps a job takes through two servers and two HTTP clients, plus storing the "
        "result, where nginx's two hops together take an order of magnitude less CPU (the table).",
    ]


def fetched_reading(out: Outcome, fetch: float | None) -> list[str]:
    """What the gateway's hop does and costs when it fetches each result the orchestrator stored."""
    lp1, or1 = out.mode(LPNODE, 1), out.mode(ORCH, 1)
    assert lp1 is not None
    alone = dash(or1.cpu_ms("orchestrator") if or1 is not None else None, "{:.1f} ms")
    return [
        "- **The gateway's hop does more than relay**: the orchestrator answers a URL to the PNG it stored, "
        "and inside every job the gateway GETs that file from the orchestrator (a second HTTPS exchange; "
        f"the same GET from this client: p50 {dash(fetch, '{:.1f} ms')}), stores it again and rewrites the "
        "answer to its own URL. Serving that GET is why the orchestrator's CPU a job is higher behind the "
        f"gateway than alone ({lp1.cpu_ms('orchestrator'):.1f} ms against {alone}): hypercorn and h11 for one "
        "more request, and Starlette's file response, whose file I/O hops to worker threads. nginx passes the "
        "runner's answer, PNG inline, through once. So the two paths do not do the same work: lpnode's makes a "
        "second request per job and writes the PNG to disk twice, and its caller gets a URL, not the PNG "
        "(fetching it is one more request: the fetch line above).",
        "- **Profile** of the gateway (cProfile with a per-thread CPU clock on its event-loop thread, 300 jobs "
        "one at a time, start-up subtracted; the profiler inflates call-heavy code, so read the shares): "
        "aiohttp's client (the job to the orchestrator and the GET of the stored PNG) about 29%; the event loop "
        "(uvloop's C code: polling, socket and TLS record I/O) about 14%; other C builtins about 13%; uvicorn "
        "and Starlette about 12%; asyncio's Python parts (tasks, the thread hop that stores the file) about 8%; "
        "the gateway's own code about 10%; the per-job log line and metrics about 5%. In the orchestrator's "
        "profile over the same jobs, the anyio worker-thread hops of the file response's I/O alone are about "
        "11%. There is no single hot spot: the cost is the number of Python-level steps a job takes through two "
        "servers, two HTTP clients and the re-hosting, where nginx's two hops together take an order of "
        "magnitude less CPU (the table).",
    ]


def reading(args: argparse.Namespace, out: Outcome) -> list[str]:
    """How to read the figures: the run's own numbers, and a profile and failures seen in other runs."""
    d1, lp1, ng1, or1 = (out.mode(key, 1) for key in (DIRECT, LPNODE, NGINX, ORCH))
    assert d1 is not None and lp1 is not None
    top = out.concurrencies[-1]
    d_top, lp_top = out.mode(DIRECT, top), out.mode(LPNODE, top)
    assert d_top is not None and lp_top is not None

    def ms(value: float | None) -> str:
        return dash(value, "{:.1f} ms")

    lp_cpu = lp1.cpu_ms("gateway") + lp1.cpu_ms("orchestrator")
    or_cpu = or1.cpu_ms("orchestrator") if or1 is not None else None
    ng_cpu = ng1.cpu_ms("nginx") if ng1 is not None else None
    fetch = nearest_rank(out.fetch[ORCH], 0.5) * 1e3 if out.fetch.get(ORCH) else None
    net = net_ms(out)
    return [
        "Reading (the profile and the failures described here come from other runs of this script and of the "
        "gateway and the orchestrator under cProfile, not from the run above):",
        "",
        "- **c=1**: one request at a time, so all the work each hop does for a job is on that job's path. "
        f"lpnode's two hops took {ms(lp_cpu)} of CPU a job (gateway {ms(lp1.cpu_ms('gateway'))}, orchestrator "
        f"{ms(lp1.cpu_ms('orchestrator'))}), nginx's two {ms(ng_cpu)}, and the added latency follows: request by "
        f"request, lpnode added {ms(pair_median_ms(out, LPNODE))} and nginx {ms(pair_median_ms(out, NGINX))}. "
        f"The orchestrator alone added {ms(pair_median_ms(out, ORCH))} (at {ms(or_cpu)} of CPU a job); the "
        "gateway's hop is the rest.",
        *(inline_reading(out) if args.inline else fetched_reading(out, fetch)),
        f"- **c={', '.join(str(c) for c in out.concurrencies[1:])}**: the runner runs one job at a time and "
        "the rest wait in its queue, so latency is mostly queueing, and a hop's cost reaches the latency "
        "through throughput: its CPU competes with the model's for the 2 cores, and what is lost per job is "
        "paid again for every job queued ahead. How much is lost varies between runs: here the model's own "
        f"time per job at c={top} (runner `/metrics`) was {d_top.mean_ms('runner_job'):.1f} ms direct and "
        f"{lp_top.mean_ms('runner_job'):.1f} ms through lpnode; across runs lpnode's throughput at c=16 and 64 "
        "has come out about 0.88-1.03 of the direct one, nginx's about 0.93-1.07. The *outside the "
        "runner app* columns count each request's time before and after the runner's app, including waiting in "
        "the gateway and the orchestrator while they work through a burst; that time would otherwise have been "
        "spent in the runner's queue, so it overstates the latency added at high concurrency and is shown to "
        "place the cost, not to replace the p50.",
        "- **Noise**: how fast the model runs moves from request to request and from burst to burst by more "
        "than nginx adds, so between runs nginx's added p50 and p99 come out a few ms either way at c=1 and tens "
        "to hundreds of ms either way at c=16 and 64; a p50 verdict on nginx's figure then follows that noise, "
        "in both directions. The steadiest comparison is the c=1 one net of the model's speed (each request's "
        f"latency minus the runner app's own duration): here nginx's two hops came to {ms(net.get(NGINX))} and "
        f"lpnode's to {ms(net.get(LPNODE))}, and nginx's has stayed well under 1 ms across runs on a quiet "
        "machine.",
        "- **Failed requests**: in some runs a job through the orchestrator failed with a 500 `the text-to-image "
        "runner ... failed: Can not write request body`: the orchestrator sent it on a pooled keep-alive "
        "connection the runner was closing (the runner's uvicorn closes idle connections after 5 s, the "
        "orchestrator's aiohttp pool keeps them for 15 s; the bursts here leave connections idle about that "
        "long). The gateway then suspends its only orchestrator for 10 s, and its requests in those 10 s get "
        "503 `no orchestrator could serve ...`. Failed requests are counted in the *failed* column and left out "
        "of the figures.",
        "",
    ]


def docs_section(command: str, machine: dict[str, str], args: argparse.Namespace, out: Outcome) -> str:
    today = dt.datetime.now(dt.UTC).date().isoformat()
    conc = ", ".join(str(c) for c in out.concurrencies[:-1]) + f" and {out.concurrencies[-1]}"
    top = max(args.concurrency)
    nginx_text = f"nginx {args.nginx_version.removeprefix('nginx/')}" if args.nginx_version else "nginx"
    return "\n".join(
        [
            START_MARK,
            "## Gateway path: two lpnode hops against two nginx hops",
            "",
            "`benchmarks/gateway_path.py` sends the same tiny text-to-image request "
            f"({args.size}x{args.size}, {args.steps} steps, safety check on, fixed seed) straight to an "
            "`lpnode runner`, through `lpnode gateway` → `lpnode orchestrator` → that runner, and through a "
            f"chain of two nginx reverse proxies → that runner, in the same run, at concurrency {conc}.",
            "",
            f"- **runner**: one `lpnode runner` (`{MODEL_ID}`, `--threads 1`, `OMP_NUM_THREADS=1`, "
            f"`--max-in-flight 1 --max-queue {args.max_queue}`, so {top} concurrent requests wait in its queue).",
            "- **orchestrator**: one `lpnode orchestrator` with the operator's defaults (TLS on `--service-addr "
            "127.0.0.1:PORT`), aiModels.json holding one external entry "
            f'`{{"pipeline": "{PIPELINE}", "model_id": "{MODEL_ID}", "url": "http://127.0.0.1:<runner port>", '
            f'"capacity": {top}}}`.',
            "- **gateway**: one `lpnode gateway --orch-addr 127.0.0.1:<orchestrator port> --http-addr "
            "127.0.0.1:P --cli-addr 127.0.0.1:Q --data-dir TMP`, otherwise its defaults (one log line and one "
            "usage record per job).",
            "- **direct**: `POST /text-to-image` to the runner; the answer carries the PNG inline, as a data URL.",
            "- **lpnode: gateway → orchestrator**: the same body to the gateway. It relays the job to the "
            "orchestrator over TLS with go-livepeer's gateway headers"
            + (
                ", leaving out `Authorization: Livepeer-AI-Worker-1.0` for image results, so the orchestrator "
                "passes the runner's answer (the PNG as a data URL) through; the gateway stores the PNG"
                if args.inline
                else "; the orchestrator relays it to the runner, stores the PNG and answers its `/stream/...` "
                "URL; the gateway fetches that file, stores it"
            )
            + " and answers its own absolute `/stream/...` URL (so this path's answer is a URL, not the PNG "
            "inline).",
            f"- **nginx → nginx**: the same body through two {nginx_text} instances in a chain (client → A → B → "
            "runner), each `daemon off; master_process on; worker_processes 1;`, plain HTTP/1.1 with an upstream "
            'keep-alive pool (`proxy_http_version 1.1; proxy_set_header Connection ""; keepalive 64;`), response '
            "buffering on (the default), `access_log off`. They pass the runner's answer (PNG inline) through "
            "unchanged: the practical floor for two HTTP hops.",
            "- **orchestrator alone (one hop)**, c=1 only: the same body straight to the orchestrator with the "
            "headers the gateway sends (the session token fetched once with `GetOrchestrator`), to split the "
            "lpnode path between its two hops.",
            "- Client: one asyncio process (uvloop, aiohttp, one keep-alive session per path). Latency runs from "
            "the send to the last byte of the answer; decoding and checking the answer (and fetching a stored "
            "PNG, timed separately) come after. Throughput: requests / time in the mode's timed blocks; at c>1 "
            "a block is a burst of c requests sent at once. Added latency: the path's p50 (p99) minus the direct "
            "p50 (p99) at the same concurrency.",
            f"- Interleaving: after {args.warmup} warm-up requests per c=1 mode and one burst per concurrent "
            f"mode, {args.rounds} rounds: the c=1 modes alternate request by request ({args.requests} each in "
            "all), then for each concurrency every path sends one burst, the first one rotating, so a slow "
            "patch of this shared VM hits all paths alike. Around every request (every burst) the runner's, the "
            "orchestrator's and the gateway's `/metrics` and every process's CPU time (per-thread scheduler "
            "statistics in /proc; both nginx instances' masters and workers together) are read and credited to "
            "the mode.",
            "- On this 2-core machine the runner's model, the gateway, the orchestrator, both nginx instances "
            "and the client all share the cores: every hop's CPU time competes with the model's, which is what "
            "the concurrent rows show.",
            "",
            f"Command: `{command}`",
            "",
            f"Date: {today}. Machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['os']}, "
            f"Python {machine['python']}, torch {machine['torch']}.",
            "",
            table(out),
            "",
            *report_lines(out),
            "",
            *reading(args, out),
            END_MARK,
        ]
    )


# -- main -------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--requests", type=int, default=100, help="timed requests per concurrency-1 mode (default 100)")
    p.add_argument("--rounds", type=int, default=10, help="rounds; each has one burst per concurrent mode (default 10)")
    p.add_argument("--warmup", type=int, default=8, help="untimed requests per concurrency-1 mode first (default 8)")
    p.add_argument(
        "--concurrency", default="16,64", help="requests at once in the concurrent modes, comma-separated (16,64)"
    )
    p.add_argument("--steps", type=int, default=2, help="num_inference_steps (default 2)")
    p.add_argument("--size", type=int, default=64, help="image width and height (default 64)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    p.add_argument("--budget", type=float, default=360.0, help="seconds for the whole measurement (default 360)")
    p.add_argument("--write-docs", action="store_true", help=f"update {DOCS.relative_to(ROOT)}")
    args = p.parse_args(argv)
    try:
        args.concurrency = sorted({int(c) for c in args.concurrency.split(",") if c.strip()})
    except ValueError:
        p.error("--concurrency takes comma-separated whole numbers, such as 16,64")
    if not args.concurrency or min(args.concurrency) < 2:
        p.error("--concurrency: every value must be >= 2")
    if min(args.requests, args.rounds, args.steps) < 1 or args.warmup < 0 or args.size < 8:
        p.error("--requests, --rounds, --steps must be >= 1, --warmup >= 0, --size >= 8")
    args.rounds = min(args.rounds, args.requests)
    # Room for every concurrent request in the runner's queue: beyond in-flight + queue it answers 503.
    args.max_queue = max(128, max(args.concurrency) * 2)
    args.nginx_skipped = ""
    args.nginx_version = ""
    args.inline = False  # set from the gateway's code before the run
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    # Ctrl-C and SIGTERM unwind through the finally blocks that stop every process started here
    # (even when started from a shell that ignores SIGINT in background jobs).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, sigterm_as_interrupt)
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="lpnode-bench-") as tmp:
            models_dir = Path(tmp) / "models"
            print(f"building the tiny text-to-image models in {models_dir} ...", flush=True)
            build_models(models_dir)
            out = measure(args, models_dir, Path(tmp))
    except KeyboardInterrupt:
        print("interrupted; every process started here is stopped and the temp dir removed", file=sys.stderr)
        return 130

    print()
    print(table(out))
    print()
    for line in report_lines(out):
        print(line.replace("**", "").replace("`", ""))
    print(f"(total {time.monotonic() - started:.0f}s)")

    if args.write_docs:
        command = shlex.join(
            [".venv/bin/python", "benchmarks/gateway_path.py", *(argv if argv is not None else sys.argv[1:])]
        )
        write_docs(docs_section(command, machine_info(), args, out), START_MARK, END_MARK)
        print(f"wrote {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
