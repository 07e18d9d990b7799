"""The rest of the nine batch pipelines (audio-to-text, text-to-speech, image-to-text, segment-anything-2, llm)
served by single-shot runner apps behind an lpnode orchestrator with no classic runners, called through the
gateway's normal routes with the ``livepeer-ai`` SDK, and one app by name through the gateway with the
``livepeer-gateway`` SDK: real processes on loopback, API keys off.

The first four pipelines and the generic ``/apps/...`` route: test_gateway_runner_apps.py.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from livepeer_ai import Livepeer

from gateway_apps import fetched, gateway, orchestrator, png, start_pipeline_apps, wav
from procs import GatewayProcess, OrchestratorProcess
from sdk import sdk_python

PIPELINES = ("audio-to-text", "text-to-speech", "image-to-text", "segment-anything-2", "llm")


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, start_runner: Any) -> Iterator[GatewayProcess]:
    orch: OrchestratorProcess = orchestrator(tmp_path_factory.mktemp("orch"))
    try:
        start_pipeline_apps(start_runner, orch, PIPELINES)
        node = gateway(tmp_path_factory.mktemp("gateway"), orch)
        yield node
        node.stop()
        assert "Traceback" not in node.log_path.read_text()
    finally:
        assert orch.stop() == 0, orch.log()


@pytest.fixture(scope="module")
def sdk(gw: GatewayProcess) -> Iterator[Livepeer]:
    with Livepeer(http_bearer="unused", server_url=gw.base_url) as client:
        yield client


def test_audio_and_speech_through_apps(sdk: Any, gw: GatewayProcess) -> None:
    text = sdk.generate.audio_to_text(request={"audio": {"file_name": "a.wav", "content": wav(2.0)}}).text_response
    assert text.text.strip() == "hello world"  # the tiny Whisper's answer to anything
    audio = sdk.generate.text_to_speech(request={"text": "Hello there."}).audio_response.audio
    assert audio.url.startswith(gw.base_url + "/stream/") and fetched(audio.url).content[:4] == b"RIFF"

    rows = requests.get(f"{gw.admin_url}/usage?by=pipeline", timeout=10).json()["rows"]
    metered = {row["pipeline"]: row for row in rows}
    assert metered["audio-to-text"]["units"] == 2000  # the runner's X-Audio-Duration, as on the classic path


def test_vision_through_apps(sdk: Any) -> None:
    caption = sdk.generate.image_to_text(request={"image": {"file_name": "in.png", "content": png()}})
    assert isinstance(caption.image_to_text_response.text, str)
    request: Any = {
        "image": {"file_name": "in.png", "content": png()},
        "point_coords": "[[10, 20]]",
        "point_labels": "[1]",
    }
    masks = sdk.generate.segment_anything2(request=request).masks_response
    assert masks.masks.startswith("[")


def test_llm_through_an_app_whole_and_streamed(sdk: Any, gw: GatewayProcess) -> None:
    reply = sdk.generate.llm(request={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    assert reply.llm_response.choices[0].message.content is not None
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": True}
    with requests.post(gw.base_url + "/llm", json=body, stream=True, timeout=60) as streamed:
        assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in streamed.iter_lines() if line]
    assert lines[-1] == b"data: [DONE]"


def test_gateway_status_lists_the_apps(gw: GatewayProcess) -> None:
    status = requests.get(f"{gw.admin_url}/status", timeout=10).json()
    apps = {a["app"]: a for a in status["runner_apps"]}
    assert set(apps) == {f"{p}/lpnode/tiny-{p}" for p in PIPELINES}
    assert all(a["mode"] == "single-shot" and a["ready"] for a in apps.values())


SDK_SCRIPT = """
import asyncio, json, sys
from livepeer_gateway import call_runner, discover_runners

async def main():
    found = await discover_runners(discovery_url=sys.argv[1] + "/discovery", app=sys.argv[2])
    url = found[0]["runners"][0]["url"]
    result = await call_runner(url + "/text-to-speech", payload={"text": "hi"})
    print(json.dumps({"url": url, "answer": result.data}))

asyncio.run(main())
"""


def test_the_livepeer_gateway_sdk_calls_apps_through_the_gateway(gw: GatewayProcess, tmp_path: Path) -> None:
    python = sdk_python()
    script = tmp_path / "sdk_call.py"
    script.write_text(SDK_SCRIPT)
    app = "text-to-speech/lpnode/tiny-text-to-speech"
    done = subprocess.run([str(python), str(script), gw.base_url, app], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["url"] == f"{gw.base_url}/apps/{app}/app"  # discovered on the gateway, called through it
    assert out["answer"]["audio"]["url"].startswith("data:audio/")  # the runner's own answer, unchanged
