"""What does streaming a chat completion over HTTP cost, next to running the llm pipeline in-process?

In one run, on one machine, with the same tiny chat model (``lpnode/tiny-llm``), prompt and greedy
decoding (``temperature: 0``, so every request generates exactly ``--max-tokens`` tokens):

(a) in-process: ``LLMPipeline.stream()`` consumed on an event loop in this process (uvloop, as the
    runner uses), one stream at a time (c=1) or ``--concurrency`` streams at once on the same loop.
(b) over HTTP: a real ``lpnode runner --pipeline llm`` subprocess on 127.0.0.1, ``POST /llm`` with
    ``"stream": true``, read as server-sent events by a small asyncio HTTP/1.1 client on keep-alive
    connections (one per concurrent stream), which parses every ``data:`` event as JSON.

Two runners serve (b): one with ``--max-in-flight`` = the concurrency, so its c=N compares like for
like with N in-process streams, and one with the llm route's default (4 in flight), which shows what
a client sending N streams to a default runner sees (the extra streams wait in the runner's queue).

Per request: TTFT (request start to the first chunk with non-empty content), tokens/s per stream
(completion tokens / (last chunk - first chunk)) and end-to-end tokens/s (completion tokens / whole
request); per mode: aggregate tokens/s (all tokens / time in the mode's timed blocks) and CPU time
per request: of the serving process (this one in-process, the runner over HTTP), of its event-loop
thread alone (where the serving work happens; the generate threads are the same on both sides), and
of this process as the HTTP client.

Both sides use 1 torch thread (``torch.set_num_threads(1)`` here, ``--threads 1`` for the runner,
``OMP_NUM_THREADS=1`` for both). The machine is shared and noisy, so the timed requests run in rounds
that interleave the modes finely: the two c=1 modes alternate request by request, then each
concurrent mode sends one burst, the first mode rotating each round. Besides the ratios of the
medians, the report gives the median of the side-by-side ratios (request pairs at c=1, rounds at
c=N), and how busy other processes kept the machine meanwhile.

Usage::

    python benchmarks/llm_stream.py                # print the table
    python benchmarks/llm_stream.py --write-docs   # also update docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    DOCS,
    ROOT,
    Deadline,
    free_port,
    http_get,
    log_tail,
    machine_cpu_seconds,
    machine_info,
    nearest_rank,
    process_cpu_seconds,
    sigterm_as_interrupt,
    start_runner,
    stop_runner,
    thread_cpu_seconds,
    wait_idle,
    write_docs,
)

MODEL_ID = "lpnode/tiny-llm"
PIPELINE = "llm"
KEEP_ALIVE_REUSE = 3.0  # seconds a connection may idle before it is reopened (uvicorn closes at 5 s)
PROMPT = "Write a short poem about a lighthouse on a cliff at dusk."
START_MARK = "<!-- llm_stream:start -->"
END_MARK = "<!-- llm_stream:end -->"


# -- measurements -----------------------------------------------------------------------------------


@dataclass
class Stream:
    """One streamed request, as its client saw it (seconds from the request's start)."""

    ttft: float  # to the first chunk with non-empty content
    last: float  # to the last chunk (the one with finish_reason)
    total: float  # to the end of the stream ([DONE] over HTTP, the generator's end in-process)
    tokens: int  # usage.completion_tokens of the last chunk
    chunks: int
    text: str

    @property
    def rate(self) -> float:
        """Tokens per second while streaming: completion tokens / (last chunk - first chunk)."""
        return self.tokens / (self.last - self.ttft)

    @property
    def e2e_rate(self) -> float:
        return self.tokens / self.total


@dataclass
class Mode:
    name: str
    concurrency: int
    http: bool
    streams: list[Stream] = field(default_factory=list)
    wall: float = 0.0  # seconds in this mode's timed blocks
    cpu: float = 0.0  # CPU seconds of the serving process (this one in-process, the runner over HTTP)
    loop_cpu: float = 0.0  # ... of its event-loop thread alone (the generate threads are the rest)
    client_cpu: float = 0.0  # CPU seconds of this process as the HTTP client
    runner: dict[str, float] = field(default_factory=dict)  # deltas of the runner's /metrics sums
    blocks: list[float] = field(default_factory=list)  # aggregate tokens/s of each timed block, in order

    def add(self, streams: list[Stream], wall: float) -> None:
        self.streams += streams
        self.wall += wall
        self.blocks.append(sum(s.tokens for s in streams) / wall)

    @property
    def requests(self) -> int:
        return len(self.streams)

    def ttft(self, q: float) -> float:
        return nearest_rank([s.ttft for s in self.streams], q)

    @property
    def rate(self) -> float:
        return statistics.median(s.rate for s in self.streams)

    @property
    def e2e_rate(self) -> float:
        return statistics.median(s.e2e_rate for s in self.streams)

    @property
    def aggregate(self) -> float:
        return sum(s.tokens for s in self.streams) / self.wall

    def per_request_ms(self, seconds: float) -> float:
        return seconds / self.requests * 1e3

    def runner_mean_ms(self, name: str) -> float:
        return self.runner.get(f"{name}_sum", 0.0) / max(self.runner.get(f"{name}_count", 0.0), 1.0) * 1e3


def check_stream(stream: Stream, max_tokens: int, where: str) -> Stream:
    if stream.tokens != max_tokens:
        raise RuntimeError(f"{where}: {stream.tokens} completion tokens, expected {max_tokens} (temperature 0)")
    if not stream.text:
        raise RuntimeError(f"{where}: no content in the stream")
    return stream


async def run_block(
    one: Callable[[int], Awaitable[Stream]], n: int, concurrency: int, timeout: float, deadline: Deadline, what: str
) -> tuple[list[Stream], float]:
    """``n`` requests, ``concurrency`` at a time: one worker per slot, each running requests back to
    back until ``n`` have started. Every request gets ``timeout`` seconds, the block what is left of
    the budget."""
    deadline.check(what)
    left = n
    out: list[Stream] = []

    async def worker(slot: int) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            async with asyncio.timeout(timeout):
                out.append(await one(slot))

    started = time.perf_counter()
    async with asyncio.timeout(max(1.0, deadline.left())), asyncio.TaskGroup() as group:
        for slot in range(min(concurrency, n)):
            group.create_task(worker(slot))
    return out, time.perf_counter() - started


# -- the in-process side ----------------------------------------------------------------------------


def load_pipeline(models_dir: Path, in_flight: int) -> Any:
    import torch

    from lpnode.runner.libraries import quiet_model_libraries
    from lpnode.runner.pipelines.base import LoadContext
    from lpnode.runner.pipelines.llm import LLMPipeline

    quiet_model_libraries()
    torch.set_num_threads(1)
    # As the runner does with --max-in-flight N: N generate threads.
    return LLMPipeline(LoadContext(model_id=MODEL_ID, model_dir=models_dir, device="cpu", max_in_flight=in_flight))


class InProcess:
    """``pipeline.stream()`` consumed on this process's event loop, as the runner's route consumes it."""

    def __init__(self, pipeline: Any, body: dict[str, Any]) -> None:
        from lpnode.schemas.llm import LLMRequest

        self.pipeline = pipeline
        self.params = LLMRequest(**body)
        self.max_tokens = self.params.max_tokens
        self.last_chunk: Any = None

    async def one(self, slot: int) -> Stream:
        from lpnode.runner.pipelines.base import Job

        t0 = time.perf_counter()
        self.pipeline.check(self.params)  # as the runner does before admitting a job
        first = last = math.nan
        tokens = chunks = 0
        parts: list[str] = []
        finish = ""
        stream = self.pipeline.stream(self.params, Job())
        try:
            async for chunk in stream:
                now = time.perf_counter()
                content = chunk.choices[0].delta.content
                if content and math.isnan(first):
                    first = now
                parts.append(content)
                tokens = chunk.usage.completion_tokens
                finish = chunk.choices[0].finish_reason
                chunks += 1
                last = now
                self.last_chunk = chunk
        finally:
            await stream.aclose()
        end = time.perf_counter()
        if finish != "length":
            raise RuntimeError("in-process: the stream did not end with finish_reason 'length'")
        s = Stream(first - t0, last - t0, end - t0, tokens, chunks, "".join(parts))
        return check_stream(s, self.max_tokens, "in-process")


# -- the HTTP side ----------------------------------------------------------------------------------


class SSEClient:
    """Streams ``POST /llm`` over keep-alive HTTP/1.1 connections, one per slot. A single-threaded
    asyncio client: with no client threads there is no GIL hand-off between them to delay a timestamp,
    and the client process stays off the runner's back as far as a Python client can."""

    def __init__(self, port: int, body: dict[str, Any], max_tokens: int) -> None:
        self.port = port
        payload = json.dumps(body).encode()
        self.request = (
            f"POST /{PIPELINE} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Accept: text/event-stream\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode() + payload
        self.max_tokens = max_tokens
        self.conns: dict[int, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        self.used: dict[int, float] = {}  # when each slot's connection last finished a request

    async def _conn(self, slot: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The slot's connection; a new one when it has been idle long enough for the server to have
        closed it (uvicorn's keep-alive timeout is 5 s, and modes wait for each other in the rounds)."""
        if slot in self.conns and time.monotonic() - self.used.get(slot, 0.0) > KEEP_ALIVE_REUSE:
            self._drop(slot)
        if slot not in self.conns:
            self.conns[slot] = await asyncio.open_connection("127.0.0.1", self.port)
        return self.conns[slot]

    def _drop(self, slot: int) -> None:
        conn = self.conns.pop(slot, None)
        if conn is not None:
            conn[1].close()

    async def one(self, slot: int) -> Stream:
        """One streamed request. Opening a connection is not timed: a streaming client keeps it alive."""
        for attempt in (1, 2):
            reader, writer = await self._conn(slot)
            t0 = time.perf_counter()
            clean = False
            try:
                writer.write(self.request)
                status_line = await reader.readline()
                if not status_line:  # the server closed this kept-alive connection just before
                    if attempt == 1:
                        continue
                    raise ConnectionError("the runner closed the connection")
                status = int(status_line.split(b" ", 2)[1])
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                if status != 200 or headers.get("transfer-encoding") != "chunked":
                    length = int(headers.get("content-length", "0"))
                    body = await reader.readexactly(length) if length else b""
                    raise RuntimeError(f"POST /{PIPELINE} answered {status} {headers}: {body[:300]!r}")
                if not headers.get("content-type", "").startswith("text/event-stream"):
                    raise RuntimeError(f"expected text/event-stream, got {headers.get('content-type')!r}")
                s = await self._events(reader, t0)
                clean = headers.get("connection", "").lower() != "close"
            finally:
                if clean:
                    self.used[slot] = time.monotonic()
                else:
                    self._drop(slot)
            return check_stream(s, self.max_tokens, "HTTP")
        raise AssertionError("unreachable")

    async def _events(self, reader: asyncio.StreamReader, t0: float) -> Stream:
        first = last = math.nan
        tokens = chunks = 0
        parts: list[str] = []
        finish = ""
        done = False
        buffer = b""
        while True:
            size = int((await reader.readline()).split(b";", 1)[0], 16)  # chunked transfer coding
            if size == 0:
                await reader.readline()  # the CRLF after the last chunk (the runner sends no trailers)
                break
            buffer += (await reader.readexactly(size + 2))[:-2]
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                for line in event.split(b"\n"):
                    if not line.startswith(b"data: "):
                        continue
                    data = line[6:]
                    if data == b"[DONE]":
                        done = True
                        continue
                    chunk = json.loads(data)
                    if "error" in chunk:
                        raise RuntimeError(f"the stream reported an error: {chunk['error']}")
                    now = time.perf_counter()
                    choice = chunk["choices"][0]
                    content = (choice.get("delta") or {}).get("content", "")
                    if content and math.isnan(first):
                        first = now
                    parts.append(content)
                    tokens = chunk["usage"]["completion_tokens"]
                    finish = choice.get("finish_reason", "")
                    chunks += 1
                    last = now
        end = time.perf_counter()
        if not done or finish != "length":
            raise RuntimeError(f"HTTP: stream ended without [DONE] after finish_reason 'length' ({done=}, {finish=})")
        return Stream(first - t0, last - t0, end - t0, tokens, chunks, "".join(parts))

    def close(self) -> None:
        for slot in list(self.conns):
            self._drop(slot)


def runner_metrics(port: int) -> dict[str, float]:
    """Sums and counts of the runner's histograms: job (admission to the last chunk), queue wait, and
    the whole ``/llm`` request inside the ASGI app."""
    wanted = {
        "lpnode_runner_job_duration_seconds": "job",
        "lpnode_runner_queue_wait_seconds": "queue",
        "lpnode_runner_request_duration_seconds": "request",
    }
    out: dict[str, float] = {}
    for line in http_get(port, "/metrics").decode().splitlines():
        name, _, rest = line.partition("{")
        for prefix, key in wanted.items():
            for suffix in ("_sum", "_count"):
                if name == prefix + suffix and (key != "request" or f'route="/{PIPELINE}"' in rest):
                    out[key + suffix] = out.get(key + suffix, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def runner_args(models_dir: Path, port: int, in_flight: int | None, max_queue: int) -> list[str]:
    args = ["--pipeline", PIPELINE, "--model-id", MODEL_ID, "--models-dir", str(models_dir)]
    args += ["--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--threads", "1"]
    if in_flight is not None:
        args += ["--max-in-flight", str(in_flight)]
    return [*args, "--max-queue", str(max_queue), "--log-level", "warning"]


# -- where the per-chunk time goes ------------------------------------------------------------------


@dataclass
class ChunkCost:
    server_us: float  # chunk.model_dump_json() + SSE framing, as the runner's route does per chunk
    client_us: float  # json.loads of one event, as this client does
    chunks: float  # chunks per request

    def ms_per_request(self) -> tuple[float, float]:
        return self.server_us * self.chunks / 1e3, self.client_us * self.chunks / 1e3


def chunk_cost(chunk: Any, chunks: float, n: int = 5000) -> ChunkCost:
    t0 = time.perf_counter()
    for _ in range(n):
        payload = b"data: " + chunk.model_dump_json().encode() + b"\n\n"
    server = (time.perf_counter() - t0) / n
    data = payload[6:-2]
    t0 = time.perf_counter()
    for _ in range(n):
        json.loads(data)
    client = (time.perf_counter() - t0) / n
    return ChunkCost(server * 1e6, client * 1e6, chunks)


# -- reporting ---------------------------------------------------------------------------------------


def table(modes: list[Mode]) -> str:
    rows = [
        "| mode | c | requests | TTFT p50 (ms) | TTFT p95 (ms) | tok/s per stream (p50) | end-to-end tok/s "
        "per stream (p50) | aggregate tok/s | CPU ms/req: server | of which event loop | client |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in modes:
        client = f"{m.per_request_ms(m.client_cpu):.1f}" if m.http else "–"
        rows.append(
            f"| {m.name} | {m.concurrency} | {m.requests} | {m.ttft(0.5) * 1e3:.1f} | {m.ttft(0.95) * 1e3:.1f} "
            f"| {m.rate:.0f} | {m.e2e_rate:.0f} | {m.aggregate:.0f} | {m.per_request_ms(m.cpu):.1f} "
            f"| {m.per_request_ms(m.loop_cpu):.1f} | {client} |"
        )
    return "\n".join(rows)


def ratio_line(local: Mode, http: Mode, label: str) -> str:
    return (
        f"- {label}: TTFT **{http.ttft(0.5) / local.ttft(0.5):.2f}** on the p50 "
        f"({(http.ttft(0.5) - local.ttft(0.5)) * 1e3:+.1f} ms), {http.ttft(0.95) / local.ttft(0.95):.2f} on the "
        f"p95; tokens/s per stream **{http.rate / local.rate:.3f}**, end to end {http.e2e_rate / local.e2e_rate:.3f}; "
        f"aggregate tokens/s **{http.aggregate / local.aggregate:.3f}** (median of the {len(http.blocks)} "
        f"side-by-side blocks: {statistics.median(paired(http.blocks, local.blocks)):.3f})"
    )


def paired(http: list[float], local: list[float]) -> list[float]:
    """HTTP / in-process for blocks that ran next to each other (same round, or alternating requests)."""
    return [h / x for h, x in zip(http, local, strict=True)]


def paired_line(local: Mode, http: Mode) -> str:
    """c=1 requests alternate, so each HTTP request has an in-process neighbour that met the same machine."""
    ttft = paired([s.ttft for s in http.streams], [s.ttft for s in local.streams])
    rate = paired([s.rate for s in http.streams], [s.rate for s in local.streams])
    return (
        f"- c=1, request by request (median over the {len(ttft)} alternating pairs): "
        f"TTFT **{statistics.median(ttft):.2f}**, tokens/s per stream **{statistics.median(rate):.3f}**"
    )


def report_lines(out: Outcome, args: argparse.Namespace) -> list[str]:
    local1, http1, local_n, http_n, http_default = out.modes
    c, cost = args.concurrency, out.cost
    server_ms, client_ms = cost.ms_per_request()
    loop1 = http1.per_request_ms(http1.loop_cpu) - local1.per_request_ms(local1.loop_cpu)
    loop_n = http_n.per_request_ms(http_n.loop_cpu) - local_n.per_request_ms(local_n.loop_cpu)
    proc1 = http1.per_request_ms(http1.cpu) - local1.per_request_ms(local1.cpu)
    proc_n = http_n.per_request_ms(http_n.cpu) - local_n.per_request_ms(local_n.cpu)
    lines = [
        "HTTP / in-process:",
        "",
        ratio_line(local1, http1, "c=1"),
        paired_line(local1, http1),
        ratio_line(local_n, http_n, f"c={c}, `--max-in-flight {c}`"),
        ratio_line(local_n, http_default, f"c={c}, default {args.default_in_flight} in flight"),
        "",
        "Where the time goes:",
        "",
        f"- serving on the event loop: the runner's loop thread spends {loop1:+.1f} ms CPU a request more than "
        f"the in-process loop at c=1 ({loop1 / cost.chunks * 1e3:+.0f} µs a chunk, {cost.chunks:.0f} chunks a "
        f"request), {loop_n:+.1f} ms at c={c}. Of that, `model_dump_json()` + SSE framing is {cost.server_us:.1f} µs "
        f"a chunk ({server_ms:.1f} ms a request); the rest is the ASGI send path and one socket write per chunk, "
        f"plus the request's parsing and validation. The client spends {cost.client_us:.1f} µs a chunk on "
        f"`json.loads` ({client_ms:.1f} ms a request) in its own process.",
        f"- the whole runner process, per request: {proc1:+.1f} ms CPU at c=1, {proc_n:+.1f} ms at "
        f"c={c} (at c={c} this also carries how much the {c} threads spent handing the GIL around, which varies "
        "run to run).",
        f"- runner /metrics: at c=1 the job (admission to last chunk) takes {http1.runner_mean_ms('job'):.1f} ms of "
        f"a {http1.runner_mean_ms('request'):.1f} ms request; mean queue wait at c={c}: "
        f"{http_n.runner_mean_ms('queue'):.1f} ms with `--max-in-flight {c}`, "
        f"{http_default.runner_mean_ms('queue'):.1f} ms with the default {args.default_in_flight} in flight.",
    ]
    lines += [
        f"- the machine is shared: during the timed rounds other processes kept about {out.load.other:.1f} of "
        f"its {out.load.cpus} CPUs busy on average, and the hypervisor stole about {out.load.steal:.1f} CPUs.",
        f"- same text in every stream, in-process and over HTTP (greedy): {'yes' if out.same_text else 'no'}",
    ]
    return lines


def docs_section(command: str, machine: dict[str, str], args: argparse.Namespace, out: Outcome) -> str:
    today = dt.datetime.now(dt.UTC).date().isoformat()
    c = args.concurrency
    local1 = out.modes[0]
    d = args.default_in_flight
    reading = [
        "Reading (the probes and ranges quoted here come from the runs made while writing this benchmark, "
        "not from the run above):",
        "",
        "- **c=1, TTFT**: a few ms more over HTTP. A probe of the runner (timestamps at the ASGI call, at "
        "`stream()`, at the first chunk and at its send, on the same clock as the client) gave about 0.3 ms "
        "from the client's send to the app, 0.7 ms from there to `stream()` (body parsing and validation, "
        "admission), 0.4 ms from the first chunk to its send (the route's wait-for-first-chunk tasks, the "
        "response start, JSON) and 0.1 ms back over loopback. The chat template, prefill and first token "
        "(about 6 ms) cost the same on both sides.",
        "- **c=1, tokens/s**: `generate` runs in its own thread and never waits for the consumer (the "
        "backend's queue is unbounded), so serving slows generation only by competing with it: for the GIL, "
        "through the event loop's extra work per chunk (the *event loop* column), and for the CPUs. Of the "
        "loop's extra tens of µs a chunk, about 20 µs is the socket write (on loopback, `send()` runs the "
        "receiving side's TCP path and wakes the client inside the sender's system call), a few µs the JSON, "
        "and the rest the chain of async generators and ASGI `send` wrappers a chunk passes through "
        "(`RunnerService.stream`, the route's event stream, Starlette's `StreamingResponse`, two "
        "middlewares, uvicorn). A probe of per-thread scheduler statistics found the `generate` thread's own "
        "CPU time the same on both sides (about 107 ms a request); over HTTP it also waited about 3 ms more "
        "for a CPU (the client and the runner's extra work share the 2 cores with it, and with whatever else "
        "runs on the VM) and about 4 ms more for the GIL: 5-7% end to end. Against "
        f"{1e3 / local1.rate:.1f} ms a token for this tiny model, the ratio of the medians has ranged from "
        "0.87 to 1.04 between runs, so read it as *within ~10%*. With a real model (tens of ms a token) "
        "the same per-chunk cost is noise.",
        f"- **c={c}**: one GIL for the `generate` threads and the event loop, and this model's decoding is "
        f"mostly Python, so the streams take turns: aggregate tokens/s at c={c} is no higher than at c=1, "
        "on either side. The HTTP / in-process aggregate ratio has ranged from about 0.78 to 1.03 between "
        "runs: the serving work competes with 8 generate threads for the one interpreter, so it costs up "
        "to ~20% of this tiny model's throughput (a real model spends its time in kernels that release "
        "the GIL, and the share shrinks accordingly). TTFT grows more over "
        "HTTP because a request needs more trips through the loop "
        "(accept, read, parse, validate, start the response), and uvloop drops the GIL while it polls, so "
        "each trip waits for the GIL behind the running `generate` threads (up to a 5 ms switch interval "
        "each). The probe at c=8 gave about 3 ms from send to the app and 6 ms from the app to `stream()`, "
        "against 0.3 and 0.7 ms at c=1. How much the threads lose handing the GIL around changes a lot "
        f"from run to run (aggregate tokens/s at c={c} has ranged from about 250 to 570, CPU per request "
        "from about 110 to 370 ms), so compare these rows only within one run.",
        f"- **default runner**: {d} in flight admits {d} of a burst of {c}; the other {c - d} wait in the "
        "runner's queue for a whole generation (the queue-wait line), which raises TTFT p50. Per-stream "
        "tokens/s is higher (fewer streams share the GIL) and aggregate tokens/s about the same, so on this "
        f"machine `--max-in-flight {c}` changes who waits, not how much gets done.",
        "- The VM is shared and noisy (see the load line): a block that runs while another process holds a "
        "core comes out slower. The interleaving spreads that over the modes, but single figures move by "
        "10-20% between runs; the c=1 side-by-side medians are the steadiest figures.",
    ]
    return "\n".join(
        [
            START_MARK,
            "## LLM streaming: time to first token and tokens/s",
            "",
            "`benchmarks/llm_stream.py` streams chat completions from the tiny llm model "
            f"(`{MODEL_ID}`, a 2-layer Llama with random weights; fixed prompt, `temperature: 0`, "
            f"`max_tokens: {args.max_tokens}`, so every request generates exactly {args.max_tokens} tokens) "
            "in-process and through a real `lpnode runner --pipeline llm` subprocess on 127.0.0.1, in the "
            "same run, and compares them.",
            "",
            "- **in-process**: `LLMPipeline.stream()` consumed on a uvloop event loop (the runner's loop) in the "
            f"benchmark's process; c={c} runs {c} streams at once on that loop.",
            '- **HTTP**: `POST /llm` with `"stream": true`, read as server-sent events by a single-threaded '
            "asyncio HTTP/1.1 client on keep-alive connections (one per concurrent stream) that parses every "
            f"event as JSON. c=1 and c={c} go to a runner started with `--max-in-flight {c} --max-queue "
            f"{args.max_queue}`, so c={c} compares like for like with {c} in-process streams. **default** goes "
            f"to a second runner with the llm route's default ({args.default_in_flight} in flight, `--max-queue "
            f"{args.max_queue}`): what a client sending {c} streams to an unconfigured runner gets.",
            "- TTFT: request start to the first chunk with non-empty content. tokens/s per stream: completion "
            "tokens / (last chunk - first chunk); end to end: completion tokens / whole request; aggregate: all "
            "tokens / the time spent in the mode's timed blocks. CPU per request: the serving process (this one "
            "in-process, the runner over HTTP; from /proc), its event-loop thread alone, and the HTTP client.",
            "- Fairness: one torch thread on both sides (`torch.set_num_threads(1)` / `--threads 1`, "
            "`OMP_NUM_THREADS=1`); the runner and the client are separate processes. After "
            f"{args.warmup} warm-up requests per mode, the {args.requests} timed requests per mode run in "
            f"{args.rounds} rounds; in each, the c=1 modes alternate request by request, then each c={c} mode "
            f"sends one burst of {c} streams, starting with a different mode each round.",
            "",
            f"Command: `{command}`",
            "",
            f"Date: {today}. Machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['os']}, "
            f"Python {machine['python']}, torch {machine['torch']}.",
            "",
            table(out.modes),
            "",
            *report_lines(out, args),
            "",
            *reading,
            "",
            END_MARK,
        ]
    )


# -- main -------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--requests", type=int, default=48, help="timed requests per mode (default 48)")
    p.add_argument("--warmup", type=int, default=8, help="untimed requests per mode first (default 8)")
    p.add_argument("--max-tokens", type=int, default=64, help="max_tokens of every request (default 64)")
    p.add_argument("--concurrency", type=int, default=8, help="streams at once in the concurrent modes (default 8)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    p.add_argument("--budget", type=float, default=150.0, help="seconds for the whole measurement (default 150)")
    p.add_argument("--write-docs", action="store_true", help=f"update {DOCS.relative_to(ROOT)}")
    args = p.parse_args(argv)
    if args.requests < 1 or args.max_tokens < 1 or args.concurrency < 2 or args.warmup < 0:
        p.error("--requests, --max-tokens must be >= 1, --concurrency >= 2, --warmup >= 0")
    # One round per burst of `concurrency` concurrent requests.
    args.rounds = math.ceil(args.requests / args.concurrency)
    # Room for every concurrent stream in both runners: beyond in-flight + queue the runner answers 503.
    args.max_queue = args.concurrency
    from lpnode.runner.pipelines.llm import LLMPipeline  # light: the route, not the model libraries

    args.default_in_flight = LLMPipeline.route.max_in_flight
    return args


@dataclass
class Load:
    """What else the machine did during the timed rounds (it is shared), in CPUs busy on average."""

    other: float  # busy CPU time of processes other than this one and the runners / wall time
    steal: float  # time the hypervisor gave this VM's CPUs to someone else / wall time
    cpus: int


@dataclass
class Outcome:
    modes: list[Mode]
    cost: ChunkCost
    same_text: bool
    load: Load


def measure(args: argparse.Namespace, models_dir: Path, tmp: Path) -> Outcome:
    """Start the two runners, measure the five modes in interleaved rounds, always stop the runners."""
    import uvloop

    body = {
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": args.max_tokens,
        "temperature": 0,
        "stream": True,
    }
    c = args.concurrency
    local1, http1 = Mode("in-process", 1, False), Mode("HTTP", 1, True)
    local_n, http_n = Mode("in-process", c, False), Mode(f"HTTP, `--max-in-flight {c}`", c, True)
    http_default = Mode(f"HTTP, default ({args.default_in_flight} in flight)", c, True)
    procs: list[subprocess.Popen[bytes]] = []
    clients: list[SSEClient] = []
    loop_runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    try:
        # The runners load in their own processes while this one loads its copy; nothing is timed yet.
        ports = [free_port(), free_port()]
        logs = [tmp / "runner-n.log", tmp / "runner-default.log"]
        in_flight: list[int | None] = [c, None]
        for port, log, slots in zip(ports, logs, in_flight, strict=True):
            procs.append(start_runner(runner_args(models_dir, port, slots, args.max_queue), log))
        local = InProcess(load_pipeline(models_dir, args.concurrency), body)
        for port, proc, log in zip(ports, procs, logs, strict=True):
            wait_idle(port, proc, log, timeout=180)
            print(f"runner IDLE on 127.0.0.1:{port} (pid {proc.pid})", flush=True)
        clients = [SSEClient(port, body, args.max_tokens) for port in ports]
        deadline = Deadline(args.budget)

        me = os.getpid()

        def in_process(mode: Mode, n: int) -> None:
            cpu, loop = time.process_time(), thread_cpu_seconds(me, me)
            block = run_block(local.one, n, mode.concurrency, args.timeout, deadline, mode.name)
            streams, wall = loop_runner.run(block)
            mode.cpu += time.process_time() - cpu
            mode.loop_cpu += thread_cpu_seconds(me, me) - loop
            mode.add(streams, wall)

        def over_http(mode: Mode, n: int, which: int) -> None:
            pid = procs[which].pid
            before = runner_metrics(ports[which])
            client, cpu, loop = time.process_time(), process_cpu_seconds(pid), thread_cpu_seconds(pid, pid)
            block = run_block(clients[which].one, n, mode.concurrency, args.timeout, deadline, mode.name)
            streams, wall = loop_runner.run(block)
            mode.client_cpu += time.process_time() - client
            mode.cpu += process_cpu_seconds(pid) - cpu
            mode.loop_cpu += thread_cpu_seconds(pid, pid) - loop
            mode.add(streams, wall)
            after = runner_metrics(ports[which])
            for key, value in after.items():
                mode.runner[key] = mode.runner.get(key, 0.0) + value - before.get(key, 0.0)

        def one_round(modes: list[Mode], n: int, turn: int) -> None:
            """``n`` requests per mode: the c=1 modes alternate request by request, then each concurrent
            mode runs one burst of ``n``, starting with a different one each round."""
            for _ in range(n):
                in_process(modes[0], 1)
                over_http(modes[1], 1, 0)
            bursts = [
                lambda: in_process(modes[2], n),
                lambda: over_http(modes[3], n, 0),
                lambda: over_http(modes[4], n, 1),
            ]
            for k in range(len(bursts)):
                bursts[(turn + k) % len(bursts)]()

        modes = [local1, http1, local_n, http_n, http_default]
        if args.warmup:
            print(f"warm-up: {args.warmup} requests per mode ...", flush=True)
            one_round([Mode(m.name, m.concurrency, m.http) for m in modes], args.warmup, 0)

        def own_cpu() -> float:
            return time.process_time() + sum(process_cpu_seconds(proc.pid) for proc in procs)

        sizes = [args.requests // args.rounds + (i < args.requests % args.rounds) for i in range(args.rounds)]
        started, (busy, steal), own = time.monotonic(), machine_cpu_seconds(), own_cpu()
        for i, n in enumerate(sizes):
            print(f"round {i + 1}/{len(sizes)}: {n} requests per mode ...", flush=True)
            one_round(modes, n, i)
        elapsed, (busy_end, steal_end) = time.monotonic() - started, machine_cpu_seconds()
        load = Load(
            # Never below 0: the per-process and the machine-wide counters tick separately.
            other=max(0.0, (busy_end - busy - (own_cpu() - own)) / elapsed),
            steal=(steal_end - steal) / elapsed,
            cpus=os.cpu_count() or 1,
        )
        for proc, log in zip(procs, logs, strict=True):
            if proc.poll() is not None:
                raise RuntimeError(f"runner exited during the run:\n{log_tail(log)}")
        texts = {s.text for m in modes for s in m.streams}
        cost = chunk_cost(local.last_chunk, statistics.fmean(s.chunks for s in http1.streams))
        return Outcome(modes, cost, len(texts) == 1, load)
    finally:
        for sse in clients:
            sse.close()
        loop_runner.close()
        for proc in procs:
            stop_runner(proc)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Before torch / huggingface_hub are imported: one intra-op thread, never reach the network.
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    # Ctrl-C and SIGTERM unwind through the finally blocks that stop the runners (even when started
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
            print(f"building the tiny llm in {models_dir} ...", flush=True)
            tiny.build(models_dir, PIPELINE)
            out = measure(args, models_dir, Path(tmp))
    except KeyboardInterrupt:
        print("interrupted; the runners are stopped and the temp dir removed", file=sys.stderr)
        return 130

    lines = report_lines(out, args)
    print()
    print(table(out.modes))
    print()
    for line in lines:
        print(line.replace("**", "").replace("`", ""))
    print(f"(total {time.monotonic() - started:.0f}s)")

    if args.write_docs:
        command = shlex.join(
            [".venv/bin/python", "benchmarks/llm_stream.py", *(argv if argv is not None else sys.argv[1:])]
        )
        write_docs(docs_section(command, machine_info(), args, out), START_MARK, END_MARK)
        print(f"wrote {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
