"""``lpnode up``: the whole Livepeer AI stack on one machine, offline: gateway, orchestrator and runners.

Without ``--ai-models`` it builds the tiny models into ``DATA_DIR/models`` on first run and serves every
batch pipeline with them (text-to-image and llm warm, the others started on their first request), plus the
live pipelines ``noop`` (warm) and ``img2img`` (``lpnode live play``). The
orchestrator is a child process on ``127.0.0.1:ORCH_PORT`` (TLS, as in production, its admin API on
``--orch-cli-addr``) that stops with this one; the gateway runs here, on ``--http-addr`` (default
``127.0.0.1:8935``, the address Livepeer's docs use) with its admin API on ``--cli-addr``. Ctrl-C stops
everything.

The orchestrator is supervised: when it exits on its own (a crash, the OOM killer, ``kill -9``) it is started
again after 1 s, then 2, 4, ... up to 30 s while it keeps failing, and the wait resets once it has run for a
minute. Each exit is logged with its reason. After five exits in a row, each within a minute of its start,
``up`` stops everything and exits with status 2 saying why. If ``up`` itself is killed, the orchestrator and
its runners notice and stop: no process outlives it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lpnode.child_supervisor import Supervisor
from lpnode.errors import ConfigError, SupervisedProcessError
from lpnode.extras import RUNNER, require
from lpnode.logs import configure_logging
from lpnode.pipelines import BATCH_PIPELINES
from lpnode.protocol.admin_access import ADMIN_TOKEN_ENV
from lpnode.serving import port_is_free, require_free

if TYPE_CHECKING:
    from lpnode.up_chain import StackChain

log = logging.getLogger("lpnode.up")
DEVCHAIN = "devchain"

# Every batch pipeline has a tiny model, named for the pipeline it serves (lpnode.runner.tiny).
TINY_MODELS = {p: f"lpnode/tiny-{p}" for p in BATCH_PIPELINES}
WARM = {"text-to-image", "llm"}
SAFETY_CHECKER = "lpnode/tiny-safety-checker"
ORCH_START_SECONDS = 300.0
MAX_ORCHESTRATORS = 4


# Live pipelines (lpnode.live): noop passes frames through (cheap, so warm); img2img runs a tiny diffusion
# model on each frame (started by the first stream).
LIVE_PIPELINES = {"noop": True, "img2img": False}


# Prices in wei per billing unit (pixels, milliseconds of audio, tokens, characters, live pixel-seconds), in
# the range operators on the network ask, so the dashboard and the usage log show what requests would cost.
# Off-chain nothing is paid; they are what the orchestrator advertises.
DEMO_PRICES: dict[str, int] = {
    "text-to-image": 4_768_371,
    "image-to-image": 4_768_371,
    "image-to-video": 3_390_842,
    "upscale": 4_768_371,
    "audio-to-text": 12_882_811,
    "segment-anything-2": 3_122_110,
    "llm": 60_000_000,
    "image-to-text": 1_000_000,
    "text-to-speech": 4_000_000,
    "live-video-to-video": 100,
}


def tiny_ai_models(price_factor: int = 1) -> list[dict[str, object]]:
    """The tiny models' aiModels.json entries, at :data:`DEMO_PRICES` × ``price_factor``."""
    batch = [
        {"pipeline": p, "model_id": m, "warm": p in WARM, "price_per_unit": DEMO_PRICES[p] * price_factor}
        for p, m in TINY_MODELS.items()
    ]
    live = [
        {
            "pipeline": "live-video-to-video",
            "model_id": m,
            "warm": w,
            "price_per_unit": DEMO_PRICES["live-video-to-video"] * price_factor,
        }
        for m, w in LIVE_PIPELINES.items()
    ]
    return [*batch, *live]


def orchestrator_dir(data_dir: Path, index: int) -> Path:
    """Where ``up``'s orchestrator number ``index`` (from 0) keeps its state: ``orchestrator``, ``orchestrator-2``..."""
    return data_dir / ("orchestrator" if index == 0 else f"orchestrator-{index + 1}")


@dataclass(frozen=True)
class _Orchestrator:
    """One of ``up``'s orchestrators: its command line, URL, admin address (None: off) and data dir."""

    command: list[str]
    url: str
    cli_addr: str | None
    data_dir: Path


def example_request(base_url: str) -> str:
    body = '{"model_id":"lpnode/tiny-text-to-image","prompt":"a lighthouse at dusk","width":64,"height":64}'
    return f"curl -s {base_url}/text-to-image -H 'Content-Type: application/json' -d '{body}'"


def run_up(
    data_dir: Path, *, ai_models: str = "", http_addr: str = "127.0.0.1:8935", cli_addr: str = "127.0.0.1:5935",
    orch_port: int = 8936, orch_secret: str = "", orch_cli_addr: str = "127.0.0.1:7935", admin_token: str = "",
    network: str = "offchain", orchestrators: int = 1,
) -> None:  # fmt: skip
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    configure_logging("info")
    from lpnode.orchestrator.settings import cli_address

    if network not in ("offchain", DEVCHAIN):
        raise ConfigError(f"--network {network!r}: lpnode up runs offchain (the default) or on a local {DEVCHAIN}")
    if not 1 <= orchestrators <= MAX_ORCHESTRATORS:
        raise ConfigError(f"--orchestrators must be 1 to {MAX_ORCHESTRATORS}, got {orchestrators}")
    if not ai_models:
        require(RUNNER, "lpnode up")  # its tiny models are built and served here (with --ai-models, see its entries)

    orch_cli_host, orch_cli_port = cli_address(orch_cli_addr)
    orch_cli_addrs = [
        None if orch_cli_port is None else f"{orch_cli_host}:{orch_cli_port + i}" for i in range(orchestrators)
    ]
    for address in orch_cli_addrs:
        host, _, port_text = (address or "").rpartition(":")
        if address is not None and not port_is_free(host, int(port_text)):
            raise ConfigError(
                f"cannot serve the orchestrator's admin API on {address}: the port is in use; choose another "
                "--orch-cli-addr (or --orch-cli-addr off)"
            )
    # Before anything starts: a second `lpnode up` must fail here, not take the first one's servers for its own.
    for address, flag in (
        (http_addr, "--http-addr"),
        (cli_addr, "--cli-addr"),
        *((f"127.0.0.1:{orch_port + i}", "--orch-port") for i in range(orchestrators)),
    ):
        require_free(address, flag)
    data_dir.mkdir(parents=True, exist_ok=True)
    models_dir = data_dir / "models"
    tiny_mode = not ai_models
    if tiny_mode:
        from lpnode.runner import tiny
        from lpnode.runner.libraries import quiet_model_libraries

        quiet_model_libraries()
        for model in tiny.build(models_dir):
            print(f"built tiny model {model.model_id} in {models_dir}", flush=True)
    secret_file = Path(orch_secret).expanduser() if orch_secret else _stored_secret(data_dir)
    orchs = []
    for i in range(orchestrators):
        orch_dir = orchestrator_dir(data_dir, i)
        models = ai_models
        if tiny_mode:  # each next orchestrator asks more: the first at the demo prices, the second twice them...
            path = data_dir / "aiModels.json" if i == 0 else orch_dir / "aiModels.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(tiny_ai_models(i + 1), indent=1) + "\n")
            models = str(path)
        port = orch_port + i
        command = [sys.executable, "-m", "lpnode.cli", "orchestrator", "--ai-models", models]
        command += ["--models-dir", str(models_dir), "--service-addr", f"127.0.0.1:{port}"]
        command += ["--data-dir", str(orch_dir), "--exit-with-parent", "--cli-addr", orch_cli_addrs[i] or "off"]
        command += ["--orch-secret", str(secret_file) if not orch_secret or secret_file.is_file() else orch_secret]
        command += ["--safety-checker", SAFETY_CHECKER] if tiny_mode else []
        orchs.append(_Orchestrator(command, f"https://127.0.0.1:{port}", orch_cli_addrs[i], orch_dir))
    # The token goes to the orchestrator in its environment, never on its command line (`ps` shows that).
    child_env = {**os.environ, ADMIN_TOKEN_ENV: admin_token} if admin_token else None

    keeper = chain = None
    if network == DEVCHAIN:
        from lpnode.up_chain import ChainKeeper

        keeper = ChainKeeper(data_dir, [o.url.removeprefix("https://") for o in orchs])
        chain = keeper.start()
        for i, orch in enumerate(orchs):
            orch.command.extend(chain.orchestrator_flags(i))
    try:
        _serve_stack(
            orchs, child_env, data_dir, http_addr, cli_addr, admin_token, orch_secret, secret_file, chain
        )  # fmt: skip
    finally:
        if keeper is not None:
            keeper.stop()


def _serve_stack(
    orchs: list[_Orchestrator], child_env: dict[str, str] | None, data_dir: Path, http_addr: str, cli_addr: str,
    admin_token: str, orch_secret: str, secret_file: Path, chain: StackChain | None,
) -> None:  # fmt: skip
    """Start the orchestrators under supervision and serve the gateway here until stopped. On the dev chain the
    gateway is given no orchestrator: it finds them on chain."""
    from lpnode.gateway.command import settings_from_args
    from lpnode.gateway.server import Gateway
    from lpnode.serving import run_until_stopped

    chain_flags = chain.gateway_flags() if chain is not None else []
    listed = [] if chain is not None else [o.url for o in orchs]
    gateway = settings_from_args(
        _gateway_args(listed, http_addr, cli_addr, data_dir / "gateway", admin_token, chain_flags)
    )
    supervisors = [
        _supervisor("orchestrator" if i == 0 else f"orchestrator {i + 1}", orch, child_env)
        for i, orch in enumerate(orchs)
    ]
    try:
        for supervisor in supervisors:
            supervisor.start()
        for supervisor, orch in zip(supervisors, orchs, strict=True):
            assert supervisor.proc is not None
            _wait_healthy(supervisor.proc, orch.url, orch.data_dir / "tls" / "cert.pem")
        base = gateway.base_url
        secret_where = f"in {secret_file}" if not orch_secret or secret_file.is_file() else "given with --orch-secret"
        orch_lines = "".join(
            f"  orchestrator  {o.url}{f'  (admin http://{o.cli_addr})' if o.cli_addr is not None else ''}\n"
            for o in orchs
        )
        banner = (
            f"\nlpnode is up (Ctrl-C to stop):\n  gateway       {base}\n  admin         http://{cli_addr}\n"
            f"{orch_lines}"
            f"  orch secret   {secret_where}  (for lpnode byoc register --secret)\n"
            f"  dashboard     {base}/dashboard\n  live video    {base}/live  (webcam through a live pipeline)\n"
            f"{_chain_banner(chain)}"
            f"Try it:\n  {example_request(base)}\n"
        )
        health = f"http://{gateway.http_host if ':' not in gateway.http_host else f'[{gateway.http_host}]'}"
        health += f":{gateway.http_port}/healthz"

        async def serve(stop: asyncio.Event) -> None:
            # Giving up on an orchestrator stops the gateway the way Ctrl-C does.
            loop = asyncio.get_running_loop()
            for supervisor in supervisors:
                supervisor.on_give_up = lambda: loop.call_soon_threadsafe(stop.set)
                supervisor.watch()
            serving = asyncio.ensure_future(Gateway(gateway).run(stop))
            # The banner promises a working API: print it once the gateway answers, never before it fails.
            while not serving.done() and not stop.is_set():
                # (Another process may answer on that port while this gateway fails to bind it.)
                if await asyncio.to_thread(_answers, health) and not serving.done():
                    print(banner, flush=True)
                    break
                await asyncio.sleep(0.1)
            await serving

        run_until_stopped(serve)
    finally:
        for supervisor in supervisors:
            supervisor.stop()
    gave_up = [s.gave_up for s in supervisors if s.gave_up]
    if gave_up:
        raise SupervisedProcessError(gave_up[0])


def _supervisor(name: str, orch: _Orchestrator, child_env: dict[str, str] | None) -> Supervisor:
    cert = orch.data_dir / "tls" / "cert.pem"

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(orch.command, env=child_env)

    def ready(proc: subprocess.Popen[bytes], stop: threading.Event) -> bool:
        return _healthy(proc, orch.url, cert, stop)

    return Supervisor(name, start=start, ready=ready)


def _chain_banner(chain: StackChain | None) -> str:
    if chain is None:
        return ""
    if len(chain.orchestrators) == 1:
        paid = f"orchestrator {chain.orchestrator}"
    else:
        stakes = chain.stakes or (0,) * len(chain.orchestrators)
        paid = "orchestrators " + ", ".join(
            f"{address} ({stake // 10**18} LPT)" for address, stake in zip(chain.orchestrators, stakes, strict=True)
        )
    return (
        f"  chain         {chain.url}  (dev chain, id {chain.chain_id}; -ethController {chain.controller})\n"
        f"  paying        gateway {chain.gateway} -> {paid}  (lpnode tickets, lpnode deposit)\n"
        f"  discovery     the gateway finds its orchestrators on chain  (admin /status: chain_pool)\n"
    )


def _gateway_args(
    orch_urls: list[str],
    http_addr: str,
    cli_addr: str,
    data_dir: Path,
    admin_token: str,
    extra: list[str] | None = None,
) -> argparse.Namespace:
    """``lpnode gateway``'s flags for this stack, every other flag at its default (no ``--orch-addr`` when
    ``orch_urls`` is empty: on chain, the gateway finds its orchestrators there)."""
    from lpnode.gateway.command import add_gateway_parser

    parser = argparse.ArgumentParser(prog="lpnode")
    add_gateway_parser(parser.add_subparsers())
    args = parser.parse_args(
        [
            "gateway",
            *(["--orch-addr", ",".join(orch_urls)] if orch_urls else []),
            "--http-addr",
            http_addr,
            "--cli-addr",
            cli_addr,
            "--data-dir",
            str(data_dir),
            *(extra or []),
        ]
    )
    args.admin_token = admin_token  # already read (it may have been a file)
    return args


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _stored_secret(data_dir: Path) -> Path:
    """The orchestrator secret file in ``data_dir``, made (random, owner-only) on first use."""
    path = data_dir / "orch-secret"
    if not path.is_file():
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
            out.write(secrets.token_urlsafe(24) + "\n")
    return path


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, cert: Path) -> None:
    """Wait for the first start; a start that fails is the operator's to fix (flags, aiModels.json, ports)."""
    if not _healthy(proc, url, cert, threading.Event()):
        if proc.poll() is not None:
            raise ConfigError(f"the orchestrator exited with status {proc.returncode}; see the lines above")
        raise ConfigError(f"the orchestrator did not start within {ORCH_START_SECONDS:g}s")


def _healthy(proc: subprocess.Popen[bytes], url: str, cert: Path, stop: threading.Event) -> bool:
    """True once the orchestrator answers ``/healthz``; False if it exits, ``stop`` is set, or time runs out."""
    import ssl

    deadline = time.monotonic() + ORCH_START_SECONDS
    while time.monotonic() < deadline and proc.poll() is None:
        if cert.exists():
            try:
                context = ssl.create_default_context(cafile=str(cert))
                with urllib.request.urlopen(f"{url}/healthz", timeout=2, context=context) as answer:
                    if answer.status == 200:
                        return True
            except (OSError, ssl.SSLError):
                pass
        if stop.wait(0.3):
            return False
    return False
