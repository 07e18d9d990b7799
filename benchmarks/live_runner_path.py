"""What do lpnode's hops add to a runner app (Live Runner) call, next to calling the app directly, and how does
that compare with lpnode's batch relay?

In one run, on one machine: ONE echo server (aiohttp, one process) that is both
- a **single-shot runner app** ``bench/echo`` (capacity 64) registered by heartbeat with the orchestrator, using
  lpnode's own registration (:class:`lpnode.runner.app_registration.AppRegistration`); ``POST /echo`` answers
  its JSON body; and
- a **batch runner** as the orchestrator sees an external aiModels.json ``url`` entry (text-to-image, model
  ``bench/echo-t2i``, capacity 64): ``GET /health`` says IDLE, ``POST /text-to-image`` answers a fixed 1x1 PNG
  as a data URL, at once;
ONE ``lpnode orchestrator -useLiveRunners`` (TLS, its default), and ONE ``lpnode gateway --orch-addr`` it.

The same small request goes, per path family:
- app: (a) direct ``POST /echo``; (b) orchestrator ``POST /apps/<runner_id>/app/echo`` (its reverse proxy, one
  session reserved and released per call); (c) gateway ``POST /apps/bench/echo/app/echo`` → orchestrator → app;
- batch: (a) direct ``POST /text-to-image``; (b) orchestrator ``POST /text-to-image`` with the job headers a
  gateway sends (an auth token fetched once over gRPC; the orchestrator stores the PNG and answers its
  ``/stream/`` URL, as for real gateways); (c) gateway ``POST /text-to-image`` → orchestrator → runner.

Each at concurrency 1 and 32, in interleaved rounds (at c=1 request by request; at c=32 one burst per mode per
round, the first mode rotating), so a slow patch of this shared VM hits all of them alike. Request counts are
fixed (``--rounds``) and the whole run is bounded by ``--budget``.

Usage::

    python benchmarks/live_runner_path.py                # print the tables
    python benchmarks/live_runner_path.py --write-docs   # also update docs/benchmarks.md
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
from typing import Any

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

SECRET = "live-runner-bench-secret"
APP = "bench/echo"
T2I_MODEL = "bench/echo-t2i"
START_MARK = "<!-- live_runner_path:start -->"
END_MARK = "<!-- live_runner_path:end -->"
APP_BODY = json.dumps({"text": "hello", "n": 1}).encode()
T2I_BODY = json.dumps({"model_id": T2I_MODEL, "prompt": "hello", "width": 64, "height": 64}).encode()
ECHO_SERVER = """
import asyncio, base64, sys
from aiohttp import web
from lpnode.runner.app_registration import AppAdvert, AppRegistration, OrchestratorLink

PORT, ORCH, SECRET, APP = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
)).decode()
IMAGES = {"images": [{"url": "data:image/png;base64," + PNG, "seed": 1, "nsfw": False}]}


async def echo(request):
    return web.Response(body=await request.read(), content_type="application/json")


async def t2i(request):
    await request.read()
    return web.json_response(IMAGES)


async def health(request):
    return web.json_response({"status": "IDLE"})


async def registered(app):
    advert = AppAdvert(runner_url=f"http://127.0.0.1:{PORT}", app=APP, mode="single-shot", capacity=64)
    async with AppRegistration(OrchestratorLink(ORCH, SECRET), advert, status=lambda: "ready").running():
        yield


app = web.Application()
app.add_routes([web.post("/echo", echo), web.post("/text-to-image", t2i), web.get("/health", health)])
app.cleanup_ctx.append(registered)
web.run_app(app, host="127.0.0.1", port=PORT, access_log=None, print=None)
"""
APP_FAMILY, BATCH_FAMILY = "app", "batch"
DIRECT, ORCH, GATEWAY = "direct", "orchestrator", "gateway"
LABELS = {DIRECT: "direct", ORCH: "orchestrator (one hop)", GATEWAY: "gateway → orchestrator"}


@dataclass
class Mode:
    family: str
    key: str
    concurrency: int
    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    failed: int = 0

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0

    def p(self, q: float) -> float:
        return nearest_rank(self.latencies, q) * 1000 if self.latencies else float("nan")


@dataclass(frozen=True)
class Target:
    url: str
    body: bytes
    headers: dict[str, str]
    check: str  # "echo": the body comes back; "images": a text-to-image answer


def insecure() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5, context=insecure()) as answer:
        return json.loads(answer.read())


def wait_for(what: str, probe: Any, procs: list[tuple[subprocess.Popen[bytes], Path]], timeout: float = 90) -> Any:
    """Poll ``probe()`` until it returns something truthy; a process of ``procs`` exiting stops the wait."""
    deadline = time.monotonic() + timeout
    problem = ""
    while time.monotonic() < deadline:
        for proc, log in procs:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"a process exited with {proc.returncode} while waiting for {what}:\n{log_tail(log)}"
                )
        try:
            found = probe()
            if found:
                return found
        except (OSError, ValueError, KeyError) as exc:
            problem = str(exc)
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout:g}s ({problem}):\n" + "\n".join(log_tail(p) for _, p in procs))


def listed_app(base_url: str) -> str:
    """The app's URL in ``base_url``'s /discovery ("" while it is not listed)."""
    for entry in get_json(f"{base_url}/discovery"):
        for runner in entry.get("runners", []):
            if runner.get("app") == APP:
                url: str = runner["url"]
                return url
    return ""


def job_headers(orch_url: str, cert: Path) -> dict[str, str]:
    """What a go-livepeer gateway sends off-chain: an auth token from ``GetOrchestrator`` in a base64
    ``SegData``, an empty payment, and the worker ``Authorization`` (so results are stored and re-hosted)."""
    import grpc  # type: ignore[import-untyped]

    from lpnode.protocol.lp_rpc_pb2 import OrchestratorInfo, OrchestratorRequest, SegData

    with grpc.secure_channel(orch_url.split("://", 1)[1], grpc.ssl_channel_credentials(cert.read_bytes())) as ch:
        call = ch.unary_unary(
            "/net.Orchestrator/GetOrchestrator",
            request_serializer=OrchestratorRequest.SerializeToString,
            response_deserializer=OrchestratorInfo.FromString,
        )
        info = call(OrchestratorRequest(ignoreCapacityCheck=True), timeout=10)
    segment = SegData(manifestId=b"27_model", profiles=b"invalid")
    segment.auth_token.CopyFrom(info.auth_token)
    return {
        "Content-Type": "application/json",
        "Livepeer-Segment": base64.b64encode(segment.SerializeToString()).decode(),
        "Livepeer-Payment": "",
        "Authorization": "Livepeer-AI-Worker-1.0",
    }


async def one(session: aiohttp.ClientSession, target: Target) -> tuple[float, bool]:
    t0 = time.perf_counter()
    try:
        async with session.post(target.url, data=target.body, headers=target.headers) as answer:
            data = await answer.read()
            elapsed = time.perf_counter() - t0
            if answer.status != 200:
                return elapsed, False
            if target.check == "echo":
                return elapsed, json.loads(data) == json.loads(target.body)
            return elapsed, bool(json.loads(data)["images"][0]["url"])
    except (aiohttp.ClientError, ValueError, KeyError, IndexError, TypeError):
        return time.perf_counter() - t0, False


async def measure(
    targets: dict[tuple[str, str], Target], rounds: int, concurrencies: list[int], deadline: Deadline
) -> list[Mode]:
    connector = aiohttp.TCPConnector(limit=0, ssl=False, keepalive_timeout=3)
    modes = {(f, k, c): Mode(f, k, c) for c in concurrencies for (f, k) in targets}
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def burst(mode: Mode, record: bool) -> None:
            target = targets[(mode.family, mode.key)]
            t0 = time.perf_counter()
            results = await asyncio.gather(*(one(session, target) for _ in range(mode.concurrency)))
            if record:
                mode.wall += time.perf_counter() - t0
                mode.latencies += [s for s, ok in results if ok]
                mode.failed += sum(1 for _, ok in results if not ok)

        for mode in modes.values():  # warm-up: connections, TLS sessions, the gateway's choice of orchestrator
            for _ in range(3 if mode.concurrency == 1 else 1):
                deadline.check("warming up")
                await burst(mode, record=False)
        for r in range(rounds):
            for c in concurrencies:
                order = list(targets)
                order = order[r % len(order) :] + order[: r % len(order)]
                for _ in range(20 if c == 1 else 1):
                    for family, key in order:
                        deadline.check("measuring")
                        await burst(modes[(family, key, c)], record=True)
    return list(modes.values())


def report(modes: list[Mode]) -> str:
    lines = ["| path | c | requests | failed | p50 (ms) | p99 (ms) | throughput (req/s) |"]
    lines += ["|---|---:|---:|---:|---:|---:|---:|"]
    for m in modes:
        lines.append(
            f"| {m.family}: {LABELS[m.key]} | {m.concurrency} | {len(m.latencies)} | {m.failed} | {m.p(0.5):.1f} | "
            f"{m.p(0.99):.1f} | {m.throughput:.0f} |"
        )
    by = {(m.family, m.key, m.concurrency): m for m in modes}
    lines += ["", "Added over the direct call of the same family, and throughput relative to it:", ""]
    lines += ["| family | via | c | added p50 (ms) | added p99 (ms) | throughput ratio |"]
    lines += ["|---|---|---:|---:|---:|---:|"]
    for c in sorted({m.concurrency for m in modes}):
        for family in (APP_FAMILY, BATCH_FAMILY):
            d = by[(family, DIRECT, c)]
            for key in (ORCH, GATEWAY):
                m = by[(family, key, c)]
                ratio = m.throughput / d.throughput if d.throughput else float("nan")
                lines.append(
                    f"| {family} | {LABELS[key]} | {c} | +{m.p(0.5) - d.p(0.5):.1f} | +{m.p(0.99) - d.p(0.99):.1f} "
                    f"| {ratio:.2f} |"
                )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8, help="rounds (c=1: 20 requests per mode each; c=32: 1 burst)")
    parser.add_argument("--budget", type=float, default=600, help="seconds the whole run may take")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, sigterm_as_interrupt)
    deadline = Deadline(args.budget)
    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="live-runner-bench-") as tmp:
        work = Path(tmp)
        ports = {name: free_port() for name in ("echo", "orch", "orch_cli", "http", "cli")}
        echo_url = f"http://127.0.0.1:{ports['echo']}"
        orch_url = f"https://127.0.0.1:{ports['orch']}"
        gateway_url = f"http://127.0.0.1:{ports['http']}"
        entry = {"pipeline": "text-to-image", "model_id": T2I_MODEL, "url": echo_url, "capacity": 64}
        (work / "aiModels.json").write_text(json.dumps([entry]))
        (work / "echo_server.py").write_text(ECHO_SERVER)
        procs: list[tuple[subprocess.Popen[bytes], Path]] = []

        def start(args: list[str], name: str) -> None:
            log = work / f"{name}.log"
            procs.append((start_lpnode(args, log, cwd=work), log))

        try:
            orch = ["orchestrator", "--ai-models", str(work / "aiModels.json"), "--orch-secret", SECRET]
            orch += ["-useLiveRunners", "--service-addr", f"127.0.0.1:{ports['orch']}", "--data-dir", str(work / "o")]
            orch += ["--cli-addr", f"127.0.0.1:{ports['orch_cli']}", "--log-level", "warning"]
            start(orch, "orch")  # the external entry waits for the echo server: the orchestrator starts first
            echo_log = work / "echo.log"
            with echo_log.open("wb") as out:
                echo = [sys.executable, str(work / "echo_server.py"), str(ports["echo"]), orch_url, SECRET, APP]
                procs.append(
                    (subprocess.Popen(echo, stdout=out, stderr=subprocess.STDOUT, start_new_session=True), echo_log)
                )
            wait_for("the orchestrator", lambda: get_json(f"{orch_url}/status")["models"][0]["idle"], procs)
            app_url = wait_for("the app in the orchestrator's discovery", lambda: listed_app(orch_url), procs)
            gateway = ["gateway", "--orch-addr", f"127.0.0.1:{ports['orch']}"]
            gateway += ["--http-addr", f"127.0.0.1:{ports['http']}", "--cli-addr", f"127.0.0.1:{ports['cli']}"]
            gateway += ["--data-dir", str(work / "gw"), "--log-level", "warning"]
            start(gateway, "gateway")
            gateway_app = wait_for("the app in the gateway's discovery", lambda: listed_app(gateway_url), procs)
            plain = {"Content-Type": "application/json"}
            targets = {
                (APP_FAMILY, DIRECT): Target(f"{echo_url}/echo", APP_BODY, plain, "echo"),
                (APP_FAMILY, ORCH): Target(f"{app_url}/echo", APP_BODY, plain, "echo"),
                (APP_FAMILY, GATEWAY): Target(f"{gateway_app}/echo", APP_BODY, plain, "echo"),
                (BATCH_FAMILY, DIRECT): Target(f"{echo_url}/text-to-image", T2I_BODY, plain, "images"),
                (BATCH_FAMILY, ORCH): Target(
                    f"{orch_url}/text-to-image",
                    T2I_BODY,
                    job_headers(orch_url, work / "o" / "tls" / "cert.pem"),
                    "images",
                ),
                (BATCH_FAMILY, GATEWAY): Target(f"{gateway_url}/text-to-image", T2I_BODY, plain, "images"),
            }
            modes = asyncio.run(measure(targets, args.rounds, [1, 32], deadline))
        finally:
            for proc, _ in reversed(procs):
                stop_process(proc)
    table = report(modes)
    print(table)
    if args.write_docs:
        info = machine_info()
        section = "\n".join(
            [
                START_MARK,
                "## Runner app path (Live Runner): gateway → orchestrator → app, next to the batch relay",
                "",
                "`benchmarks/live_runner_path.py` runs one aiohttp echo server that is at once a single-shot runner "
                f"app `{APP}` (capacity 64, registered by heartbeat with lpnode's own registration code) and, as an "
                "external aiModels.json `url` entry, a text-to-image runner answering a fixed 1x1 PNG at once; one "
                "`lpnode orchestrator -useLiveRunners` (TLS) and one `lpnode gateway --orch-addr` it. The **app** "
                "family sends a small JSON body to `POST /echo` directly, through the orchestrator's reverse proxy "
                "(`/apps/<runner_id>/app/echo`: a session reserved and released per call) and through the gateway "
                f"(`/apps/{APP}/app/echo`). The **batch** family sends a text-to-image request directly, through "
                "the orchestrator's batch relay with a gateway's job headers (the orchestrator stores the PNG and "
                "answers its `/stream/` URL) and through the gateway's `POST /text-to-image`. Concurrency 1 and 32; "
                f"{args.rounds} interleaved rounds (at c=1, 20 requests per mode per round; at c=32, one burst "
                "per mode per round, the first mode rotating). Latency runs from the send to the last byte of the "
                "answer; throughput is requests / time in the mode's bursts.",
                "",
                "Command: `.venv/bin/python benchmarks/live_runner_path.py --write-docs`",
                "",
                f"Date: {dt.date.today().isoformat()}. Machine: {info['nproc']} CPUs ({info['cpu']}), "
                f"{info['os']}, Python {info['python']}. Load average (1 min) at the start: {load_at_start:.2f}.",
                "",
                table,
                "",
                "Both backends answer at once, so the ratios show the hops' own cost per request, not what a model "
                "sees: a call that computes for a second would see the added p50 and nothing else. The batch "
                "relay does more per request than the app proxy (job headers and auth token checked, the answer "
                "parsed and its image stored under `/stream/`), the app proxy streams bytes both ways and "
                "reserves a capacity slot per call. A load average above 2 means other work shared the 2 cores.",
                END_MARK,
            ]
        )
        write_docs(section, START_MARK, END_MARK)
        print("wrote docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
