"""`lpnode orchestrator` as a gateway sees it: GetOrchestrator over TLS, paid-job headers, capacity, cold
starts, runner failures and results, all through real processes on loopback.

The orchestrator is started with go-livepeer's flag spellings, as an operator's start script would.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest
import requests
from PIL import Image

from lpclient import get_orchestrator, job_headers, segment_header
from lpnode.protocol.capabilities import Capability
from lpnode.protocol.lp_rpc_pb2 import AuthToken, Capabilities, OrchestratorInfo
from procs import OrchestratorProcess, child_env, wait_gone
from sdk import sdk_python

T2I = "lpnode/tiny-text-to-image"
UPSCALE = "lpnode/tiny-upscale"
LLM = "lpnode/tiny-llm"
I2V = "lpnode/tiny-image-to-video"
AI_MODELS = [
    {"pipeline": "text-to-image", "model_id": T2I, "warm": True, "capacity": 2,
     "price_per_unit": 4768371, "pixels_per_unit": 1000},
    {"pipeline": "upscale", "model_id": UPSCALE, "warm": False},
    {"pipeline": "llm", "model_id": LLM, "warm": True, "price_per_unit": 7, "currency": "wei"},
    {"pipeline": "image-to-video", "model_id": I2V, "warm": False},
]  # fmt: skip


def t2i_body(steps: int = 2, **extra: Any) -> dict[str, Any]:
    return {"prompt": "a lighthouse", "model_id": T2I, "width": 64, "height": 64, "num_inference_steps": steps} | extra


def png_bytes(size: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (200, 40, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def orch(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrchestratorProcess]:
    tmp = tmp_path_factory.mktemp("orchestrator")
    (tmp / "aiModels.json").write_text(json.dumps(AI_MODELS))
    # Slow jobs (to hold runners busy) take more steps than the default limit allows.
    slow_jobs = child_env(LPNODE_LIMITS=json.dumps({"text-to-image": {"max_steps": 5000}}))
    node = OrchestratorProcess(tmp / "aiModels.json", models_dir, tmp / "data", go_flags=True, env=slow_jobs)
    try:
        node.wait_ready()
        yield node
    finally:
        pids = node.runner_pids() if node.proc.poll() is None else []
        assert node.stop() == 0, node.log()
        assert wait_gone(pids) == [], f"runners left behind after SIGTERM:\n{node.log()}"


def info_of(node: OrchestratorProcess) -> OrchestratorInfo:
    return get_orchestrator(node.base_url, node.cert)


def headers(node: OrchestratorProcess, **kwargs: Any) -> dict[str, str]:
    return job_headers(info_of(node).auth_token, **kwargs)


def model_status(node: OrchestratorProcess, model_id: str) -> dict[str, Any]:
    return next(m for m in node.status() if m["model_id"] == model_id)


def wait_runners(node: OrchestratorProcess, model_id: str, states: set[str], count: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runners = model_status(node, model_id)["runners"]
        if sum(r["state"] in states for r in runners) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"{model_id} never had {count} runners in {states}: {model_status(node, model_id)}")


# --- GetOrchestrator ---------------------------------------------------------------------------------


def test_grpc_client_gets_each_model_with_warm_flag_capacity_and_price(orch: OrchestratorProcess) -> None:
    info = info_of(orch)
    assert info.transcoder == orch.base_url
    caps = info.capabilities
    per = caps.constraints.PerCapability
    t2i = per[Capability.TEXT_TO_IMAGE].models[T2I]
    assert (t2i.warm, t2i.capacity, t2i.runnerVersion) == (True, 2, "0.1.0")
    upscale = per[Capability.UPSCALE].models[UPSCALE]
    assert (upscale.warm, upscale.capacity) == (False, 1)
    assert per[Capability.LLM].models[LLM].warm
    assert not per[Capability.IMAGE_TO_VIDEO].models[I2V].warm
    wanted_bits = sum(1 << c for c in (27, 29, 30, 33))
    assert caps.bitstring[0] == wanted_bits
    prices = {(p.capability, p.constraint): Fraction(p.pricePerUnit, p.pixelsPerUnit) for p in info.capabilities_prices}
    assert prices == {(27, T2I): Fraction(4768371, 1000), (33, LLM): Fraction(7)}
    assert {(h.pipeline, h.model_id) for h in info.hardware} == {(m["pipeline"], m["model_id"]) for m in AI_MODELS}
    assert info.auth_token.session_id and len(info.auth_token.token) == 32
    assert info.auth_token.expiration > time.time() + 29 * 60


# --- credentials -------------------------------------------------------------------------------------


def test_job_with_the_token_succeeds_and_each_image_gets_its_own_url(orch: OrchestratorProcess) -> None:
    response = orch.post("/text-to-image", json=t2i_body(num_images_per_prompt=2, seed=7), headers=headers(orch))
    assert response.status_code == 200, response.text
    images = response.json()["images"]
    assert [i["seed"] for i in images] == [7, 8]
    urls = [i["url"] for i in images]
    assert len(set(urls)) == 2 and all(u.startswith(f"{orch.base_url}/stream/") for u in urls)
    for url in urls:
        fetched = requests.get(url, verify=orch.verify, timeout=10)
        assert fetched.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(fetched.content)).size == (64, 64)


def test_caller_without_the_worker_header_gets_data_urls(orch: OrchestratorProcess) -> None:
    response = orch.post("/text-to-image", json=t2i_body(), headers=headers(orch, worker=False))
    assert response.status_code == 200, response.text
    assert response.json()["images"][0]["url"].startswith("data:image/png;base64,")


def test_missing_or_forged_token_is_403(orch: OrchestratorProcess) -> None:
    missing = orch.post("/text-to-image", json=t2i_body(), headers=job_headers(None))
    assert missing.status_code == 403
    assert "no auth token" in missing.text
    no_header = orch.post("/text-to-image", json=t2i_body(), headers={"Livepeer-Payment": ""})
    assert no_header.status_code == 403 and "Livepeer-Segment" in no_header.text
    token = info_of(orch).auth_token
    forged = AuthToken(token=bytes(32), session_id=token.session_id, expiration=token.expiration)
    response = orch.post("/text-to-image", json=t2i_body(), headers=job_headers(forged))
    assert response.status_code == 403 and "not issued by this orchestrator" in response.text
    stretched = AuthToken(token=token.token, session_id=token.session_id, expiration=token.expiration + 3600)
    assert orch.post("/text-to-image", json=t2i_body(), headers=job_headers(stretched)).status_code == 403


def test_bad_payment_header_is_402_and_bad_segment_is_403(orch: OrchestratorProcess) -> None:
    good = headers(orch)
    response = orch.post("/text-to-image", json=t2i_body(), headers=good | {"Livepeer-Payment": "%%%"})
    assert response.status_code == 402 and "Livepeer-Payment" in response.text
    response = orch.post("/text-to-image", json=t2i_body(), headers=good | {"Livepeer-Segment": "bm90IHByb3Rv"})
    assert response.status_code == 403


def test_capabilities_the_node_lacks_are_403(orch: OrchestratorProcess) -> None:
    info = info_of(orch)
    wanted = Capabilities(bitstring=[1 << Capability.AUDIO_TO_TEXT])
    seg = {"Livepeer-Segment": segment_header(info.auth_token, wanted), "Livepeer-Payment": ""}
    response = orch.post("/text-to-image", json=t2i_body(), headers=seg)
    assert response.status_code == 403
    assert response.text == "incompatible capabilities: capabilities not offered here: audio-to-text\n"


# --- bad input ---------------------------------------------------------------------------------------


def test_unknown_model_and_bad_fields_are_400_with_the_reason(orch: OrchestratorProcess) -> None:
    unknown = orch.post("/text-to-image", json=t2i_body(model_id="org/nope"), headers=headers(orch))
    assert unknown.status_code == 400 and "'org/nope' is not served here" in unknown.text
    bad = orch.post("/text-to-image", json=t2i_body(width="wide"), headers=headers(orch))
    assert bad.status_code == 400
    assert bad.text.startswith("text-to-image container returned 400: width:")
    not_json = orch.post("/text-to-image", data=b"{", headers=headers(orch) | {"Content-Type": "application/json"})
    assert not_json.status_code == 400 and "not valid JSON" in not_json.text
    wrong_type = orch.post("/text-to-image", data=b"x", headers=headers(orch) | {"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415


def test_omitted_model_id_means_the_pipelines_only_model(orch: OrchestratorProcess) -> None:
    body = t2i_body()
    del body["model_id"]
    response = orch.post("/text-to-image", json=body, headers=headers(orch))
    assert response.status_code == 200, response.text


# --- cold start, capacity, failures ------------------------------------------------------------------


def test_cold_model_starts_on_first_request_with_model_id_after_the_file(orch: OrchestratorProcess) -> None:
    assert model_status(orch, UPSCALE)["runners"] == []
    form = [
        ("image", ("in.png", png_bytes(), "image/png")),
        ("prompt", (None, "sharper")),
        ("num_inference_steps", (None, "2")),
        ("model_id", (None, UPSCALE)),
    ]
    response = orch.post("/upscale", files=form, headers=headers(orch))
    assert response.status_code == 200, response.text
    fetched = requests.get(response.json()["images"][0]["url"], verify=orch.verify, timeout=10)
    assert Image.open(io.BytesIO(fetched.content)).size == (128, 128)
    assert 'lpnode_orchestrator_cold_starts_total{model_id="lpnode/tiny-upscale",pipeline="upscale"} 1.0' in (
        orch.get("/metrics").text
    )


def test_capacity_two_serves_two_at_once_and_the_third_gets_503_at_once(orch: OrchestratorProcess) -> None:
    wait_runners(orch, T2I, {"IDLE", "OK"}, 2)
    slow = t2i_body(steps=400)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        running = [pool.submit(orch.post, "/text-to-image", json=slow, headers=headers(orch)) for _ in range(2)]
        deadline = time.monotonic() + 30
        while model_status(orch, T2I)["in_use"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
        third = orch.post("/text-to-image", json=t2i_body(), headers=headers(orch))
        refused_in = time.monotonic() - started
        assert not any(f.done() for f in running), "the third request must be refused while two are running"
        results = [f.result() for f in running]
    assert third.status_code == 503 and third.text == "insufficient capacity\n"
    assert third.headers["Retry-After"] == "1"
    assert refused_in < 2.0
    assert [r.status_code for r in results] == [200, 200], [r.text for r in results]


def test_killed_runner_gives_a_clean_500_then_comes_back(orch: OrchestratorProcess) -> None:
    wait_runners(orch, T2I, {"IDLE", "OK"}, 2)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(orch.post, "/text-to-image", json=t2i_body(steps=2000), headers=headers(orch))
        deadline = time.monotonic() + 30
        busy: list[dict[str, Any]] = []
        while not busy and time.monotonic() < deadline:
            busy = [r for r in model_status(orch, T2I)["runners"] if r["in_use"]]
            time.sleep(0.05)
        assert busy, "the request never reached a runner"
        os.kill(busy[0]["pid"], signal.SIGKILL)
        response = pending.result(timeout=60)
    assert response.status_code == 500
    assert "failed" in response.text and "Traceback" not in response.text
    wait_runners(orch, T2I, {"IDLE", "OK"}, 2)
    assert orch.post("/text-to-image", json=t2i_body(), headers=headers(orch)).status_code == 200


def test_client_that_goes_away_frees_the_runner_at_once(orch: OrchestratorProcess) -> None:
    wait_runners(orch, T2I, {"IDLE", "OK"}, 2)
    body = json.dumps(t2i_body(steps=3000)).encode()
    head = (
        f"POST /text-to-image HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers(orch).items()) + "\r\n"
    ).encode()
    context = ssl.create_default_context(cafile=str(orch.cert))
    with (
        socket.create_connection(("127.0.0.1", orch.port)) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
    ):
        conn.sendall(head + body)
        deadline = time.monotonic() + 30
        while model_status(orch, T2I)["in_use"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert model_status(orch, T2I)["in_use"] == 1
    left = time.monotonic()
    while model_status(orch, T2I)["in_use"] and time.monotonic() - left < 10:
        time.sleep(0.05)
    assert model_status(orch, T2I)["in_use"] == 0, "the lease must end when the caller goes away"
    assert time.monotonic() - left < 5
    assert orch.post("/text-to-image", json=t2i_body(), headers=headers(orch)).status_code == 200


# --- streamed and re-encoded answers -----------------------------------------------------------------


def test_llm_stream_is_passed_through_as_it_is_generated(orch: OrchestratorProcess) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "model": LLM, "max_tokens": 8, "stream": True}
    response = orch.post("/llm", json=body, headers=headers(orch), stream=True)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line for line in response.iter_lines() if line]
    assert events[-1] == b"data: [DONE]"
    chunks = [json.loads(e.removeprefix(b"data: ")) for e in events[:-1]]
    # The tiny model's random weights may end the answer at any token, so count only what must be there.
    assert chunks and chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    # Each token yields at most one chunk of text (a partial character waits for the next); the last chunk carries
    # the finish reason and the usage, no text.
    assert chunks[-1]["usage"]["completion_tokens"] >= len(chunks) - 1


def test_image_to_video_frames_become_one_mp4(orch: OrchestratorProcess) -> None:
    form = {"model_id": I2V, "width": "64", "height": "64", "num_inference_steps": "2"}
    files = {"image": ("in.png", png_bytes(64), "image/png")}
    response = orch.post("/image-to-video", data=form, files=files, headers=headers(orch, worker=False))
    assert response.status_code == 200, response.text
    (video,) = response.json()["images"]
    fetched = requests.get(video["url"], verify=orch.verify, timeout=10)
    assert fetched.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(fetched.content)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        assert (stream.codec_context.width, stream.codec_context.height) == (64, 64)
        assert len(frames) >= 2


def test_metrics_count_jobs_by_pipeline_model_and_status(orch: OrchestratorProcess) -> None:
    orch.post("/text-to-image", json=t2i_body(), headers=headers(orch))
    text = orch.get("/metrics").text
    assert (
        'lpnode_orchestrator_jobs_total{model_id="lpnode/tiny-text-to-image",pipeline="text-to-image",status="200"}'
        in text
    )
    assert 'status="403"' in text and 'status="503"' in text
    assert "lpnode_orchestrator_job_duration_seconds_bucket" in text
    assert "lpnode_orchestrator_get_orchestrator_total" in text


# --- the livepeer-gateway SDK and short-lived tokens (a second node, sharing the first one's runner) ---


@pytest.fixture(scope="module")
def external(
    orch: OrchestratorProcess, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OrchestratorProcess]:
    """An orchestrator whose only model is the first one's text-to-image runner, as an external `url`
    entry, with 2-second tokens."""
    wait_runners(orch, T2I, {"IDLE", "OK"}, 1)
    runner_url = next(r["url"] for r in model_status(orch, T2I)["runners"] if r["state"] in ("IDLE", "OK"))
    tmp = tmp_path_factory.mktemp("external")
    entry = {"pipeline": "text-to-image", "model_id": T2I, "url": runner_url, "capacity": 1}
    (tmp / "aiModels.json").write_text(json.dumps([entry]))
    node = OrchestratorProcess(tmp / "aiModels.json", models_dir, tmp / "data", "--auth-token-ttl", "2")
    try:
        node.wait_ready()
        yield node
    finally:
        assert node.stop() == 0, node.log()


def test_expired_token_is_403(external: OrchestratorProcess) -> None:
    token = info_of(external).auth_token
    assert external.post("/text-to-image", json=t2i_body(), headers=job_headers(token)).status_code == 200
    time.sleep(3.2)
    response = external.post("/text-to-image", json=t2i_body(), headers=job_headers(token))
    assert response.status_code == 403 and "expired" in response.text


def test_token_of_another_orchestrator_is_403(orch: OrchestratorProcess, external: OrchestratorProcess) -> None:
    response = external.post("/text-to-image", json=t2i_body(), headers=headers(orch))
    assert response.status_code == 403 and "not issued by this orchestrator" in response.text


SDK_SCRIPT = """
import sys
from livepeer_gateway import get_orch_info
info = get_orch_info(sys.argv[1])
model = info.capabilities.constraints.PerCapability[27].models[sys.argv[2]]
print(info.transcoder, bool(info.auth_token.token), model.warm, model.capacity, len(info.capabilities_prices))
"""


def test_livepeer_gateway_sdk_gets_orchestrator_info_over_tls(orch: OrchestratorProcess) -> None:
    python = sdk_python()
    result = subprocess.run(
        [str(python), "-c", SDK_SCRIPT, orch.base_url, T2I], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [orch.base_url, "True", "True", "2", "2"]
