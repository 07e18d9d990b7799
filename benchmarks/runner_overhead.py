"""How much does serving a pipeline over HTTP add on top of running it in-process?

In one run, on one machine, with the same tiny text-to-image model, inputs and seed:

(a) in-process: ``TextToImagePipeline.run()`` called directly (under ``torch.inference_mode()``, as the
    runner's worker does), N times in a row. ``run()`` returns the encoded response, so this side already
    includes the safety check and the PNG + base64 data-URL encoding.
(b) over HTTP: a real ``lpnode runner`` subprocess on 127.0.0.1, N sequential POSTs on one keep-alive
    connection, and N POSTs from 4 client threads (each with its own keep-alive connection). The HTTP
    side additionally pays request parsing/validation, JSON encoding of the response, the loopback
    transfer and, in the client, JSON decoding + base64 decoding of the image.

Both sides use 1 torch thread (``torch.set_num_threads(1)`` here, ``--threads 1`` for the runner, and
``OMP_NUM_THREADS=1`` for both), so the comparison is model time vs model time + serving. The timed
requests of the three modes run in interleaved rounds, so slow patches of a shared VM hit all of them
alike, and the runner's /metrics split the sequential HTTP latency into model time and serving time.

Usage::

    python benchmarks/runner_overhead.py                # print the table
    python benchmarks/runner_overhead.py --write-docs   # also update docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import datetime as dt
import http.client
import json
import math
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _common
from _common import (
    DOCS,
    ROOT,
    Deadline,
    free_port,
    http_get,
    log_tail,
    machine_info,
    sigterm_as_interrupt,
    stop_runner,
    wait_idle,
    write_docs,
)

MODEL_ID = "lpnode/tiny-text-to-image"
SAFETY_ID = "lpnode/tiny-safety-checker"
PIPELINE = "text-to-image"
TARGET_OVERHEAD = 0.05  # HTTP serving may add at most 5% latency at concurrency 1
START_MARK = "<!-- runner_overhead:start -->"
END_MARK = "<!-- runner_overhead:end -->"


# -- statistics -------------------------------------------------------------------------------------


@dataclass
class Result:
    mode: str
    latencies: list[float] = field(default_factory=list)  # seconds, one per request
    wall: float = 0.0  # seconds spent in the timed blocks of this mode

    def add(self, latencies: list[float], wall: float) -> None:
        self.latencies.extend(latencies)
        self.wall += wall

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.latencies)

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies)

    @property
    def p95(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]  # nearest rank

    @property
    def throughput(self) -> float:
        return self.requests / self.wall


# -- the in-process side ----------------------------------------------------------------------------


def load_pipeline(models_dir: Path) -> Any:
    import torch

    from lpnode.runner.libraries import quiet_model_libraries
    from lpnode.runner.pipelines import LoadContext, pipeline_class

    quiet_model_libraries()
    torch.set_num_threads(1)
    ctx = LoadContext(model_id=MODEL_ID, model_dir=models_dir, device="cpu", safety_checker_id=SAFETY_ID)
    return pipeline_class(PIPELINE)(ctx)


class InProcess:
    """``pipeline.run()`` on this thread, under ``torch.inference_mode()`` as the runner's worker does."""

    def __init__(self, pipeline: Any, body: dict[str, Any]) -> None:
        from lpnode.schemas import TextToImageParams

        self.pipeline = pipeline
        self.params = TextToImageParams(**body)
        pipeline.check(self.params)
        self.url = ""

    def once(self) -> None:
        import torch

        from lpnode.runner.pipelines import Job

        with torch.inference_mode():
            response = self.pipeline.run(self.params, Job())
        if len(response.images) != 1:
            raise RuntimeError(f"expected 1 image, got {len(response.images)}")
        self.url = response.images[0].url

    def block(self, n: int, deadline: Deadline) -> tuple[list[float], float]:
        latencies = []
        started = time.perf_counter()
        for _ in range(n):
            deadline.check("in-process")
            t0 = time.perf_counter()
            self.once()
            latencies.append(time.perf_counter() - t0)
        return latencies, time.perf_counter() - started


# -- the HTTP side ----------------------------------------------------------------------------------


def start_runner(models_dir: Path, port: int, max_queue: int, log_path: Path) -> subprocess.Popen[bytes]:
    args = [
        "--pipeline",
        PIPELINE,
        "--model-id",
        MODEL_ID,
        "--models-dir",
        str(models_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--safety-checker",
        SAFETY_ID,
        "--device",
        "cpu",
        "--threads",
        "1",
        "--max-in-flight",
        "1",
        "--max-queue",
        str(max_queue),
        "--log-level",
        "warning",
    ]
    return _common.start_runner(args, log_path)


def runner_timings(port: int) -> dict[str, float]:
    """Sums and counts of the runner's own histograms: time in the model (job) and time inside the
    ASGI app for the pipeline route (request), as its /metrics reports them."""
    wanted = {
        "lpnode_runner_job_duration_seconds_sum": "job_sum",
        "lpnode_runner_job_duration_seconds_count": "job_count",
        "lpnode_runner_request_duration_seconds_sum": "request_sum",
        "lpnode_runner_request_duration_seconds_count": "request_count",
    }
    out = dict.fromkeys(wanted.values(), 0.0)
    for line in http_get(port, "/metrics").decode().splitlines():
        name, _, rest = line.partition("{")
        if name in wanted and (name.startswith("lpnode_runner_job") or f'route="/{PIPELINE}"' in rest):
            out[wanted[name]] += float(line.rsplit(" ", 1)[1])
    return out


class Client:
    """One keep-alive HTTP/1.1 connection (reconnects if the server closes it)."""

    def __init__(self, port: int, timeout: float) -> None:
        self.port = port
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, payload: bytes) -> str:
        """POST ``payload``; checks a 200 with one decodable PNG image and returns its data URL."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        headers = {"Content-Type": "application/json"}
        try:
            self.conn.request("POST", path, body=payload, headers=headers)
            response = self.conn.getresponse()
            data = response.read()
        except Exception:
            self.close()
            raise
        if response.will_close:
            self.close()
        if response.status != 200:
            raise RuntimeError(f"POST {path} answered {response.status}: {data[:300]!r}")
        images = json.loads(data)["images"]
        if len(images) != 1:
            raise RuntimeError(f"expected 1 image, got {len(images)}")
        url: str = images[0]["url"]
        prefix = "data:image/png;base64,"
        if not url.startswith(prefix) or not base64.b64decode(url[len(prefix) :]).startswith(b"\x89PNG"):
            raise RuntimeError("the image is not a PNG data URL")
        return url

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class OverHttp:
    """Sequential requests on one keep-alive connection, and concurrent ones from a fixed pool of
    client threads, each with its own keep-alive connection."""

    def __init__(self, port: int, payload: bytes, concurrency: int, timeout: float) -> None:
        self.port = port
        self.payload = payload
        self.path = "/" + PIPELINE
        self.concurrency = concurrency
        self.timeout = timeout
        self.url = ""
        self.sequential_client = Client(port, timeout)
        self._local = threading.local()
        self._clients: list[Client] = []
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="bench-client")

    def sequential(self, n: int, deadline: Deadline) -> tuple[list[float], float]:
        latencies = []
        started = time.perf_counter()
        for _ in range(n):
            deadline.check("HTTP sequential")
            t0 = time.perf_counter()
            self.url = self.sequential_client.post(self.path, self.payload)
            latencies.append(time.perf_counter() - t0)
        return latencies, time.perf_counter() - started

    def _one(self) -> float:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = Client(self.port, self.timeout)
            with self._lock:
                self._clients.append(client)
        t0 = time.perf_counter()
        client.post(self.path, self.payload)
        return time.perf_counter() - t0

    def concurrent(self, n: int, deadline: Deadline) -> tuple[list[float], float]:
        """``n`` requests, ``concurrency`` at a time. Latency is end to end as the client sees it, so
        it includes the wait in the runner's queue."""
        deadline.check("HTTP concurrent")
        # Each request waits at most `timeout` on its socket, and at most ceil(n / concurrency) + 1
        # requests run one after another on a client thread.
        budget = min(self.timeout * (math.ceil(n / self.concurrency) + 1), max(1.0, deadline.at - time.monotonic()))
        started = time.perf_counter()
        futures = [self._pool.submit(self._one) for _ in range(n)]
        _, pending = concurrent.futures.wait(futures, timeout=budget)
        wall = time.perf_counter() - started
        for future in pending:
            future.cancel()
        if pending:
            raise TimeoutError(f"{len(pending)} of {n} concurrent requests unfinished after {budget:.0f}s")
        return [f.result() for f in futures], wall  # f.result() re-raises a failed request's error

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.sequential_client.close()
        for client in self._clients:
            client.close()


# -- reporting --------------------------------------------------------------------------------------


def table(results: list[Result]) -> str:
    rows = [
        "| mode | requests | mean (ms) | p50 (ms) | p95 (ms) | throughput (req/s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        rows.append(
            f"| {r.mode} | {r.requests} | {r.mean * 1e3:.1f} | {r.p50 * 1e3:.1f} | {r.p95 * 1e3:.1f} "
            f"| {r.throughput:.2f} |"
        )
    return "\n".join(rows)


@dataclass
class Verdict:
    latency_ratio: float  # HTTP c=1 mean / in-process mean
    latency_ratio_p50: float
    throughput_ratio: float  # in-process throughput / HTTP c=N throughput
    job_ms: float  # mean time in the model inside the runner, during the c=1 blocks
    app_ms: float  # mean time inside the runner's ASGI app (route + model), same requests
    client_ms: float  # mean latency the c=1 client saw, same requests
    inproc_ms: float

    @property
    def serving_share(self) -> float:
        """Serving time (client latency minus model time, same requests) over model time."""
        return (self.client_ms - self.job_ms) / self.job_ms

    @property
    def end_to_end_met(self) -> bool:
        return self.latency_ratio <= 1 + TARGET_OVERHEAD

    @property
    def met(self) -> bool:
        # Judged on the serving share: the end-to-end ratio also carries how fast the model happened to
        # run in each process (a few % either way on a shared 2-core VM), which is not serving cost.
        return self.serving_share <= TARGET_OVERHEAD

    def lines(self, concurrency: int) -> list[str]:
        serving = self.client_ms - self.job_ms
        return [
            f"- latency, HTTP c=1 / in-process: **{self.latency_ratio:.3f}** on the mean "
            f"({self.latency_ratio - 1:+.1%}), {self.latency_ratio_p50:.3f} on the p50",
            f"- throughput, in-process / HTTP c={concurrency}: **{self.throughput_ratio:.3f}**",
            f'- target "HTTP serving adds ≤ {TARGET_OVERHEAD:.0%} at concurrency 1", judged on the serving '
            f"share below ({self.serving_share:+.1%}): "
            + ("**met**" if self.met else "**not met**")
            + f"; on the end-to-end mean ratio it is {'met' if self.end_to_end_met else 'not met'}",
            f"- where the c=1 time goes, from the runner's /metrics over the same requests: model (job) "
            f"{self.job_ms:.1f} ms, route around it {self.app_ms - self.job_ms:.1f} ms, outside the app "
            f"(HTTP parsing, loopback, client JSON + base64 decode) {self.client_ms - self.app_ms:.1f} ms; "
            f"serving overhead {serving:.1f} ms = {serving / self.job_ms:+.1%} of the model time",
            f"- the model itself, in the runner / in-process: {self.job_ms / self.inproc_ms:.3f}",
        ]


def verdict(inproc: Result, seq: Result, conc: Result, runner: dict[str, float]) -> Verdict:
    count = max(runner["job_count"], 1.0)
    return Verdict(
        latency_ratio=seq.mean / inproc.mean,
        latency_ratio_p50=seq.p50 / inproc.p50,
        throughput_ratio=inproc.throughput / conc.throughput,
        job_ms=runner["job_sum"] / count * 1e3,
        app_ms=runner["request_sum"] / max(runner["request_count"], 1.0) * 1e3,
        client_ms=seq.mean * 1e3,
        inproc_ms=inproc.mean * 1e3,
    )


def docs_section(
    command: str, machine: dict[str, str], args: argparse.Namespace, results: list[Result], v: Verdict, same: bool
) -> str:
    today = dt.datetime.now(dt.UTC).date().isoformat()
    return "\n".join(
        [
            START_MARK,
            "## Runner HTTP overhead",
            "",
            "`benchmarks/runner_overhead.py` runs the tiny text-to-image model "
            f"({args.size}x{args.size}, {args.steps} steps, safety check on, fixed seed) in-process and "
            "through a real `lpnode runner` subprocess on 127.0.0.1, in the same run, and compares them.",
            "",
            "- **in-process**: `TextToImagePipeline.run()` under `torch.inference_mode()`, as the runner's "
            "worker calls it. `run()` returns the encoded response, so this side already includes the "
            "safety check and the PNG + base64 data-URL encoding.",
            "- **HTTP c=1**: sequential `POST /text-to-image` on one keep-alive connection (stdlib "
            "`http.client`). On top of the model this pays HTTP parsing, body validation, admission, the "
            "hop to the worker thread, JSON encoding of the ~15 kB response, the loopback transfer and, in "
            "the client, JSON decoding + base64 decoding of the image (checked to be a PNG).",
            f"- **HTTP c={args.concurrency}**: the same request from {args.concurrency} client threads "
            f"(one keep-alive connection each) against `--max-in-flight 1 --max-queue {args.max_queue}`; "
            "its latency includes the wait in the runner's queue, so only its throughput compares.",
            "- Fairness: both sides use one torch thread (`torch.set_num_threads(1)` / `--threads 1`, "
            "`OMP_NUM_THREADS=1`), the same models dir and the same request. The runner and this script "
            "are separate processes, so on 2 cores the client does not take the runner's core.",
            f"- After {args.warmup} warm-up requests per mode, the {args.requests} timed requests per mode "
            f"run in {args.rounds} interleaved rounds (in-process, HTTP c=1, HTTP c={args.concurrency}, "
            "repeat), so a slow patch of this shared VM hits all modes alike.",
            "- The end-to-end ratio also carries how fast the model itself happened to run in each "
            "process (the last line below; a few % either way on this VM). The runner's own `/metrics` "
            "(job and request duration histograms, over the same c=1 requests) isolate the serving cost: "
            "model time, the route around it, and time outside the app.",
            "",
            f"Command: `{command}`",
            "",
            f"Date: {today}. Machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['os']}, "
            f"Python {machine['python']}, torch {machine['torch']}.",
            "",
            table(results),
            "",
            *v.lines(args.concurrency),
            f"- same image in-process and over HTTP (same seed): {'yes' if same else 'no'}",
            "",
            END_MARK,
        ]
    )


# -- main -------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--requests", type=int, default=30, help="timed requests per mode (default 30)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds the requests are split into (default 5)")
    p.add_argument("--warmup", type=int, default=5, help="untimed requests per mode first (default 5)")
    p.add_argument("--steps", type=int, default=4, help="num_inference_steps (default 4)")
    p.add_argument("--size", type=int, default=64, help="image width and height (default 64)")
    p.add_argument("--concurrency", type=int, default=4, help="client threads for the concurrent mode (default 4)")
    p.add_argument("--port", type=int, default=0, help="runner port (default: a free one)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    p.add_argument("--budget", type=float, default=300.0, help="seconds for the whole measurement (default 300)")
    p.add_argument("--write-docs", action="store_true", help=f"update {DOCS.relative_to(ROOT)}")
    args = p.parse_args(argv)
    if min(args.requests, args.rounds, args.concurrency, args.steps) < 1 or args.warmup < 0 or args.size < 8:
        p.error("--requests, --rounds, --concurrency, --steps must be >= 1, --warmup >= 0, --size >= 8")
    args.rounds = min(args.rounds, args.requests)
    # Room for every concurrent request: the runner refuses (503) beyond in-flight + queue.
    args.max_queue = max(8, args.concurrency * 2)
    return args


def measure(
    args: argparse.Namespace, models_dir: Path, log_path: Path, port: int
) -> tuple[Result, Result, Result, dict[str, float], bool]:
    """Start the runner, measure the three modes in interleaved rounds, always stop the runner."""
    body = {
        "prompt": "a lighthouse on a cliff at dusk",
        "width": args.size,
        "height": args.size,
        "num_inference_steps": args.steps,
        "seed": 1234,
    }
    inproc = Result("in-process")
    seq = Result("HTTP c=1")
    conc = Result(f"HTTP c={args.concurrency}")
    runner = dict.fromkeys(("job_sum", "job_count", "request_sum", "request_count"), 0.0)
    proc: subprocess.Popen[bytes] | None = None
    client: OverHttp | None = None
    try:
        # The runner loads in its own process while this one loads its copy; nothing is timed yet.
        proc = start_runner(models_dir, port, args.max_queue, log_path)
        local = InProcess(load_pipeline(models_dir), body)
        wait_idle(port, proc, log_path, timeout=180)
        print(f"runner IDLE on 127.0.0.1:{port} (pid {proc.pid})", flush=True)
        client = OverHttp(port, json.dumps(body).encode(), args.concurrency, args.timeout)
        deadline = Deadline(args.budget)

        print(f"warm-up: {args.warmup} requests per mode ...", flush=True)
        local.block(args.warmup, deadline)
        client.sequential(args.warmup, deadline)
        client.concurrent(args.warmup, deadline)

        sizes = [args.requests // args.rounds + (i < args.requests % args.rounds) for i in range(args.rounds)]
        for i, n in enumerate(sizes, 1):
            print(f"round {i}/{len(sizes)}: {n} requests per mode ...", flush=True)
            inproc.add(*local.block(n, deadline))
            before = runner_timings(port)
            seq.add(*client.sequential(n, deadline))
            after = runner_timings(port)
            for key in runner:
                runner[key] += after[key] - before[key]
            conc.add(*client.concurrent(n, deadline))
        if proc.poll() is not None:
            raise RuntimeError(f"runner exited during the run:\n{log_tail(log_path)}")
        return inproc, seq, conc, runner, local.url == client.url
    finally:
        if client is not None:
            client.close()
        if proc is not None:
            stop_runner(proc)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Before torch / huggingface_hub are imported: one intra-op thread, never reach the network.
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    # Ctrl-C and SIGTERM unwind through the finally blocks that stop the runner (even when started
    # from a shell that ignores SIGINT in background jobs).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, sigterm_as_interrupt)
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="lpnode-bench-") as tmp:
            from lpnode.runner import tiny
            from lpnode.runner.libraries import quiet_model_libraries

            quiet_model_libraries()
            models_dir = Path(tmp) / "models"
            print(f"building tiny models in {models_dir} ...", flush=True)
            tiny.build(models_dir, PIPELINE)
            inproc, seq, conc, runner, same = measure(
                args, models_dir, Path(tmp) / "runner.log", args.port or free_port()
            )
    except KeyboardInterrupt:
        print("interrupted; the runner is stopped and the temp dir removed", file=sys.stderr)
        return 130

    results = [inproc, seq, conc]
    v = verdict(inproc, seq, conc, runner)
    print()
    print(table(results))
    print()
    for line in v.lines(args.concurrency):
        print(line.replace("**", ""))
    print(f"- same image in-process and over HTTP (same seed): {'yes' if same else 'no'}")
    print(f"(total {time.monotonic() - started:.0f}s)")

    if args.write_docs:
        command = shlex.join(
            [".venv/bin/python", "benchmarks/runner_overhead.py", *(argv if argv is not None else sys.argv[1:])]
        )
        write_docs(docs_section(command, machine_info(), args, results, v, same), START_MARK, END_MARK)
        print(f"wrote {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
