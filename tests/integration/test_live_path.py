"""Live video end to end: `lpnode live play` → gateway → orchestrator → live runner (`noop`) and back.

A synthetic H.264 clip (128×128, 24 fps, an IDR each second) carries its frame number in every picture (eight
black or white blocks, one bit each). Two orchestrators each serve `noop` with one warm live runner; one
gateway knows both. What a user sees is checked: the output file holds the input frames in order, at the input
size (a few may be dropped: noop keeps the newest frame when it is behind; the count is reported); a params
update shows in the stream's status; a finished stream frees the orchestrator's capacity; a live runner killed
mid-stream is reported on the gateway's status and the stream goes on at the other orchestrator.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import requests

from lpnode.gateway.orch_client import OrchestratorClient
from lpnode.protocol.lp_rpc_pb2 import OrchestratorInfo
from procs import LPNODE, GatewayProcess, OrchestratorProcess, child_env, pid_alive, run_cli

SIZE = 128
FPS = 24
BITS = 8
PARAMS = {"width": SIZE, "height": SIZE}
PIPELINE = "live-video-to-video"
CLIP_SECONDS = 10.0


def write_clip(path: Path, seconds: float) -> int:
    """An H.264 MP4 whose frame n shows n in binary (2 rows × 4 columns of blocks); the frame count."""
    frames = round(seconds * FPS)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS, options={"g": str(FPS), "bf": "0", "crf": "18"})
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        for n in range(frames):
            picture = np.zeros((SIZE, SIZE, 3), np.uint8)
            for bit in range(BITS):
                if n >> bit & 1:
                    row, col = divmod(bit, 4)
                    picture[row * 64 : (row + 1) * 64, col * 32 : (col + 1) * 32] = 255
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts, frame.time_base = n, Fraction(1, FPS)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return frames


def frame_numbers(path: Path) -> tuple[list[int], set[tuple[int, int]]]:
    """The numbers shown by the frames of a video file, in order, and the picture sizes seen."""
    numbers, sizes = [], set()
    with av.open(str(path)) as inp:
        for frame in inp.decode(video=0):
            sizes.add((frame.width, frame.height))
            gray = frame.to_ndarray(format="gray").astype(float)
            h, w = gray.shape
            value = 0
            for bit in range(BITS):
                row, col = divmod(bit, 4)
                block = gray[row * h // 2 : (row + 1) * h // 2, col * w // 4 : (col + 1) * w // 4]
                if block[4:-4, 4:-4].mean() > 128:
                    value |= 1 << bit
            numbers.append(value)
    return numbers, sizes


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    path = tmp_path_factory.mktemp("clips") / "numbered.mp4"
    return path, write_clip(path, CLIP_SECONDS)


@pytest.fixture(scope="module")
def orchestrators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[OrchestratorProcess]]:
    root = tmp_path_factory.mktemp("orchs")
    entry = {"pipeline": PIPELINE, "model_id": "noop", "warm": True, "capacity": 1}
    (root / "aiModels.json").write_text(json.dumps([entry]))
    (root / "models").mkdir()
    nodes = [OrchestratorProcess(root / "aiModels.json", root / "models", root / name) for name in ("a", "b")]
    try:
        for node in nodes:
            node.wait_ready()
        for node in nodes:
            wait_for(lambda n=node: live_model(n)["runners"] and live_model(n)["runners"][0]["state"] == "IDLE", 120)
        yield nodes
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture(scope="module")
def gateway(
    orchestrators: list[OrchestratorProcess], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    node = GatewayProcess(tmp_path_factory.mktemp("gw"), "--orch-addr", ",".join(o.base_url for o in orchestrators))
    try:
        yield node
    finally:
        node.stop()


def live_model(orch: OrchestratorProcess) -> dict[str, Any]:
    (model,) = [m for m in orch.status() if m["pipeline"] == PIPELINE]
    return model


def wait_for(check: Any, timeout: float, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except (requests.RequestException, KeyError, ValueError):
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what or check}")


def play(gateway: GatewayProcess, clip: Path, output: Path, stream: str) -> subprocess.Popen[str]:
    args = [*LPNODE, "live", "play", str(clip), "--pipeline", "noop", "--params", json.dumps(PARAMS)]
    args += ["--gateway", gateway.base_url, "--output", str(output), "--stream", stream]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env())


def finish(proc: subprocess.Popen[str]) -> str:
    try:
        out, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
        raise AssertionError(f"lpnode live play did not finish:\n{out}") from None
    assert proc.returncode == 0, out
    assert "Traceback" not in out, out
    return out


def status(gateway: GatewayProcess, stream: str) -> dict[str, Any]:
    answer = requests.get(f"{gateway.base_url}/live/video-to-video/{stream}/status", timeout=10)
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    return body


def test_a_file_comes_back_frame_for_frame_and_a_params_update_reaches_the_runner(
    gateway: GatewayProcess, orchestrators: list[OrchestratorProcess], clip: tuple[Path, int],
    tmp_path: Path,
) -> None:  # fmt: skip
    output = tmp_path / "out.ts"
    proc = play(gateway, clip[0], output, "first")
    sent = clip[1]
    wait_for(lambda: status(gateway, "first")["gateway_status"]["output_segments"] >= 1, 60, "the first output")
    update = {**PARAMS, "note": "second params"}
    answer = requests.post(f"{gateway.base_url}/live/video-to-video/first/update", json=update, timeout=10)
    assert answer.status_code == 200, answer.text
    # The runner reports its params in its next status event (every few seconds).
    wait_for(lambda: status(gateway, "first")["inference_status"]["last_params"]["note"] == "second params", 30)
    out = finish(proc)

    numbers, sizes = frame_numbers(output)
    print(f"{sent} frames sent, {len(numbers)} came back ({sent - len(numbers)} dropped)\n{out}")
    assert sizes == {(SIZE, SIZE)}
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers), numbers
    assert all(0 <= n < sent for n in numbers)
    # Frames may be dropped on the way (noop keeps the newest frame when the runner is behind, which on a
    # busy CPU is often); what came back must cover the whole clip, every second of it.
    seconds_covered = {n // FPS for n in numbers}
    assert seconds_covered == set(range(int(CLIP_SECONDS))), f"seconds with no frame back: {numbers}"

    final = status(gateway, "first")  # readable after the end
    assert final["gateway_status"]["state"] == "ended"
    assert final["gateway_status"]["input_segments"] >= CLIP_SECONDS - 1 and final["gateway_status"]["swaps"] == 0

    unknown = requests.post(f"{gateway.base_url}/live/video-to-video/nobody/update", json={}, timeout=10)
    assert unknown.status_code == 404


def test_a_finished_stream_frees_the_orchestrators_capacity(orchestrators: list[OrchestratorProcess]) -> None:
    for orch in orchestrators:
        wait_for(lambda o=orch: live_model(o)["in_use"] == 0 and o.get("/status").json()["live"] == [], 30)
        wait_for(lambda o=orch: live_model(o)["runners"][0]["state"] == "IDLE", 30, "runner IDLE")
        info = asyncio.run(advertised(orch.base_url))
        model = info.capabilities.constraints.PerCapability[35].models["noop"]
        assert (model.capacity, model.capacityInUse, model.warm) == (1, 0, True)


async def advertised(url: str) -> OrchestratorInfo:
    client = OrchestratorClient()
    try:
        return await client.get_info(url)
    finally:
        await client.close()


def test_a_killed_live_runner_is_reported_and_the_stream_resumes_on_the_other_orchestrator(
    gateway: GatewayProcess, orchestrators: list[OrchestratorProcess], clip: tuple[Path, int],
    tmp_path: Path,
) -> None:  # fmt: skip
    output = tmp_path / "swapped.ts"
    proc = play(gateway, clip[0], output, "swap")
    sent = clip[1]
    first = wait_for(lambda: status(gateway, "swap")["gateway_status"]["output_segments"] >= 2 and
                     status(gateway, "swap")["gateway_status"], 60, "output before the kill")  # fmt: skip
    (serving,) = [o for o in orchestrators if o.base_url == first["orchestrator"]]
    (pid,) = serving.runner_pids()
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not pid_alive(pid), 10)

    moved = wait_for(
        lambda: (s := status(gateway, "swap")["gateway_status"])["swaps"] == 1 and s["orchestrator"] != serving.base_url
        and s["output_segments"] > first["output_segments"] + 1 and s,
        60,
        "output from the other orchestrator",
    )  # fmt: skip
    assert serving.base_url in moved["last_error"], moved
    out = finish(proc)
    numbers, sizes = frame_numbers(output)
    print(f"{sent} frames sent, {len(numbers)} came back across the swap\n{out}")
    assert sizes == {(SIZE, SIZE)}
    assert numbers[-1] >= sent * 0.7, "the end of the clip did not come back after the swap"
    assert "1 orchestrator swaps" in out


def test_with_api_keys_a_stream_belongs_to_the_key_that_started_it(
    orchestrators: list[OrchestratorProcess], tmp_path: Path
) -> None:
    data = tmp_path / "keyed"
    keys = []
    for name in ("alice", "bob"):
        created = run_cli("keys", "create", name, "--max-concurrent", "1", "--json", "--data-dir", str(data))
        assert created.returncode == 0, created.stderr
        keys.append({"Authorization": f"Bearer {json.loads(created.stdout)['key']}"})
    alice, bob = keys
    gateway = GatewayProcess(data, "--auth", "keys", "--orch-addr", ",".join(o.base_url for o in orchestrators))
    base = f"{gateway.base_url}/live/video-to-video"
    try:
        body = {"model_id": "noop", "params": PARAMS}
        assert requests.post(f"{base}/keyed/start", json=body, timeout=60).status_code == 401
        started = requests.post(f"{base}/keyed/start", json=body, headers=alice, timeout=60)
        assert started.status_code == 200, started.text
        assert requests.get(f"{base}/keyed/status", headers=bob, timeout=10).status_code == 401
        assert requests.get(f"{base}/keyed/status", headers=alice, timeout=10).status_code == 200
        # alice may run one request at once: the stream holds it until it ends
        assert requests.post(f"{base}/other/start", json=body, headers=alice, timeout=60).status_code == 429
        stopped = requests.post(f"{base}/keyed/stop", headers=alice, timeout=30)
        assert stopped.json()["gateway_status"]["state"] == "ended"
    finally:
        gateway.stop()
