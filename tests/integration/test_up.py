"""`lpnode up` as an app developer meets it: the printed curl works, and Livepeer's own Python SDK
(`livepeer-ai`) calls every batch pipeline through gateway → orchestrator → runner and parses the answers.

The `stack` fixture (conftest.py, one `lpnode up` per session, shared with the dashboard tests) links the
session's models dir into the data dir, so `lpnode up` finds its tiny models already built.
"""

from __future__ import annotations

import io
import json
import math
import re
import signal
import struct
import subprocess
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import requests
from livepeer_ai import Livepeer
from livepeer_ai.models import errors
from PIL import Image

from procs import LPNODE, child_env, free_port
from up_stack import Stack

SMALL = {"width": 64, "height": 64, "num_inference_steps": 2}


@pytest.fixture(scope="module")
def sdk(stack: Stack) -> Iterator[Livepeer]:
    with Livepeer(http_bearer="test-token", server_url=stack.base_url) as client:
        yield client


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


def fetch_image(url: str) -> Image.Image:
    response = requests.get(url, timeout=10)
    response.raise_for_status()
    return Image.open(io.BytesIO(response.content))


def test_the_printed_curl_line_works_and_its_url_is_fetchable(stack: Stack) -> None:
    command = stack.curl
    assert f"{stack.base_url}/text-to-image" in command
    result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120)
    (media,) = json.loads(result.stdout)["images"]
    assert media["url"].startswith(f"{stack.base_url}/stream/")
    assert fetch_image(media["url"]).size == (64, 64)


def test_sdk_text_to_image(sdk: Livepeer) -> None:
    request: Any = {"prompt": "a lighthouse", "model_id": "lpnode/tiny-text-to-image", "seed": 3, **SMALL}
    images = sdk.generate.text_to_image(request=request).image_response.images
    assert images[0].seed == 3 and images[0].nsfw is False
    assert fetch_image(images[0].url).size == (64, 64)


def test_sdk_image_to_image_and_upscale(sdk: Livepeer) -> None:
    image = {"file_name": "in.png", "content": png()}
    request: Any = {"prompt": "x", "image": image, "model_id": "lpnode/tiny-image-to-image", "num_inference_steps": 2}
    assert sdk.generate.image_to_image(request=request).image_response.images[0].url
    request = {"prompt": "x", "image": {"file_name": "in.png", "content": png(32)}, "num_inference_steps": 2}
    (up,) = sdk.generate.upscale(request=request).image_response.images
    assert fetch_image(up.url).size == (128, 128)


def test_sdk_image_to_video_gets_an_mp4(sdk: Livepeer) -> None:
    request: Any = {"image": {"file_name": "in.png", "content": png()}, **SMALL}
    (video,) = sdk.generate.image_to_video(request=request).video_response.images
    body = requests.get(video.url, timeout=10)
    assert body.headers["content-type"] == "video/mp4" and body.content[4:8] == b"ftyp"


def test_sdk_audio_and_speech(sdk: Livepeer) -> None:
    text = sdk.generate.audio_to_text(request={"audio": {"file_name": "a.wav", "content": wav()}}).text_response
    assert isinstance(text.text, str)
    audio = sdk.generate.text_to_speech(request={"text": "Hello there."}).audio_response.audio
    fetched = requests.get(audio.url, timeout=10)
    assert fetched.content[:4] == b"RIFF"


def test_sdk_vision_and_llm(sdk: Livepeer) -> None:
    caption = sdk.generate.image_to_text(request={"image": {"file_name": "in.png", "content": png()}})
    assert isinstance(caption.image_to_text_response.text, str)
    request: Any = {
        "image": {"file_name": "in.png", "content": png()},
        "point_coords": "[[10, 20]]",
        "point_labels": "[1]",
    }
    masks = sdk.generate.segment_anything2(request=request).masks_response
    assert masks.masks.startswith("[")
    reply = sdk.generate.llm(request={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    assert reply.llm_response.choices[0].message.content is not None


def test_sdk_bad_input_raises_the_sdks_errors(sdk: Livepeer) -> None:
    with pytest.raises(errors.HTTPError) as refused:
        sdk.generate.image_to_text(request={"image": {"file_name": "in.png", "content": b"not an image"}})
    assert refused.value.data.detail.msg.startswith("The uploaded image is not a readable image")
    with pytest.raises(errors.HTTPError) as too_small:
        sdk.generate.text_to_image(request={"prompt": "x", "width": -5, "height": 64, "num_inference_steps": 2})
    assert "divisible by 8" in too_small.value.data.detail.msg


def test_a_field_of_the_wrong_type_is_422_in_fastapis_shape(stack: Stack) -> None:
    response = requests.post(stack.base_url + "/text-to-image", json={"prompt": "x", "width": "wide"}, timeout=30)
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "width"] and problem["type"] == "int_parsing"


def test_no_orchestrator_for_a_model_is_503_with_a_reason(stack: Stack) -> None:
    response = requests.post(
        stack.base_url + "/text-to-image", json={"prompt": "x", "model_id": "org/absent"}, timeout=30
    )
    assert response.status_code == 503
    assert "no orchestrator could serve text-to-image model 'org/absent'" in response.json()["error"]["message"]


def test_openai_sdk_streams_chat_completions(stack: Stack) -> None:
    client = openai.OpenAI(base_url=stack.base_url + "/v1", api_key="unused")
    models = [m.id for m in client.models.list()]
    assert models == ["lpnode/tiny-llm"]
    stream = client.chat.completions.create(
        model="lpnode/tiny-llm",
        messages=[{"role": "user", "content": "hello"}],
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)
    # The tiny model's random weights may end the answer before max_tokens.
    assert chunks[-1].usage is not None and 1 <= chunks[-1].usage.completion_tokens <= 6
    whole = client.chat.completions.create(model="lpnode/tiny-llm", messages=[{"role": "user", "content": "hi"}])
    assert whole.choices[0].message.role == "assistant" and whole.usage is not None
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="lpnode/tiny-llm", messages=[{"role": "user", "content": "hi"}], n=2)


@pytest.fixture(scope="module")
def keyed(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, str]]:
    """A second gateway, with API keys on, in front of the same orchestrator."""
    data = tmp_path_factory.mktemp("keyed")
    made = subprocess.run(
        [*LPNODE, "keys", "create", "app", "--rate-per-minute", "3", "--data-dir", str(data)],
        capture_output=True, text=True, env=child_env(), timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    key = re.search(r"lpk_[A-Za-z0-9_-]+", made.stdout)
    assert key, made.stdout
    port = free_port()
    log = open(data / "gateway.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [*LPNODE, "gateway", "-orchAddr", f"127.0.0.1:{stack.orch_port}", "-httpAddr", f"127.0.0.1:{port}",
         "-cliAddr", f"127.0.0.1:{free_port()}", "--auth", "keys", "--data-dir", str(data)],
        stdout=log, stderr=subprocess.STDOUT, env=child_env(),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", data, key.group(0)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        log.close()


def test_keys_401_without_a_key_429_over_its_rate_and_usage_rows(keyed: tuple[str, Path, str]) -> None:
    base, data, key = keyed
    body = {"prompt": "x", "model_id": "lpnode/tiny-text-to-image", **SMALL}
    anonymous = requests.post(base + "/text-to-image", json=body, timeout=60)
    assert anonymous.status_code == 401 and "Bearer" in anonymous.json()["error"]["message"]
    auth = {"Authorization": f"Bearer {key}"}
    statuses = [
        requests.post(base + "/text-to-image", json=body, headers=auth, timeout=60).status_code for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    over = requests.post(base + "/text-to-image", json=body, headers=auth, timeout=60)
    assert over.status_code == 429 and int(over.headers["Retry-After"]) >= 1
    deadline = time.monotonic() + 15  # the last request is recorded once its answer is sent, and written just after
    while True:
        report = subprocess.run(
            [*LPNODE, "usage", "--by", "key,pipeline", "--json", "--data-dir", str(data)],
            capture_output=True, text=True, env=child_env(), timeout=60,
        )  # fmt: skip
        assert report.returncode == 0, report.stderr
        rows = {(r["key"], r["pipeline"]): r for r in json.loads(report.stdout)}
        if rows.get(("app", "text-to-image"), {}).get("requests") == 5 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    app = rows[("app", "text-to-image")]
    assert (app["requests"], app["errors"], app["units"]) == (5, 2, 3 * 64 * 64)
    assert sum(r["requests"] for (k, _), r in rows.items() if k != "app") == 1, "the 401 is recorded without a key"


def test_image_to_video_can_answer_asynchronously(stack: Stack) -> None:
    form = {k: str(v) for k, v in SMALL.items()}
    files = {"image": ("in.png", png(), "image/png")}
    started = requests.post(
        stack.base_url + "/image-to-video", data=form, files=files, headers={"Prefer": "respond-async"}, timeout=30
    )
    assert started.status_code == 202, started.text
    request_id = started.json()["request_id"]
    deadline = time.monotonic() + 120
    while True:
        poll = requests.post(stack.base_url + "/image-to-video/result", json={"request_id": request_id}, timeout=30)
        if poll.status_code == 200 or time.monotonic() > deadline:
            break
        assert poll.json() == {"status": "processing"}
        time.sleep(0.3)
    answer = poll.json()
    assert answer["status"] == "complete", answer
    (video,) = answer["result"]["images"]
    assert requests.get(video["url"], timeout=10).headers["content-type"] == "video/mp4"
    unknown = requests.post(stack.base_url + "/image-to-video/result", json={"request_id": "nope"}, timeout=30)
    assert unknown.status_code == 404
