"""The gateway in front of an orchestrator that hosts pipelines only as runner apps (no classic runners), with API
keys on: real processes on loopback.

- the batch routes (text-to-image, image-to-image, upscale, image-to-video) answer through single-shot apps
  registered by ``lpnode runner --live-runner-orch``, with ``livepeer-ai`` (the SDK) and plain HTTP, results on
  the gateway's own URLs, and usage rows for the pipeline;
- ``/apps/<app>/<path>`` calls any app (a static echo app here): JSON, SSE, WebSocket, a persistent session,
  an unknown app (404), a key revoked (401), a usage row per call.

The rest of the nine pipelines: test_gateway_runner_apps_pipelines.py.
"""

from __future__ import annotations

import asyncio
import io
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
from livepeer_ai import Livepeer
from PIL import Image

from gateway_apps import SMALL, EchoApp, fetched, gateway, orchestrator, png, start_pipeline_apps, until
from procs import GatewayProcess, OrchestratorProcess, child_env

PIPELINES = ("text-to-image", "image-to-image", "upscale", "image-to-video")


def lpnode(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "lpnode.cli", *args], capture_output=True, text=True, env=child_env(), timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EchoApp]:
    app = EchoApp(tmp_path_factory.mktemp("echo"))
    yield app
    app.stop()


@pytest.fixture(scope="module")
def orch(echo: EchoApp, tmp_path_factory: pytest.TempPathFactory, start_runner: Any) -> Iterator[OrchestratorProcess]:
    node = orchestrator(tmp_path_factory.mktemp("orch"), echo.runners())
    try:
        start_pipeline_apps(start_runner, node, PIPELINES)
        yield node
    finally:
        assert node.stop() == 0, node.log()


@pytest.fixture(scope="module")
def gw_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gateway")


@pytest.fixture(scope="module")
def key(gw_dir: Path) -> str:
    out = lpnode("keys", "create", "app-dev", "--data-dir", str(gw_dir))
    return next(word for word in out.split() if word.startswith("lpk_"))


@pytest.fixture(scope="module")
def gw(orch: OrchestratorProcess, gw_dir: Path, key: str) -> Iterator[GatewayProcess]:
    node = gateway(gw_dir, orch, "--auth", "keys")
    yield node
    node.stop()
    assert "Traceback" not in node.log_path.read_text()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_batch_routes_are_served_by_single_shot_apps(gw: GatewayProcess, orch: OrchestratorProcess, key: str) -> None:
    with Livepeer(http_bearer=key, server_url=gw.base_url) as sdk:
        request: Any = {"prompt": "a lighthouse", "model_id": "lpnode/tiny-text-to-image", "seed": 3, **SMALL}
        (image,) = sdk.generate.text_to_image(request=request).image_response.images
        assert image.seed == 3 and image.nsfw is False
        assert image.url.startswith(gw.base_url + "/stream/")  # stored by the gateway, as on the classic path
        assert Image.open(io.BytesIO(fetched(image.url).content)).size == (64, 64)

        request = {"image": {"file_name": "in.png", "content": png()}, **SMALL}  # the only model: the default
        (video,) = sdk.generate.image_to_video(request=request).video_response.images
        body = fetched(video.url)
        assert body.headers["content-type"] == "video/mp4" and body.content[4:8] == b"ftyp"

    files = {"image": ("in.png", png(32), "image/png")}
    upscaled = requests.post(
        gw.base_url + "/upscale", files=files, data={"prompt": "x", "num_inference_steps": "2"}, headers=auth(key),
        timeout=120,
    )  # fmt: skip
    assert upscaled.status_code == 200, upscaled.text
    assert Image.open(io.BytesIO(fetched(upscaled.json()["images"][0]["url"]).content)).size == (128, 128)

    files = {"image": ("in.png", png(), "image/png")}
    data = {"prompt": "x", "model_id": "lpnode/tiny-image-to-image", "num_inference_steps": "2"}
    changed = requests.post(gw.base_url + "/image-to-image", files=files, data=data, headers=auth(key), timeout=120)
    assert changed.status_code == 200, changed.text
    assert changed.json()["images"][0]["url"].startswith(gw.base_url + "/stream/")

    def metered() -> bool:  # as the pipeline, like any job (the usage log writes in the background)
        rows = usage(gw, "pipeline")
        return all(rows.get(pipeline, {}).get("served", 0) >= 1 for pipeline in PIPELINES)

    until(metered, 10, f"served usage rows for {PIPELINES}")


def test_batch_errors_read_as_on_the_classic_path(gw: GatewayProcess, key: str) -> None:
    body = {"prompt": "x", "model_id": "acme/not-offered"}
    answer = requests.post(gw.base_url + "/text-to-image", json=body, headers=auth(key), timeout=60)
    assert answer.status_code == 503
    assert answer.json()["error"]["message"] == (
        "no orchestrator could serve text-to-image model 'acme/not-offered': no orchestrator offers it"
    )
    refused = requests.post(gw.base_url + "/text-to-image", json={"prompt": "x"}, timeout=60)
    assert refused.status_code == 401  # no key


def usage(gw: GatewayProcess, by: str) -> dict[str, dict[str, Any]]:
    """The usage rows summed by ``by`` (``pipeline`` or ``key``), from the admin API."""
    answer = requests.get(f"{gw.admin_url}/usage?by={by}", timeout=10).json()["rows"]
    return {row[by]: row for row in answer}


def test_any_app_is_called_by_name(gw: GatewayProcess, key: str) -> None:
    answer = requests.post(gw.base_url + "/apps/echo/json/app/v1/things?x=1", data=b"hi", headers=auth(key), timeout=30)
    assert answer.status_code == 200, answer.text
    echoed = answer.json()
    assert (echoed["method"], echoed["path"], echoed["query"], echoed["body"]) == ("POST", "/v1/things", "x=1", "hi")
    assert echoed["headers"]["Livepeer-Session-Id"].startswith("session_")  # through the orchestrator's proxy
    assert "Authorization" not in echoed["headers"]  # the gateway key stays at the gateway

    encoded = requests.get(gw.base_url + "/apps/echo%2Fjson/app/x", headers=auth(key), timeout=30)
    assert encoded.status_code == 200 and encoded.json()["path"] == "/x"

    own = requests.get(gw.base_url + "/apps/echo/json/app/missing", headers=auth(key), timeout=30)
    assert (own.status_code, own.json()) == (404, {"error": "no such thing"})  # the app's own answer

    with requests.post(gw.base_url + "/apps/echo/json/app/events", headers=auth(key), stream=True, timeout=30) as sse:
        assert sse.headers["content-type"].startswith("text/event-stream")
        assert [line for line in sse.iter_lines() if line] == [b"data: 0", b"data: 1", b"data: 2"]

    listed = requests.get(gw.base_url + "/discovery", headers=auth(key), timeout=10).json()
    (entry,) = listed
    assert entry["address"] == gw.base_url
    apps = {r["app"]: r for r in entry["runners"]}
    assert apps["echo/json"]["url"] == gw.base_url + "/apps/echo/json/app"
    assert apps["echo/session"]["url"] == gw.base_url + "/apps/echo/session/session"
    assert apps["text-to-image/lpnode/tiny-text-to-image"]["mode"] == "single-shot"


def test_unknown_apps_and_wrong_modes_are_clear_errors(gw: GatewayProcess, key: str) -> None:
    unknown = requests.post(gw.base_url + "/apps/acme/nothing/app/run", headers=auth(key), timeout=30)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == (
        'no orchestrator offers the app "acme/nothing"; GET /discovery lists the apps on offer'
    )
    persistent = requests.post(gw.base_url + "/apps/echo/session/app/x", headers=auth(key), timeout=30)
    assert persistent.status_code == 400 and "POST /apps/echo/session/session" in persistent.json()["error"]["message"]
    single = requests.post(gw.base_url + "/apps/echo/json/session", headers=auth(key), timeout=30)
    assert single.status_code == 400 and "only persistent runners have sessions" in single.text


def test_a_persistent_session_through_the_gateway(gw: GatewayProcess, key: str) -> None:
    reserved = requests.post(gw.base_url + "/apps/echo/session/session", headers=auth(key), timeout=30)
    assert reserved.status_code == 200, reserved.text
    session = reserved.json()
    sid = session["session_id"]
    assert session["app_url"] == f"{gw.base_url}/apps/echo/session/session/{sid}/app"
    assert session["control_url"] == f"{gw.base_url}/apps/echo/session/session/{sid}"
    full = requests.post(gw.base_url + "/apps/echo/session/session", headers=auth(key), timeout=30)
    assert full.status_code == 503  # capacity 1, held by the session

    called = requests.put(session["app_url"] + "/doc", data=b"v", headers=auth(key), timeout=30)
    assert called.status_code == 200 and called.json()["headers"]["Livepeer-Session-Id"] == sid
    assert run(ws_exchange(session["app_url"].replace("http://", "ws://") + "/ws", key)) == f"echo:ping:{sid}"

    stopped = requests.post(session["control_url"] + "/stop", headers=auth(key), timeout=30)
    assert stopped.status_code == 204
    after = requests.get(session["app_url"] + "/doc", headers=auth(key), timeout=30)
    assert after.status_code == 404 and after.json()["error"]["message"] == "runner session not found"
    again = requests.post(gw.base_url + "/apps/echo/session/session", headers=auth(key), timeout=30)
    assert again.status_code == 200  # the slot came back
    requests.post(again.json()["control_url"] + "/stop", headers=auth(key), timeout=30)


def test_a_restarted_gateway_still_knows_its_sessions(orch: OrchestratorProcess, tmp_path: Path) -> None:
    first = gateway(tmp_path, orch)
    try:
        reserved = requests.post(first.base_url + "/apps/echo/session/session", timeout=30)
        assert reserved.status_code == 200, reserved.text
    finally:
        first.stop()
    session = reserved.json()
    path = session["control_url"].removeprefix(first.base_url)
    second = gateway(tmp_path, orch)  # the same data dir: the same SQLite state
    try:
        called = requests.put(second.base_url + path + "/app/doc", data=b"v", timeout=30)
        assert called.status_code == 200 and called.json()["headers"]["Livepeer-Session-Id"] == session["session_id"]
        assert requests.post(second.base_url + path + "/stop", timeout=30).status_code == 204
        gone = requests.get(second.base_url + path + "/app/doc", timeout=30)
        assert gone.status_code == 404 and gone.json()["error"]["message"] == "runner session not found"
    finally:
        second.stop()


def test_a_session_the_gateway_cannot_record_is_not_left_reserved(orch: OrchestratorProcess, tmp_path: Path) -> None:
    node = gateway(tmp_path, orch)
    try:
        with sqlite3.connect(tmp_path / "gateway.sqlite") as db:
            db.execute("DROP TABLE app_sessions")  # a database that refuses the session's row
        refused = requests.post(node.base_url + "/apps/echo/session/session", timeout=30)
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "2", refused.text
        assert refused.json()["error"]["message"] == "the gateway could not record the session; retry shortly"
    finally:
        node.stop()
    assert "Traceback" not in node.log_path.read_text()
    # The orchestrator's only slot of the app was given back: a session can be reserved there at once.
    (listing,) = orch.get("/discovery", timeout=10).json()
    (runner,) = [r for r in listing["runners"] if r["app"] == "echo/session"]
    direct = requests.post(runner["url"], timeout=30)
    assert direct.status_code == 200, direct.text
    assert requests.post(direct.json()["control_url"] + "/stop", timeout=30).status_code in (200, 204)


async def ws_exchange(url: str, key: str | None) -> str:
    headers = auth(key) if key else {}
    async with aiohttp.ClientSession() as http, http.ws_connect(url, headers=headers) as socket:
        await socket.send_str("ping")
        message = await socket.receive(timeout=10)
        return str(message.data)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_a_websocket_app_through_the_gateway(gw: GatewayProcess, key: str) -> None:
    reply = run(ws_exchange(gw.base_url.replace("http://", "ws://") + "/apps/echo/json/app/ws", key))
    assert reply.startswith("echo:ping:session_")
    with pytest.raises(aiohttp.WSServerHandshakeError):  # no key: refused before it opens
        run(ws_exchange(gw.base_url.replace("http://", "ws://") + "/apps/echo/json/app/ws", None))


def test_every_app_call_is_a_usage_row(gw: GatewayProcess, key: str) -> None:
    before = usage(gw, "pipeline").get("app:echo/one", {}).get("requests", 0)
    for _ in range(3):
        assert requests.get(gw.base_url + "/apps/echo/one/app/x", headers=auth(key), timeout=30).status_code == 200

    def counted() -> bool:
        return bool(usage(gw, "pipeline").get("app:echo/one", {}).get("requests", 0) == before + 3)

    until(counted, 10, "three usage rows for app:echo/one")
    assert usage(gw, "key")["app-dev"]["requests"] >= 3  # against the caller's key


def test_a_revoked_key_is_refused_on_apps(gw: GatewayProcess, gw_dir: Path) -> None:
    out = lpnode("keys", "create", "leaving", "--data-dir", str(gw_dir))
    leaving = next(word for word in out.split() if word.startswith("lpk_"))
    assert requests.get(gw.base_url + "/apps/echo/json/app/x", headers=auth(leaving), timeout=30).status_code == 200
    lpnode("keys", "revoke", "leaving", "--data-dir", str(gw_dir))

    def refused() -> bool:
        answer = requests.get(gw.base_url + "/apps/echo/json/app/x", headers=auth(leaving), timeout=30)
        return answer.status_code == 401 and "revoked" in answer.json()["error"]["message"]

    until(refused, 8, "the revoked key refused (the gateway caches keys for 5 s)")
