"""``lpnode up``: the whole Livepeer AI stack on one machine, offline: gateway, orchestrator and runners.

Without ``--ai-models`` it builds the tiny models into ``DATA_DIR/models`` on first run and serves every
batch pipeline with them (text-to-image and llm warm, the others started on their first request), plus the
live pipelines ``noop`` (warm) and ``img2img`` (``lpnode live play``). The
orchestrator is a child process on ``127.0.0.1:ORCH_PORT`` (TLS, as in production) that stops with this
one; the gateway runs here, on ``--http-addr`` (default ``127.0.0.1:8935``, the address Livepeer's docs
use) with its admin API on ``--cli-addr``. Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from lpnode.errors import ConfigError
from lpnode.logs import configure_logging
from lpnode.pipelines import BATCH_PIPELINES
from lpnode.protocol.orch_secret import read_secret

# Every batch pipeline has a tiny model, named for the pipeline it serves (lpnode.runner.tiny).
TINY_MODELS = {p: f"lpnode/tiny-{p}" for p in BATCH_PIPELINES}
WARM = {"text-to-image", "llm"}
SAFETY_CHECKER = "lpnode/tiny-safety-checker"
ORCH_START_SECONDS = 300.0


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


def tiny_ai_models() -> list[dict[str, object]]:
    batch = [
        {"pipeline": p, "model_id": m, "warm": p in WARM, "price_per_unit": DEMO_PRICES[p]}
        for p, m in TINY_MODELS.items()
    ]
    live = [
        {
            "pipeline": "live-video-to-video",
            "model_id": m,
            "warm": w,
            "price_per_unit": DEMO_PRICES["live-video-to-video"],
        }
        for m, w in LIVE_PIPELINES.items()
    ]
    return [*batch, *live]


def example_request(base_url: str) -> str:
    body = '{"model_id":"lpnode/tiny-text-to-image","prompt":"a lighthouse at dusk","width":64,"height":64}'
    return f"curl -s {base_url}/text-to-image -H 'Content-Type: application/json' -d '{body}'"


def run_up(
    data_dir: Path, *, ai_models: str = "", http_addr: str = "127.0.0.1:8935", cli_addr: str = "127.0.0.1:5935",
    orch_port: int = 8936, orch_secret: str = "",
) -> None:  # fmt: skip
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    configure_logging("info")
    from lpnode.gateway.command import settings_from_args
    from lpnode.gateway.server import run_gateway

    data_dir.mkdir(parents=True, exist_ok=True)
    models_dir = data_dir / "models"
    tiny_mode = not ai_models
    if tiny_mode:
        from lpnode.runner import tiny
        from lpnode.runner.libraries import quiet_model_libraries

        quiet_model_libraries()
        for model in tiny.build(models_dir):
            print(f"built tiny model {model.model_id} in {models_dir}", flush=True)
        path = data_dir / "aiModels.json"
        path.write_text(json.dumps(tiny_ai_models(), indent=1) + "\n")
        ai_models = str(path)
    orch_url = f"https://127.0.0.1:{orch_port}"
    command = [sys.executable, "-m", "lpnode.cli", "orchestrator", "--ai-models", ai_models]
    command += ["--models-dir", str(models_dir), "--service-addr", f"127.0.0.1:{orch_port}"]
    command += ["--data-dir", str(data_dir / "orchestrator"), "--exit-with-parent"]
    secret_source = orch_secret or str(_stored_secret(data_dir))
    command += ["--orch-secret", secret_source]
    command += ["--safety-checker", SAFETY_CHECKER] if tiny_mode else []

    gateway = settings_from_args(
        argparse.Namespace(
            network="offchain", orch_addr=orch_url, webhook="", http_addr=http_addr, cli_addr=cli_addr,
            public_url="", max_price="", max_caps="", selection="latency", default_models="", timeout=600.0,
            data_dir=data_dir / "gateway",
        )
    )  # fmt: skip
    orchestrator = subprocess.Popen(command)
    try:
        _wait_healthy(orchestrator, orch_url, data_dir / "orchestrator" / "tls" / "cert.pem")
        base = gateway.base_url
        print(
            f"\nlpnode is up (Ctrl-C to stop):\n  gateway       {base}\n  admin         http://{cli_addr}\n"
            f"  orchestrator  {orch_url}\n  orch secret   {read_secret(secret_source)}  (for lpnode byoc register)\n"
            f"  dashboard     {base}/dashboard\n  live video    {base}/live  (webcam through a live pipeline)\n"
            f"Try it:\n  {example_request(base)}\n",
            flush=True,
        )
        run_gateway(gateway)
    finally:
        _stop(orchestrator)


def _stored_secret(data_dir: Path) -> Path:
    """The orchestrator secret file in ``data_dir``, made (random, owner-only) on first use."""
    path = data_dir / "orch-secret"
    if not path.is_file():
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
            out.write(secrets.token_urlsafe(24) + "\n")
    return path


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, cert: Path) -> None:
    import ssl

    deadline = time.monotonic() + ORCH_START_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigError(f"the orchestrator exited with status {proc.returncode}; see the lines above")
        if cert.exists():
            try:
                context = ssl.create_default_context(cafile=str(cert))
                with urllib.request.urlopen(f"{url}/healthz", timeout=2, context=context) as answer:
                    if answer.status == 200:
                        return
            except (OSError, ssl.SSLError):
                pass
        time.sleep(0.3)
    raise ConfigError(f"the orchestrator did not start within {ORCH_START_SECONDS:g}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
