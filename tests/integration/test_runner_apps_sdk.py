"""The livepeer-gateway SDK 1.0 (its own Python >= 3.12 venv) on both sides of an lpnode orchestrator's runner apps.

Runner side: ``register_runner`` (heartbeats, O2R), ``create_trickle_channels`` and ``stop_runner_session`` from
inside a request the orchestrator proxied, unregister on close. Client side: ``discover_runners``,
``runner_selector``, ``call_runner`` (JSON and a streamed SSE answer) and ``reserve_session``. The apps are small
aiohttp apps written here: a JSON single-shot app, an SSE single-shot app, a WebSocket persistent app, a
persistent app using trickle channels, and a static ``runners.json`` app.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

from procs import OrchestratorProcess, free_port
from sdk import sdk_python

SECRET = "sdk-apps-secret"
SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    import aiohttp
    from aiohttp import web
    from livepeer_gateway import (call_runner, create_trickle_channels, discover_runners, register_runner,
                                  reserve_session, runner_selector, stop_runner_session)

    ORCH, STATIC_PORT = sys.argv[1], int(sys.argv[2])
    out = {}

    async def serve(app, port=0):
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"

    async def echo(request):
        body = await request.json()
        return web.json_response({"echo": body, "path": request.path})

    async def sse(request):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(3):
            await response.write(f"data: {i}\\n\\n".encode())
        return response

    async def ws(request):
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        async for message in socket:
            await socket.send_str(message.data.upper())
        return socket

    async def channels(request):
        wanted = [{"name": "in", "mime_type": "video/mp2t"}, {"name": "out", "mime_type": "application/json"}]
        made = await create_trickle_channels(request, wanted)
        return web.json_response({"channels": made})

    async def stop(request):
        await stop_runner_session(request)
        return web.json_response({"stopped": True})

    async def health(request):
        return web.Response(text="ok")

    def app_of(*routes):
        app = web.Application()
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
        return app

    async def main():
        servers = []
        for name, app in [("json", app_of(("POST", "/echo", echo))), ("sse", app_of(("POST", "/events", sse))),
                          ("ws", app_of(("GET", "/ws", ws))),
                          ("trickle", app_of(("POST", "/start", channels), ("POST", "/stop", stop)))]:
            server, url = await serve(app)
            servers.append((name, server, url))
        static, _ = await serve(app_of(("POST", "/echo", echo), ("GET", "/health", health)), STATIC_PORT)
        urls = {name: url for name, _, url in servers}
        regs = [
            await register_runner(ORCH, secret="%(secret)s", runner_url=urls["json"], app="sdk/json",
                                  mode="single-shot", capacity=2, auto_detect_gpu=False),
            await register_runner(ORCH, secret="%(secret)s", runner_url=urls["sse"], app="sdk/sse",
                                  mode="single-shot", auto_detect_gpu=False),
            await register_runner(ORCH, secret="%(secret)s", runner_url=urls["ws"], app="sdk/ws",
                                  auto_detect_gpu=False),
            await register_runner(ORCH, secret="%(secret)s", runner_url=urls["trickle"], app="sdk/trickle",
                                  auto_detect_gpu=False),
        ]
        out["runner_ids"] = [r.runner_id for r in regs]
        found = await discover_runners(discovery_url=ORCH + "/discovery", app="sdk/json")
        out["discovered"] = [r["app"] for e in found for r in e["runners"] if r["app"] == "sdk/json"]

        cursor = await runner_selector(orchestrators=[ORCH], app="sdk/json", body={"hello": "world"})
        url = cursor.candidates[0].url
        result = await call_runner(url + "/echo", payload={"hello": "world"})
        out["json"] = result.data

        sse_runner = (await runner_selector(orchestrators=[ORCH], app="sdk/sse")).candidates[0]
        async with await call_runner(sse_runner.url + "/events", stream=True) as stream:
            out["sse"] = [line async for line in stream.aiter_lines() if line.strip()]

        for _ in range(40):  # the static runner turns healthy within a health interval
            static_found = await discover_runners(discovery_url=ORCH + "/discovery", app="sdk/static")
            if static_found:
                break
            await asyncio.sleep(0.5)
        static_url = static_found[0]["runners"][0]["url"]
        out["static"] = (await call_runner(static_url + "/echo", payload={"static": 1})).data

        session = await reserve_session(orchestrators=[ORCH], app="sdk/ws")
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(session.app_url.replace("http://", "ws://") + "/ws") as socket:
                await socket.send_str("shout")
                out["ws"] = (await socket.receive(timeout=5)).data
        await session.aclose()
        out["ws_released"] = session.released

        session = await reserve_session(orchestrators=[ORCH], app="sdk/trickle")
        async with aiohttp.ClientSession() as http:
            async with http.post(session.app_url + "/start", json={}) as response:
                made = (await response.json())["channels"]
            out["channels"] = [(c["name"], c["mime_type"], c["url"].startswith(ORCH + "/ai/trickle/")) for c in made]
            async with http.get(made[0]["url"] + "/next") as response:
                out["channel_open"] = response.status
            async with http.post(session.app_url + "/stop", json={}) as response:
                out["runner_stop"] = response.status
            async with http.get(made[0]["url"] + "/next") as response:
                out["channel_after_stop"] = response.status
        await asyncio.sleep(0.5)
        out["trickle_sessions_seen"] = sorted(regs[3].session_ids) if hasattr(regs[3], "session_ids") else None
        again = await reserve_session(orchestrators=[ORCH], app="sdk/trickle")  # the slot came back
        await again.aclose()

        for reg in regs:
            await reg.close()
        left = await discover_runners(discovery_url=ORCH + "/discovery")
        out["left"] = sorted(r["app"] for e in left for r in e.get("runners", []))
        for _, server, _ in servers:
            await server.cleanup()
        await static.cleanup()

    asyncio.run(main())
    print(json.dumps(out))
    """
) % {"secret": SECRET}


def test_sdk_runners_and_clients_work_against_an_lpnode_orchestrator(tmp_path: Path) -> None:
    python = sdk_python()
    static_port = free_port()
    config = tmp_path / "runners.json"
    static = {"label": "static", "app": "sdk/static", "runner_url": f"http://127.0.0.1:{static_port}",
              "health_url": "/health", "mode": "single-shot"}  # fmt: skip
    config.write_text(json.dumps({"runners": [static]}))
    orch = OrchestratorProcess(
        "", tmp_path / "models", tmp_path, f"-orchSecret={SECRET}", "-useLiveRunners", f"-liveRunnerConfig={config}",
        plain=True,
    )  # fmt: skip
    try:
        orch.wait_ready(60)
        script = tmp_path / "sdk_apps.py"
        script.write_text(SCRIPT)
        done = subprocess.run(
            [str(python), str(script), orch.base_url, str(static_port)], capture_output=True, text=True, timeout=80
        )
        assert done.returncode == 0, done.stderr[-3000:] + orch.log()[-3000:]
        out = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        assert orch.stop() == 0, orch.log()
    assert all(i.startswith("runner_") for i in out["runner_ids"]) and len(set(out["runner_ids"])) == 4
    assert out["discovered"] == ["sdk/json"]
    assert out["json"] == {"echo": {"hello": "world"}, "path": "/echo"}
    assert out["sse"] == ["data: 0", "data: 1", "data: 2"]
    assert out["static"] == {"echo": {"static": 1}, "path": "/echo"}
    assert out["ws"] == "SHOUT" and out["ws_released"] is True
    assert out["channels"] == [["in", "video/mp2t", True], ["out", "application/json", True]]
    assert (out["channel_open"], out["runner_stop"], out["channel_after_stop"]) == (200, 200, 404)
    assert out["left"] == ["sdk/static"]  # closed registrations unregistered; the static runner stays
