"""A gateway in front of an orchestrator that hosts pipelines only as runner apps, for the gateway's runner-app tests.

The orchestrator (plain HTTP on loopback) has no classic runners: ``-useLiveRunners`` with a secret, optionally a
static ``runners.json``; ``lpnode runner ... --live-runner-orch`` processes register the pipelines as single-shot
apps. :class:`EchoApp` is a small aiohttp app (JSON echo, SSE, WebSocket) to host as static runners.
"""

from __future__ import annotations

import io
import json
import math
import struct
import subprocess
import sys
import textwrap
import time
import wave
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import requests
from PIL import Image

from procs import ChildProcess, GatewayProcess, OrchestratorProcess, RunnerProcess, free_port

SECRET = "gateway-apps-secret"
SMALL = {"width": 64, "height": 64, "num_inference_steps": 2}
ECHO_APP = textwrap.dedent(
    """
    import asyncio, sys
    from aiohttp import web

    async def health(request):
        return web.Response(text="ok")

    async def echo(request):
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower().startswith(("livepeer-", "authorization"))}
        return web.json_response({"method": request.method, "path": request.path, "query": request.query_string,
                                  "body": body.decode(errors="replace"), "headers": headers})

    async def sse(request):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(3):
            await response.write(f"data: {i}\\n\\n".encode())
            await asyncio.sleep(0.05)
        return response

    async def ws(request):
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        async for message in socket:
            await socket.send_str("echo:" + message.data + ":" + request.headers.get("Livepeer-Session-Id", ""))
        return socket

    async def missing(request):
        return web.json_response({"error": "no such thing"}, status=404)

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_post("/events", sse)
    app.router.add_get("/ws", ws)
    app.router.add_get("/missing", missing)
    app.router.add_route("*", "/{tail:.*}", echo)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
    """
)


class EchoApp(ChildProcess):
    """:data:`ECHO_APP` on a free loopback port."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        script = tmp / "echo_app.py"
        script.write_text(ECHO_APP)
        self.log_path = tmp / "echo_app.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(self.port)], stdout=self._log, stderr=subprocess.STDOUT
        )
        until(lambda: _up(self.url + "/health"), 30, "the echo app answers")

    def runners(self) -> list[dict[str, Any]]:
        """Static ``runners.json`` entries: a single-shot app, a persistent one and a second single-shot one."""
        common = {"runner_url": self.url, "health_url": "/health"}
        return [
            {"label": "json", "app": "echo/json", "mode": "single-shot", "capacity": 2, **common},
            {"label": "session", "app": "echo/session", "mode": "persistent", "capacity": 1, **common},
            {"label": "busy", "app": "echo/one", "mode": "single-shot", "capacity": 1, **common},
        ]


def _up(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).ok
    except requests.ConnectionError:
        return False


def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout:g}s: {what}")


def orchestrator(tmp: Path, static: Sequence[dict[str, Any]] = ()) -> OrchestratorProcess:
    flags = [f"-orchSecret={SECRET}", "-useLiveRunners"]
    if static:
        config = tmp / "runners.json"
        config.write_text(json.dumps({"runners": list(static)}))
        flags.append(f"-liveRunnerConfig={config}")
    node = OrchestratorProcess("", tmp / "models", tmp, *flags, plain=True)
    node.wait_ready(60)
    return node


def listed_apps(orch: OrchestratorProcess) -> set[str]:
    return {r["app"] for entry in orch.get("/discovery", timeout=10).json() for r in entry.get("runners", [])}


def start_pipeline_apps(
    start_runner: Callable[..., RunnerProcess], orch: OrchestratorProcess, pipelines: Sequence[str]
) -> list[RunnerProcess]:
    """One ``lpnode runner --live-runner-orch`` per pipeline (its tiny model), started at once; returns when the
    orchestrator lists them all."""
    runners = [
        start_runner(p, f"lpnode/tiny-{p}", "--live-runner-orch", orch.base_url, "--orch-secret", SECRET)
        for p in pipelines
    ]
    wanted = {f"{p}/lpnode/tiny-{p}" for p in pipelines}

    def all_listed() -> bool:
        for runner in runners:
            assert runner.proc.poll() is None, runner.log()
        return wanted <= listed_apps(orch)

    until(all_listed, 150, f"the orchestrator lists {sorted(wanted)}")
    return runners


def gateway(tmp: Path, orch: OrchestratorProcess, *flags: str) -> GatewayProcess:
    return GatewayProcess(tmp, "--orch-addr", orch.base_url, *flags)


def png(size: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (30, 140, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def wav(seconds: float = 1.0, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        samples = (int(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(int(seconds * rate)))
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return buffer.getvalue()


def fetched(url: str) -> requests.Response:
    """A result URL fetched; it must be the gateway's own ``/stream/`` URL and answer 200."""
    assert "/stream/" in url, url
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, url
    return response
