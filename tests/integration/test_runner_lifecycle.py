"""Starting, failing and stopping `lpnode runner`: health states, clear errors, ai-runner env contract."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from procs import LPNODE, RunnerProcess, child_env, free_port, run_cli


def test_runner_is_configured_by_the_ai_runner_environment(models_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    env = child_env(
        PIPELINE="text-to-image",
        MODEL_ID="lpnode/tiny-sdxl-turbo",
        MODEL_DIR=str(models_dir),
        AUTH_TOKEN="tok",
        VERSION="9.9.9",
        PORT=str(port),
        SAFETY_CHECKER_MODEL_ID="lpnode/tiny-safety-checker",
    )
    runner = RunnerProcess([], tmp_path / "env.log", env=env, port=port)
    try:
        assert runner.wait_status({"IDLE", "ERROR"})[-1] == "IDLE", runner.log()
        assert runner.get("/version").json() == {
            "pipeline": "text-to-image",
            "model_id": "lpnode/tiny-sdxl-turbo",
            "version": "9.9.9",
        }
        assert runner.post("/text-to-image", json={"prompt": "x"}).status_code == 401
        r = runner.post(
            "/text-to-image",
            json={"prompt": "a|b", "width": 64, "height": 64, "num_inference_steps": 1},
            headers={"Authorization": "Bearer tok"},
        )
        assert r.status_code == 200, r.text[:300]
        assert "StableDiffusionXLPipeline" in runner.log()
    finally:
        # SIGTERM is a graceful shutdown (uvicorn re-raises the signal once it has finished).
        assert runner.stop() in (0, -15)
        assert "Application shutdown complete" in runner.log()


def test_broken_model_dir_reports_error_and_a_readable_log_line(
    start_runner,
    models_dir: Path,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    broken = tmp_path / "models"
    shutil.copytree(models_dir / "models--lpnode--tiny-text-to-image", broken / "models--lpnode--tiny-text-to-image")
    for weights in (broken / "models--lpnode--tiny-text-to-image").rglob("unet/*.safetensors"):
        weights.write_bytes(b"not really safetensors")
    runner = start_runner("text-to-image", "lpnode/tiny-text-to-image", models=broken)
    assert runner.wait_status({"IDLE", "ERROR"})[-1] == "ERROR"
    log = runner.log()
    assert "model failed to load" in log and "lpnode/tiny-text-to-image" in log
    assert "Traceback" not in log.split("model failed to load")[1].splitlines()[0]
    r = runner.post("/text-to-image", json={"prompt": "x"})
    assert r.status_code == 503
    assert r.json()["detail"]["msg"].startswith("Model lpnode/tiny-text-to-image failed to load: ")
    assert "Traceback" not in r.text


def test_missing_model_says_how_to_fetch_it(start_runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runner = start_runner("upscale", "stabilityai/stable-diffusion-x4-upscaler", models=tmp_path)
    assert runner.wait_status({"IDLE", "ERROR"})[-1] == "ERROR"
    assert f"lpnode models pull stabilityai/stable-diffusion-x4-upscaler --models-dir {tmp_path}" in runner.log()


def test_missing_safety_checker_fails_only_requests_that_ask_for_it(start_runner) -> None:  # type: ignore[no-untyped-def]
    runner = start_runner("text-to-image", "lpnode/tiny-text-to-image", "--safety-checker", "nobody/checker")
    assert runner.wait_status({"IDLE", "ERROR"})[-1] == "IDLE"
    small = {"prompt": "x", "width": 64, "height": 64, "num_inference_steps": 1}
    r = runner.post("/text-to-image", json=small)
    assert r.status_code == 500
    assert "lpnode models pull nobody/checker" in r.json()["detail"]["msg"]
    assert runner.post("/text-to-image", json={**small, "safety_check": False}).status_code == 200


def test_busy_port_is_one_clear_error(models_dir: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run_cli(
            "runner",
            "--pipeline",
            "text-to-image",
            "--model-id",
            "lpnode/tiny-text-to-image",
            "--models-dir",
            str(models_dir),
            "--port",
            str(port),
        )
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"lpnode: error: cannot listen on 127.0.0.1:{port}")
    assert "Traceback" not in result.stderr


def test_unknown_pipeline_and_missing_model_id_are_clear_errors() -> None:
    result = run_cli("runner", "--pipeline", "text-to-mayhem", "--model-id", "a/b")
    assert result.returncode == 2
    assert "unknown pipeline 'text-to-mayhem'; choose one of: text-to-image" in result.stderr
    result = run_cli("runner", "--pipeline", "upscale")
    assert result.returncode == 2
    assert "no model given: set MODEL_ID or pass --model-id" in result.stderr


def test_ctrl_c_while_loading_stops_the_runner_cleanly(models_dir: Path, tmp_path: Path) -> None:
    runner = RunnerProcess(
        ["--pipeline", "image-to-video", "--model-id", "lpnode/tiny-image-to-video", "--models-dir", str(models_dir)],
        tmp_path / "sigint.log",
    )
    try:
        assert runner.wait_status({"LOADING", "IDLE"})[0] == "LOADING"
        runner.proc.send_signal(signal.SIGINT)
        runner.proc.wait(timeout=30)
    finally:
        runner.stop()
    assert runner.proc.returncode in (0, 130, -signal.SIGINT)  # 130: the shell convention for Ctrl-C
    assert "Traceback" not in runner.log()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", runner.port))  # the port is free again


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in {"Z", "X"}


def test_exit_with_parent_stops_the_runner_when_its_parent_is_killed(models_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    command = [
        *LPNODE,
        "runner",
        "--pipeline",
        "image-to-text",
        "--model-id",
        "lpnode/tiny-image-to-text",
        "--models-dir",
        str(models_dir),
        "--port",
        str(port),
        "--exit-with-parent",
    ]
    launcher = (
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen({command!r})\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", launcher], stdout=subprocess.PIPE, text=True, env=child_env())
    try:
        assert parent.stdout is not None
        runner_pid = int(parent.stdout.readline())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        assert _running(runner_pid)
        parent.kill()  # SIGKILL: the parent gets no chance to clean up
        parent.wait(timeout=10)
        deadline = time.monotonic() + 15
        while _running(runner_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(runner_pid), "the runner outlived its parent"
    finally:
        parent.kill()
        if parent.stdout is not None:
            parent.stdout.close()
        leftover = locals().get("runner_pid", 0)
        if leftover and _running(leftover):
            os.kill(leftover, signal.SIGKILL)
