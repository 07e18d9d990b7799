"""What does paying with tickets cost on the gateway path, next to the same path off-chain?

In one run, on one machine: ONE ``lpnode runner`` (tiny text-to-image model, ``--threads 1``, ``--max-in-flight
1``, a queue long enough for every concurrent request) and two gateway paths in front of it, each an ``lpnode
gateway`` → an ``lpnode orchestrator`` (TLS) whose aiModels.json lists that runner as an external ``url`` entry:

(a) off-chain: both nodes with their defaults (``Livepeer-Payment: ""``);
(b) paid: both nodes on a dev chain (:func:`lpnode.payments.devchain.start_devchain`: anvil with the project's
    contracts), each with a keystore wallet (``-network devchain -ethUrl -ethController -ethKeystorePath
    -ethPassword``); the orchestrator is registered active and prices the model so that one job costs one ticket's
    expected value (``--tickets-per-job``), the gateway's deposit and reserve are funded. Every job then carries a
    signed ticket, which the orchestrator checks, credits and debits.

The same JSON request (64x64, 2 steps, fixed seed) goes through both paths at concurrency 1 (the two paths
alternate request by request) and at ``--concurrency`` (one burst per path per round, the first one rotating),
so a slow patch of this shared VM hits both alike. Around every request (every burst) each process's CPU time is
read from /proc and credited to the path: CPU per job on the gateway and on the orchestrator, paid minus
off-chain, is what paying adds on each side.

A micro-benchmark row, in this process: sign one ticket, verify one ticket, make a one-ticket payment (the
gateway's ``Sender``), receive it (the orchestrator's ``Recipient``: decode, check, credit, debit); median of N.

Usage::

    python benchmarks/payments.py                # print the tables
    python benchmarks/payments.py --write-docs   # also update docs/benchmarks.md
    python benchmarks/payments.py --profile DIR  # the nodes under cProfile: DIR/{gateway,orchestrator}-*.prof
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import math
import os
import shlex
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp

from _common import (
    DOCS,
    ROOT,
    T2I_MODEL_ID,
    T2I_PIPELINE,
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
    start_lpnode,
    start_runner,
    stop_process,
    wait_idle,
)
from _common import write_docs as write_section

START_MARK = "<!-- payments:start -->"
END_MARK = "<!-- payments:end -->"
TARGET_CPU_MS = 1.0  # paying may add at most this much CPU per job on each side
TARGET_THROUGHPUT = 0.95  # paid throughput at least this share of the off-chain one
MAX_FAILED = 0.3  # stop when more than this share of a mode's requests failed
KEEP_ALIVE = 3.0  # the gateways (uvicorn) close idle connections after 5 s; the client drops them first
PASSWORD = "benchmark wallet password"
ETH = 10**18
OFF, PAID = "off-chain", "paid"
SIDES = ("gateway", "orchestrator")
AUTO_ADJUST_OVERHEAD = Fraction(101, 100)  # 1 + 1/100: the price overhead at the default txCostMultiplier


# -- what is measured -------------------------------------------------------------------------------


@dataclass
class Path_:
    """One gateway path: where its requests go and the pids of its processes by role."""

    key: str
    api_url: str
    admin_url: str
    orch_admin_url: str
    pids: dict[str, int]
    session: aiohttp.ClientSession | None = None

    def open(self, timeout: float) -> None:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEP_ALIVE)
        self.session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout))

    async def post(self, payload: bytes) -> tuple[float, bytes, str]:
        """One job: (seconds from the send to the last byte of the answer, the answer, what went wrong: empty
        when the answer is a 200)."""
        assert self.session is not None
        t0 = time.perf_counter()
        try:
            url = f"{self.api_url}/{T2I_PIPELINE}"
            async with self.session.post(url, data=payload, headers={"Content-Type": "application/json"}) as r:
                data = await r.read()
                latency = time.perf_counter() - t0
                if r.status != 200:
                    return latency, data, f"{r.status} {' '.join(data[:200].decode(errors='replace').split())}"
        except aiohttp.ClientError as exc:
            return time.perf_counter() - t0, b"", f"{type(exc).__name__}: {exc}"
        return latency, data, ""

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


@dataclass
class Mode:
    path: Path_
    concurrency: int
    latencies: list[float] = field(default_factory=list)  # seconds, one per request
    wall: float = 0.0  # seconds in this mode's timed blocks
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds by role (gateway, orchestrator, runner, ...)
    errors: list[str] = field(default_factory=list)
    tickets: int = 0  # tickets the paid gateway sent for this mode's jobs (failed ones included)

    @property
    def key(self) -> str:
        return self.path.key

    @property
    def tickets_per_job(self) -> float:
        return self.tickets / max(self.requests + len(self.errors), 1)

    @property
    def requests(self) -> int:
        return len(self.latencies)

    def quantile(self, q: float) -> float:
        return nearest_rank(self.latencies, q) if self.latencies else math.nan

    @property
    def throughput(self) -> float:
        return self.requests / self.wall if self.wall else math.nan

    def cpu_ms(self, role: str) -> float:
        """CPU time of ``role`` per request of this mode, in ms."""
        return self.cpu.get(role, 0.0) / max(self.requests, 1) * 1e3


@dataclass
class Outcome:
    modes: list[Mode]
    concurrencies: list[int]
    pairs: list[float]  # paid − off-chain latency of each c=1 cycle, seconds
    idle: dict[str, dict[str, float]]  # path -> role -> CPU ms per second while no job runs
    tickets: dict[str, int]  # what the paid nodes counted over the timed rounds
    paid_jobs: int  # paid jobs in the timed rounds (failed ones included: they may have paid)
    price: Fraction  # wei per pixel
    ticket_ev: Fraction
    other_cpus: float
    steal_cpus: float
    micro: list[tuple[str, float, int]] = field(default_factory=list)  # (what, median µs, samples)

    def mode(self, key: str, concurrency: int) -> Mode:
        return next(m for m in self.modes if m.key == key and m.concurrency == concurrency)


# -- the nodes --------------------------------------------------------------------------------------


def get_json(url: str, tls: ssl.SSLContext | None = None) -> Any:
    with urllib.request.urlopen(url, timeout=5, context=tls) as response:
        return json.loads(response.read())


def wait_until(what: str, ready: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Poll ``ready`` until it is true; RuntimeError when ``proc`` exits, TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    seen = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode}:\n{log_tail(log)}")
        try:
            if ready():
                return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            seen = f"{type(exc).__name__}: {exc}"
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s ({seen}):\n{log_tail(log)}")


def orchestrator_ready(base_url: str, tls: ssl.SSLContext) -> bool:
    models = get_json(f"{base_url}/status", tls)["models"]
    return any(r["state"] in ("IDLE", "OK") for m in models for r in m["runners"])


def gateway_ready(admin_url: str, api_url: str, payload: bytes) -> bool:
    known = get_json(f"{admin_url}/status")["orchestrators"]
    if not known or not all(o["ready"] for o in known):
        return False
    request = urllib.request.Request(
        f"{api_url}/{T2I_PIPELINE}", data=payload, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return bool(response.status == 200)


def keystore(directory: Path, key: bytes) -> list[str]:
    """A go-ethereum keystore for ``key`` in ``directory`` and a password file beside it: the node's flags."""
    from eth_account import Account

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "keystore.json"
    # A cheap scrypt: unlocking happens at start, outside the timed rounds, and this wallet guards nothing.
    path.write_text(json.dumps(Account.encrypt(key, PASSWORD, kdf="scrypt", iterations=2**10)))
    (directory / "password").write_text(PASSWORD + "\n")
    return ["-ethKeystorePath", str(path), "-ethPassword", str(directory / "password")]


def start_profiled(out: Path, args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """``python -m cProfile -o OUT -m lpnode.cli ARGS``, otherwise as ``_common.start_lpnode``; the profile is
    written when the process exits on SIGTERM."""
    out.parent.mkdir(parents=True, exist_ok=True)
    environ = {k: v for k, v in os.environ.items() if k not in {"PIPELINE", "MODEL_ID", "MODEL_DIR", "AUTH_TOKEN"}}
    environ.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "lpnode.cli", *args]
    with log_path.open("wb") as log:
        return subprocess.Popen(cmd, env=environ, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


class Stack:
    """The processes of one run; :meth:`stop` stops every one started, each before the one it relays to."""

    def __init__(self, tmp: Path, profile: Path | None = None) -> None:
        self.tmp = tmp
        self.profile = profile  # where the gateways and orchestrators write a cProfile at exit, if set
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self.orch_key = b""  # the paid nodes' wallets (anvil's public development keys)
        self.gateway_key = b""

    def start(self, name: str, command: str, args: list[str]) -> subprocess.Popen[bytes]:
        self.logs[name] = self.tmp / f"{name}.log"
        if command == "runner":
            proc = start_runner(args, self.logs[name])
        elif self.profile is not None:
            proc = start_profiled(self.profile / f"{name}.prof", [command, *args], self.logs[name])
        else:
            proc = start_lpnode([command, *args], self.logs[name])
        self.procs[name] = proc
        return proc

    def path(self, key: str, runner_url: str, payload: bytes, price: Fraction | None, chain_flags: list[str]) -> Path_:
        """Start an orchestrator (priced at ``price`` wei per pixel when paid) and a gateway in front of it."""
        tag = "paid" if price is not None else "off"
        orch_port, orch_admin, api_port, admin_port = free_port(), free_port(), free_port(), free_port()
        entry: dict[str, Any] = {"pipeline": T2I_PIPELINE, "model_id": T2I_MODEL_ID, "url": runner_url}
        entry["capacity"] = 256
        if price is not None:
            entry["price_per_unit"] = int(price)
        ai_models = self.tmp / f"aiModels-{tag}.json"
        ai_models.write_text(json.dumps([entry]))
        orch_data = self.tmp / f"orchestrator-{tag}"
        args = ["--ai-models", str(ai_models), "--data-dir", str(orch_data), "--exit-with-parent"]
        args += ["--service-addr", f"127.0.0.1:{orch_port}", "--cli-addr", f"127.0.0.1:{orch_admin}"]
        wallet: list[str] = []
        if price is not None:
            wallet = keystore(self.tmp / f"wallet-orchestrator-{tag}", self.orch_key)
        orch = self.start(f"orchestrator-{tag}", "orchestrator", [*args, *chain_flags, *wallet])
        cert = orch_data / "tls" / "cert.pem"
        tls: ssl.SSLContext | None = None

        def orch_up() -> bool:
            nonlocal tls
            if tls is None:
                if not cert.exists():
                    return False
                tls = ssl.create_default_context(cafile=str(cert))
            return orchestrator_ready(f"https://127.0.0.1:{orch_port}", tls)

        wait_until(f"orchestrator ({key})", orch_up, orch, self.logs[f"orchestrator-{tag}"], 180)
        print(f"{key} orchestrator ready on 127.0.0.1:{orch_port} (pid {orch.pid})", flush=True)
        api_url, admin_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{admin_port}"
        args = ["--orch-addr", f"127.0.0.1:{orch_port}", "--http-addr", f"127.0.0.1:{api_port}"]
        args += ["--cli-addr", f"127.0.0.1:{admin_port}", "--data-dir", str(self.tmp / f"gateway-{tag}")]
        if price is not None:
            wallet = keystore(self.tmp / f"wallet-gateway-{tag}", self.gateway_key)
        gateway = self.start(f"gateway-{tag}", "gateway", [*args, *chain_flags, *wallet])
        wait_until(
            f"gateway ({key})", lambda: gateway_ready(admin_url, api_url, payload), gateway,
            self.logs[f"gateway-{tag}"], 120,
        )  # fmt: skip
        print(f"{key} gateway ready on {api_url} (pid {gateway.pid})", flush=True)
        pids = {"gateway": gateway.pid, "orchestrator": orch.pid}
        return Path_(key, api_url, admin_url, f"http://127.0.0.1:{orch_admin}", pids)

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited during the run:\n{log_tail(self.logs[name])}")

    def stop(self) -> None:
        for name in [n for n in self.procs if n.startswith("gateway")]:
            stop_process(self.procs[name], timeout=15)
        for name in [n for n in self.procs if n.startswith("orchestrator")]:
            stop_process(self.procs[name], timeout=15)
        if "runner" in self.procs:
            stop_process(self.procs["runner"], timeout=15)


# -- the run ----------------------------------------------------------------------------------------


class Probe:
    """Reads every process's CPU time and credits the deltas to a mode, by role."""

    def __init__(self, shared: dict[str, int]) -> None:
        self.shared = shared  # role -> pid of the processes both paths use (runner, chain)

    def cpu(self, path: Path_) -> dict[str, float]:
        out = {role: cpu_seconds(pid) for role, pid in {**self.shared, **path.pids}.items()}
        out["client"] = time.process_time()
        return out

    def credit(self, mode: Mode, before: dict[str, float]) -> None:
        after = self.cpu(mode.path)
        for role, value in after.items():
            mode.cpu[role] = mode.cpu.get(role, 0.0) + value - before[role]


def paid_counts(path: Path_) -> dict[str, int]:
    """Tickets the paid gateway sent and the paid orchestrator received, won and credited so far."""
    gateway = get_json(f"{path.admin_url}/status")["payments"]
    orch = get_json(f"{path.orch_admin_url}/status")["payments"]
    return {
        "sent": sum(int(o["tickets"]) for o in gateway["orchestrators"]),
        "received": int(orch["tickets"].get("received", 0)),
        "won": int(orch["tickets"].get("won", orch["tickets"].get("winning", 0))),
        "refused": sum(int(v) for v in orch["refused"].values()),
    }


async def idle_cpu(paths: list[Path_], probe: Probe, seconds: float) -> dict[str, dict[str, float]]:
    """CPU ms per second each path's processes spend while no job runs (the chain watcher's polling, timers)."""
    if seconds <= 0:
        return {p.key: dict.fromkeys(SIDES, math.nan) for p in paths}
    before = {p.key: probe.cpu(p) for p in paths}
    await asyncio.sleep(seconds)
    out = {}
    for p in paths:
        after = probe.cpu(p)
        out[p.key] = {role: (after[role] - before[p.key][role]) / seconds * 1e3 for role in SIDES}
    return out


async def run(args: argparse.Namespace, paths: list[Path_], probe: Probe, payload: bytes) -> Outcome:
    concurrencies: list[int] = args.concurrency
    singles = [Mode(p, 1) for p in paths]
    bursts = {c: [Mode(p, c) for p in paths] for c in concurrencies}
    pairs: list[float] = []
    deadline = Deadline(args.budget)
    planned = {1: args.requests, **{c: c * args.rounds for c in concurrencies}}
    for p in paths:
        p.open(args.timeout)

    def checked(mode: Mode, answer: bytes) -> None:
        images = json.loads(answer)["images"]
        if len(images) != 1 or not images[0]["url"].startswith(f"{mode.path.api_url}/stream/"):
            raise RuntimeError(f"{mode.key}: unexpected answer {answer[:200]!r}")

    def failed(mode: Mode, problem: str) -> None:
        mode.errors.append(problem)
        print(f"  {mode.key}, c={mode.concurrency}: a request failed: {problem}", flush=True)
        if len(mode.errors) > max(5, planned[mode.concurrency] * MAX_FAILED):
            raise RuntimeError(f"{mode.key}, c={mode.concurrency}: {len(mode.errors)} requests failed: {problem}")

    def sent(mode: Mode) -> int:
        # Read between timed blocks (outside the CPU windows): the paid gateway's tickets so far.
        if mode.key != PAID:
            return 0
        return sum(int(o["tickets"]) for o in get_json(f"{mode.path.admin_url}/status")["payments"]["orchestrators"])

    async def one(mode: Mode) -> float | None:
        deadline.check(mode.key)
        before = probe.cpu(mode.path)
        latency, answer, problem = await mode.path.post(payload)
        if problem:  # neither its CPU time nor its latency go to the mode
            failed(mode, problem)
            return None
        probe.credit(mode, before)
        mode.latencies.append(latency)
        mode.wall += latency
        checked(mode, answer)
        return latency

    async def burst(mode: Mode) -> None:
        deadline.check(mode.key)
        tickets = sent(mode)
        before = probe.cpu(mode.path)
        started = time.perf_counter()
        async with asyncio.timeout(min(args.timeout * 2, max(1.0, deadline.left()))):
            done = await asyncio.gather(*(mode.path.post(payload) for _ in range(mode.concurrency)))
        mode.wall += time.perf_counter() - started
        probe.credit(mode, before)
        mode.tickets += sent(mode) - tickets
        for latency, answer, problem in done:
            if problem:
                failed(mode, problem)
                continue
            mode.latencies.append(latency)
            checked(mode, answer)

    async def a_round(modes: list[Mode], conc: dict[int, list[Mode]], cycles: int, turn: int, keep: bool) -> None:
        # The paid gateway's ticket count is read around the block of c=1 requests, not around each one.
        tickets = {m.key: sent(m) for m in modes}
        for k in range(cycles):
            # Alternate which path goes first, so neither always follows the other's job.
            order = modes if (turn + k) % 2 == 0 else modes[::-1]
            got = {m.key: await one(m) for m in order}
            off, paid = got[OFF], got[PAID]
            if keep and off is not None and paid is not None:
                pairs.append(paid - off)
        for m in modes:
            m.tickets += sent(m) - tickets[m.key]
        for group in conc.values():
            for k in range(len(group)):
                await burst(group[(turn + k) % len(group)])

    try:
        if args.warmup:
            print(f"warm-up: {args.warmup} requests per path at c=1, one burst per path per concurrency ...")
            scratch = [Mode(m.path, 1) for m in singles]
            await a_round(scratch, {c: [Mode(m.path, c) for m in g] for c, g in bursts.items()}, args.warmup, 0, False)
        print(f"idle CPU of each node over {args.idle:g}s ...", flush=True)
        idle = await idle_cpu(paths, probe, args.idle)
        paid = next(p for p in paths if p.key == PAID)
        counts = paid_counts(paid)
        sizes = [args.requests // args.rounds + (i < args.requests % args.rounds) for i in range(args.rounds)]
        busy, steal = machine_cpu_seconds()
        own = sum(sum(probe.cpu(p).values()) for p in paths)
        started = time.monotonic()
        for i, n in enumerate(sizes):
            print(f"round {i + 1}/{len(sizes)}: {n} requests per path at c=1, one burst per path per concurrency")
            await a_round(singles, bursts, n, i, keep=True)
        elapsed = time.monotonic() - started
        busy_end, steal_end = machine_cpu_seconds()
        spent = sum(sum(probe.cpu(p).values()) for p in paths) - own
        after = paid_counts(paid)
    finally:
        for p in paths:
            await p.close()
    modes = [*singles, *(m for c in concurrencies for m in bursts[c])]
    paid_jobs = sum(m.requests + len(m.errors) for m in modes if m.key == PAID)
    return Outcome(
        modes=modes,
        concurrencies=[1, *concurrencies],
        pairs=pairs,
        idle=idle,
        tickets={k: after[k] - counts[k] for k in after},
        paid_jobs=paid_jobs,
        price=args.price,
        ticket_ev=args.ticket_ev,
        other_cpus=max(0.0, (busy_end - busy - spent) / elapsed),
        steal_cpus=(steal_end - steal) / elapsed,
    )


def measure(args: argparse.Namespace, models_dir: Path, tmp: Path) -> Outcome:
    """Start the runner, the dev chain and both paths, run the rounds, always stop every process."""
    import uvloop

    from lpnode.payments.devchain import start_devchain
    from lpnode.payments.settings import DEFAULT_TICKET_EV

    body = {
        "model_id": T2I_MODEL_ID,
        "prompt": "a lighthouse on a cliff at dusk",
        "width": args.size,
        "height": args.size,
        "num_inference_steps": args.steps,
        "seed": 1,
    }
    payload = json.dumps(body).encode()
    # One job's units are its pixels (go-livepeer's rule for text-to-image): price it at N tickets' EV a job.
    # The orchestrator advertises its price times go's -autoAdjustPrice overhead (1 + 1/txCostMultiplier, 1.01 at
    # the default multiplier): the configured price is divided by it and rounded down to whole wei, so a job costs
    # a hair under N EVs and takes exactly N tickets (a hair over would take N + 1 whenever the credit is reserved
    # by a concurrent job).
    args.ticket_ev = Fraction(DEFAULT_TICKET_EV)
    args.advertised = args.ticket_ev * args.tickets_per_job / (args.size * args.size)
    args.price = Fraction(math.floor(args.advertised / AUTO_ADJUST_OVERHEAD))
    runner_port = free_port()
    runner_url = f"http://127.0.0.1:{runner_port}"
    stack = Stack(tmp, args.profile.resolve() if args.profile else None)
    loop = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    chain = None
    try:
        runner = stack.start("runner", "runner", runner_args(models_dir, runner_port, args.max_queue))
        print("starting the dev chain (anvil, the project's contracts) ...", flush=True)
        chain = loop.run(start_devchain(round_length=200))
        orch_account, gateway_account = chain.accounts[1], chain.accounts[2]
        loop.run(chain.activate(orch_account.address))
        loop.run(chain.fund_sender(gateway_account.key, ETH, ETH))
        stack.orch_key, stack.gateway_key = orch_account.key, gateway_account.key
        print(f"dev chain on {chain.url} (anvil pid {chain.pid})", flush=True)
        wait_idle(runner_port, runner, stack.logs["runner"], timeout=180)
        print(f"runner IDLE on {runner_url} (pid {runner.pid})", flush=True)
        chain_flags = ["-network", "devchain", "-ethUrl", chain.url, "-ethController", chain.controller]
        paths = [
            stack.path(OFF, runner_url, payload, None, []),
            stack.path(PAID, runner_url, payload, args.price, chain_flags),
        ]
        probe = Probe({"runner": runner.pid, "chain": chain.pid})
        outcome = loop.run(run(args, paths, probe, payload))
        stack.check_alive()
        outcome.micro = micro(args)
        return outcome
    finally:
        stack.stop()
        if chain is not None:
            loop.run(chain.close())
        loop.close()


# -- the micro-benchmark ----------------------------------------------------------------------------


class _StaticChain:
    """A chain view that never changes: every sender funded, every recipient active (no I/O)."""

    def current_round(self) -> int:
        return 100

    def last_initialized_round(self) -> int:
        return 100

    def round_block_hash(self) -> bytes:
        return bytes(range(32))

    def last_seen_l1_block(self) -> int:
        return 5_000

    def gas_price(self) -> int:
        return 10**9

    def transcoder_pool_size(self) -> int:
        return 1

    def is_active(self, address: bytes) -> bool:
        return True

    async def sender_info(self, sender: bytes) -> Any:
        from lpnode.payments.chain_view import SenderInfo

        return SenderInfo(ETH, 0, ETH, 0)

    async def claimed_reserve(self, sender: bytes, recipient: bytes) -> int:
        return 0


def micro(args: argparse.Namespace) -> list[tuple[str, float, int]]:
    """Median µs of each step of one paid job, in this process, at most ``--micro`` samples and 20 s each."""
    from lpnode.payments import signatures
    from lpnode.payments.keystore import Wallet
    from lpnode.payments.recipient import Recipient, RecipientSettings
    from lpnode.payments.sender import Sender, SenderBalances, encode_payment
    from lpnode.payments.ticket import Ticket
    from lpnode.protocol.capabilities import Capability, price_info
    from lpnode.protocol.lp_rpc_pb2 import OrchestratorInfo, Payment

    gateway, orch = Wallet.from_key(b"\x11" * 32), Wallet.from_key(b"\x22" * 32)
    chain = _StaticChain()
    recipient = Recipient(orch.address, chain, RecipientSettings(ticket_ev=args.ticket_ev))
    sender = Sender(gateway, chain)
    price = price_info(args.price)
    manifest = f"{int(Capability.TEXT_TO_IMAGE)}_{T2I_MODEL_ID}"
    units = args.size * args.size
    n = args.micro
    loop = asyncio.new_event_loop()
    out: list[tuple[str, float, int]] = []

    def timed(what: str, step: Callable[[int], object]) -> None:
        samples: list[float] = []
        stop_at = time.monotonic() + 20
        for i in range(n):
            t0 = time.perf_counter()
            step(i)
            samples.append(time.perf_counter() - t0)
            if time.monotonic() > stop_at:
                break
        out.append((what, statistics.median(samples) * 1e6, len(samples)))

    try:
        params = loop.run_until_complete(recipient.ticket_params(gateway.address, args.price))
        session = sender.start_session(OrchestratorInfo(ticket_params=params, price_info=price))
        ticket = Ticket(
            recipient=orch.address, sender=gateway.address, face_value=10**17, win_prob=2**200, sender_nonce=1,
            recipient_rand_hash=bytes(params.recipient_rand_hash), creation_round=100,
            creation_round_block_hash=bytes(range(32)),
        )  # fmt: skip
        sig = signatures.sign(gateway.key, ticket.hash())
        timed("ticket hash", lambda i: ticket.hash())
        timed("sign one ticket (hash + secp256k1)", lambda i: signatures.sign(gateway.key, ticket.hash()))
        timed("verify one ticket (hash + recover)", lambda i: signatures.verify(gateway.address, ticket.hash(), sig))
        # A session accepts at most 600 nonces per set of params: stay under it.
        count = min(n, 500)
        headers: list[str] = []

        def create(i: int) -> None:
            payment = loop.run_until_complete(sender.create_payment(session, 1, price))
            headers.append(encode_payment(payment))

        saved, n = n, count
        timed("create a one-ticket payment (gateway: validate, sign, encode)", create)

        def receive(i: int) -> None:
            payment = Payment.FromString(base64.b64decode(headers[i]))
            loop.run_until_complete(recipient.process_payment(payment, manifest))
            recipient.debit_fees(gateway.address, manifest, price, units)

        n = len(headers)
        timed("receive it (orchestrator: decode, check, credit, debit)", receive)
        n = saved
        balances = SenderBalances()

        def account(i: int) -> None:
            tickets, staged = balances.stage("k", args.price * units, args.ticket_ev)
            balances.settle("k", staged, tickets, args.ticket_ev, args.price * units)

        timed("gateway accounting (stage + settle)", account)
    finally:
        loop.close()
    return out


# -- reporting --------------------------------------------------------------------------------------


def table(out: Outcome) -> str:
    rows = [
        "| path | c | requests | failed | tickets/job | p50 (ms) | p99 (ms) | throughput (req/s) | CPU ms/job: "
        "gateway | orchestrator | runner | chain (anvil) | client |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in out.modes:
        rows.append(
            f"| {m.key} | {m.concurrency} | {m.requests} | {len(m.errors)} | "
            f"{f'{m.tickets_per_job:.2f}' if m.key == PAID else '–'} | {m.quantile(0.5) * 1e3:.1f} | "
            f"{m.quantile(0.99) * 1e3:.1f} | {m.throughput:.2f} | {m.cpu_ms('gateway'):.2f} | "
            f"{m.cpu_ms('orchestrator'):.2f} | {m.cpu_ms('runner'):.1f} | {m.cpu_ms('chain'):.2f} | "
            f"{m.cpu_ms('client'):.2f} |"
        )
    return "\n".join(rows)


def background_ms(out: Outcome, mode: Mode, side: str) -> float:
    """CPU ms per job that ``side`` of ``mode``'s path would have spent anyway, idle, over the mode's timed blocks
    (its idle rate × the blocks' wall time / jobs): timers and, on the paid side, the chain watcher's polling."""
    return out.idle[mode.key][side] * mode.wall / max(mode.requests, 1)


def added_cpu(out: Outcome, c: int, side: str, *, net: bool) -> float:
    """Paid minus off-chain CPU ms per job on ``side`` at concurrency ``c``; ``net``: less each one's idle share."""
    off, paid = out.mode(OFF, c), out.mode(PAID, c)
    added = paid.cpu_ms(side) - off.cpu_ms(side)
    if net:
        added -= background_ms(out, paid, side) - background_ms(out, off, side)
    return added


def comparison(out: Outcome) -> tuple[list[str], bool, bool]:
    """The table of what paying adds, whether every target is met on the raw CPU figures, and on the net ones."""
    rows = [
        "| c | added p50 (ms) | added p99 (ms) | throughput paid / off-chain | added CPU ms/job: gateway | "
        "orchestrator | net of idle: gateway | orchestrator | targets: CPU (raw / net) | throughput |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    raw_met = net_met = True
    for c in out.concurrencies:
        off, paid = out.mode(OFF, c), out.mode(PAID, c)
        ratio = paid.throughput / off.throughput
        raw = {side: added_cpu(out, c, side, net=False) for side in SIDES}
        net = {side: added_cpu(out, c, side, net=True) for side in SIDES}
        ok_raw = all(v <= TARGET_CPU_MS for v in raw.values())
        ok_net = all(v <= TARGET_CPU_MS for v in net.values())
        ok_tp = ratio >= TARGET_THROUGHPUT
        raw_met, net_met = raw_met and ok_raw and ok_tp, net_met and ok_net and ok_tp
        rows.append(
            f"| {c} | {(paid.quantile(0.5) - off.quantile(0.5)) * 1e3:+.1f} | "
            f"{(paid.quantile(0.99) - off.quantile(0.99)) * 1e3:+.1f} | {ratio:.3f} | {raw['gateway']:+.2f} | "
            f"{raw['orchestrator']:+.2f} | {net['gateway']:+.2f} | {net['orchestrator']:+.2f} | "
            f"{met(ok_raw)} / {met(ok_net)} | {met(ok_tp)} |"
        )
    return rows, raw_met, net_met


def report_lines(out: Outcome) -> list[str]:
    rows, raw_met, net_met = comparison(out)
    lines = [
        "Paid minus off-chain, per concurrency (*net of idle*: less what each node spends idle over the same "
        "time, its timers and the chain watcher's polling, which a busier node spreads over more jobs):",
        "",
    ]
    lines += [*rows, ""]
    lines.append(
        f"Targets (≤ {TARGET_CPU_MS:g} ms added CPU per job on each side, paid throughput ≥ {TARGET_THROUGHPUT:g} "
        f"of off-chain, at every concurrency): on the raw CPU figures {met(raw_met)}; net of idle {met(net_met)}."
    )
    lines.append("")
    if out.pairs:
        low, high = (nearest_rank(out.pairs, x) * 1e3 for x in (0.25, 0.75))
        lines.append(
            f"- c=1, request by request ({len(out.pairs)} side-by-side cycles, paid − off-chain): median "
            f"**{statistics.median(out.pairs) * 1e3:+.2f} ms** (quartiles {low:+.2f} / {high:+.2f} ms)"
        )
    t = out.tickets
    per_job = t["sent"] / out.paid_jobs if out.paid_jobs else 0.0
    lines.append(
        f"- tickets over the timed rounds: the paid gateway sent {t['sent']} for {out.paid_jobs} paid jobs "
        f"({per_job:.2f} a job), the orchestrator received {t['received']}, {t['won']} won, {t['refused']} "
        f"payments refused; price {int(out.price)} wei per pixel (advertised ×1.01), ticket EV "
        f"{float(out.ticket_ev):g} wei"
    )
    idle = ", ".join(
        f"{key}: gateway {out.idle[key]['gateway']:.2f}, orchestrator {out.idle[key]['orchestrator']:.2f}"
        for key in (OFF, PAID)
    )
    lines.append(f"- idle CPU (ms per second, no job running; the chain watcher's polling on the paid side): {idle}")
    lines.append(
        f"- the machine is shared: during the timed rounds other processes kept about {out.other_cpus:.1f} of its "
        f"{os.cpu_count() or 1} CPUs busy on average, and the hypervisor stole about {out.steal_cpus:.1f}."
    )
    for m in out.modes:
        if m.errors:
            seen = sorted(set(m.errors), key=m.errors.index)
            lines.append(
                f"- failed requests, left out of the figures: {m.key} at c={m.concurrency}: {len(m.errors)} "
                f"({'; '.join(f'`{e}`' for e in seen[:3])})"
            )
    if out.micro:
        lines += ["", "In this process (median of N, no I/O; the chain view is a constant):", ""]
        lines += ["| step | median (µs) | N |", "|---|---:|---:|"]
        lines += [f"| {what} | {us:.1f} | {count} |" for what, us, count in out.micro]
    return lines


def docs_section(command: str, machine: dict[str, str], args: argparse.Namespace, out: Outcome) -> str:
    today = dt.datetime.now(dt.UTC).date().isoformat()
    conc = ", ".join(str(c) for c in out.concurrencies[:-1]) + f" and {out.concurrencies[-1]}"
    return "\n".join(
        [
            START_MARK,
            "## Payments: the gateway path paid with tickets against the same path off-chain",
            "",
            "`benchmarks/payments.py` sends the same tiny text-to-image request "
            f"({args.size}x{args.size}, {args.steps} steps, fixed seed) through two gateway paths in front of one "
            f"`lpnode runner`, in the same run, at concurrency {conc}:",
            "",
            "- **off-chain**: `lpnode gateway` → `lpnode orchestrator` (TLS) → the runner (an external `url` entry "
            "in aiModels.json), both nodes with their defaults.",
            "- **paid**: the same, both nodes on a dev chain (anvil with the project's contracts, "
            "`-network devchain -ethUrl … -ethController …`, a keystore wallet each); the orchestrator is active "
            f"and prices the model at {int(args.price)} wei per pixel (advertised ×1.01, go's `-autoAdjustPrice` "
            f"overhead), so one job costs just under {args.tickets_per_job} ticket EV ({float(args.ticket_ev):g} "
            "wei, the default `-ticketEV`) and every job carries a signed ticket (the *tickets/job* column) that "
            "the orchestrator checks, credits and debits; the gateway's deposit "
            "and reserve hold 1 ETH each. Winning tickets are redeemed on chain as usual (rare at these odds).",
            "- Client: one asyncio process (uvloop, aiohttp, one keep-alive session per path). Latency runs from "
            "the send to the last byte of the answer. Throughput: requests / time in the mode's timed blocks (a "
            "burst of c requests at c>1). CPU per job: each process's CPU time (per-thread scheduler statistics "
            "in /proc) over the mode's timed blocks, divided by its jobs; added CPU = paid − off-chain, per side.",
            f"- Interleaving: after {args.warmup} warm-up requests per path and one burst per path, "
            f"{args.rounds} rounds: at c=1 the paths alternate request by request ({args.requests} each in all), "
            "then for each concurrency each path sends one burst, the first one rotating.",
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


def reading(args: argparse.Namespace, out: Outcome) -> list[str]:
    """How to read the figures: the run's own numbers, and what cProfile showed in other runs of this script."""
    micro = {what.split(" (")[0]: us for what, us, _ in out.micro}
    paid1, off1 = out.mode(PAID, 1), out.mode(OFF, 1)
    idle_added = {side: out.idle[PAID][side] - out.idle[OFF][side] for side in SIDES}
    per_job = {side: idle_added[side] * paid1.wall / max(paid1.requests, 1) for side in SIDES}
    create, receive = micro.get("create a one-ticket payment", math.nan), micro.get("receive it", math.nan)
    return [
        "Reading (the profile comes from other runs of this script with `--profile DIR`, which runs the gateways "
        "and orchestrators under cProfile, 300 jobs at c=1; the profiler inflates call-heavy code, so read the "
        "shares):",
        "",
        "- **What paying does per job.** The gateway reserves its credit, signs one ticket and the segment "
        "credentials (a second signature; go-livepeer signs both too), encodes the `Payment` into "
        "`Livepeer-Payment` and settles the credit after the answer. The orchestrator checks the segment "
        "signature, decodes the payment, recomputes `recipientRand` (HMAC), checks the ticket (hash, signature "
        "recovery, nonce, expiry, win test), credits its EV, counts the job's units from the body and debits the "
        f"fee after the answer. In this process the ticket work alone costs {create:.0f} µs on the gateway side "
        f"and {receive:.0f} µs on the orchestrator side (the micro table): the crypto is not where the "
        "millisecond goes.",
        "- **The raw figures carry a fixed cost that is not per job**: on chain each node polls the chain every "
        "5 s (blocks, gas price, rounds, the senders' deposits: six to nine JSON-RPC calls through web3, each "
        "in a worker thread). Idle, that came to "
        f"{idle_added['gateway']:+.1f} ms of CPU per second on the gateway and {idle_added['orchestrator']:+.1f} "
        f"ms/s on the orchestrator over their off-chain twins; at c=1 here (about {paid1.throughput:.0f} jobs/s) "
        f"that is {per_job['gateway']:.2f} and {per_job['orchestrator']:.2f} ms a job. It shrinks per job as a "
        "node gets busier and grows as it idles; the *net of idle* columns take it out. The idle rates come from "
        f"{args.idle:g} s of idling, a few polls, so the net figures are within a few tenths of a ms.",
        "- **Profile, gateway** (the paid path's own functions, per job): making the payment (checking the "
        "params, hashing and signing the ticket, the protobuf) about 45%; signing the segment credentials about "
        "20%; the rest is bookkeeping (finding the session, checking funds and price, encoding the header, "
        "staging and settling the credit). cProfile inflates the keccak and secp256k1 wrappers many times over "
        "(in this process a ticket's hash and signature take about 35 µs together, the micro table), so the "
        "bookkeeping's real share is larger than it shows. Loading the wallet key into a secp256k1 key object "
        "used to cost as much as the signature itself, twice a job; `signatures.sign` now keeps the key loaded "
        "(signing went from about 60 to 30 µs).",
        "- **Profile, orchestrator**: the ticket checks (`Recipient.process_payment`: decoding, HMAC, hash, "
        "signature recovery, nonce and balance bookkeeping) about half of the paid path's own work; checking the "
        "segment signature about a quarter; counting the job's units from its body about 15%; settling and "
        "debiting about 10%. Apart from that, once a second the count of received tickets is written to the "
        "redemption queue's SQLite database (`synchronous=FULL`) on the event loop: 2 to 10 ms of blocked loop "
        "each time on this VM (disk flushes vary), which lands on whichever job is in flight and shows at p99 "
        "rather than p50.",
        f"- **Latency**: at c=1 the paired median came to {statistics.median(out.pairs) * 1e3:+.2f} ms "
        f"(p50 {off1.quantile(0.5) * 1e3:.1f} → {paid1.quantile(0.5) * 1e3:.1f} ms); at c>1 latency is "
        "queueing at the one runner, so the paid path's cost shows only through throughput, which stayed within "
        "the noise of the off-chain one."
        if out.pairs
        else "- **Latency**: no side-by-side pairs in this run.",
        "- **Noise**: this VM is shared (the machine line above); between runs the added CPU per job moves by a "
        "few tenths of a ms and the throughput ratio by a few percent either way.",
        "",
    ]


# -- main -------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--requests", type=int, default=200, help="timed requests per path at c=1 (default 200)")
    p.add_argument("--rounds", type=int, default=10, help="rounds; each has one burst per path (default 10)")
    p.add_argument("--warmup", type=int, default=10, help="untimed requests per path at c=1 first (default 10)")
    p.add_argument("--concurrency", default="16", help="requests at once in the bursts, comma-separated (16)")
    p.add_argument("--tickets-per-job", type=int, default=1, help="a job's price in ticket EVs (default 1)")
    p.add_argument("--steps", type=int, default=2, help="num_inference_steps (default 2)")
    p.add_argument("--size", type=int, default=64, help="image width and height (default 64)")
    # The chain watcher polls every 5 s: several polls make an idle rate.
    p.add_argument("--idle", type=float, default=20.0, help="seconds to measure each node's idle CPU (default 20)")
    p.add_argument("--micro", type=int, default=500, help="samples per in-process step (default 500)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    p.add_argument("--budget", type=float, default=420.0, help="seconds for the timed rounds (default 420)")
    p.add_argument(
        "--profile", type=Path, help="run the gateways and orchestrators under cProfile, writing NAME.prof here"
    )
    p.add_argument("--write-docs", action="store_true", help=f"update {DOCS.relative_to(ROOT)}")
    args = p.parse_args(argv)
    try:
        args.concurrency = sorted({int(c) for c in args.concurrency.split(",") if c.strip()})
    except ValueError:
        p.error("--concurrency takes comma-separated whole numbers, such as 16")
    if not args.concurrency or min(args.concurrency) < 2:
        p.error("--concurrency: every value must be >= 2")
    if min(args.requests, args.rounds, args.steps, args.tickets_per_job, args.micro) < 1 or args.warmup < 0:
        p.error("--requests, --rounds, --steps, --tickets-per-job, --micro must be >= 1, --warmup >= 0")
    if args.size < 8 or args.idle < 0:
        p.error("--size must be >= 8, --idle >= 0")
    args.rounds = min(args.rounds, args.requests)
    args.max_queue = max(128, max(args.concurrency) * 4)  # both paths' bursts queue at the one runner
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    # Ctrl-C and SIGTERM unwind through the finally blocks that stop every process started here.
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
            [".venv/bin/python", "benchmarks/payments.py", *(argv if argv is not None else sys.argv[1:])]
        )
        write_section(docs_section(command, machine_info(), args, out), START_MARK, END_MARK)
        print(f"wrote {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
