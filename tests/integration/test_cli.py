"""The `lpnode` command: models, openapi, up — run as a user runs them."""

from __future__ import annotations

import base64
import io
import json
import re
import signal
import subprocess
import time
from pathlib import Path

from PIL import Image

from procs import LPNODE, child_env, free_port, run_cli

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_openapi_document_matches_the_code() -> None:
    result = subprocess.run(
        [*LPNODE, "openapi", "--check", "--output", "docs/openapi/runner.json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads((ROOT / "docs/openapi/runner.json").read_text())
    body = doc["components"]["schemas"]["Body_genImageToImage"]
    assert body["required"] == ["prompt", "image"]
    assert body["properties"]["image"] == {
        "type": "string",
        "format": "binary",
        "title": "Image",
        "description": "The image to transform.",
    }


def test_openapi_check_fails_on_drift(tmp_path: Path) -> None:
    stale = tmp_path / "runner.json"
    stale.write_text("{}\n")
    result = run_cli("openapi", "--check", "--output", str(stale))
    assert result.returncode == 1
    assert "out of date" in result.stderr


def test_models_list_shows_ids_sizes_and_pipelines(models_dir: Path) -> None:
    result = run_cli("models", "list", "--models-dir", str(models_dir))
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert rows["lpnode/tiny-upscale"].endswith("upscale")
    assert rows["lpnode/tiny-image-to-video"].endswith("image-to-video")
    assert "text-to-image, image-to-image" in rows["lpnode/tiny-sdxl-turbo"]
    listed = json.loads(run_cli("models", "list", "--models-dir", str(models_dir), "--json").stdout)
    pix2pix = next(m for m in listed if m["model_id"] == "lpnode/tiny-instruct-pix2pix")
    assert pix2pix["pipelines"] == ["image-to-image"]
    assert pix2pix["size_bytes"] > 100_000 and pix2pix["files"] > 5


def test_models_list_of_an_empty_dir_says_how_to_pull(tmp_path: Path) -> None:
    result = run_cli("models", "list", "--models-dir", str(tmp_path))
    assert result.returncode == 0
    assert "lpnode models pull" in result.stdout


def test_models_tiny_builds_once_and_rejects_unknown_pipelines(tmp_path: Path) -> None:
    first = run_cli("models", "tiny", "--pipeline", "upscale", "--models-dir", str(tmp_path))
    assert first.returncode == 0, first.stderr
    assert "built lpnode/tiny-upscale" in first.stdout
    again = run_cli("models", "tiny", "--pipeline", "upscale", "--models-dir", str(tmp_path))
    assert "already in" in again.stdout
    bad = run_cli("models", "tiny", "--pipeline", "nope", "--models-dir", str(tmp_path))
    assert bad.returncode == 2
    assert bad.stderr.startswith("lpnode: error: unknown pipeline 'nope'")


def test_models_pull_without_the_hub_is_one_clear_error(tmp_path: Path) -> None:
    # A closed loopback port stands in for an unreachable Hub, whatever network the machine has.
    env = child_env(HF_HUB_OFFLINE="0", HF_ENDPOINT=f"http://127.0.0.1:{free_port()}")
    result = run_cli("models", "pull", "stabilityai/sd-turbo", "--models-dir", str(tmp_path), env=env)
    assert result.returncode == 2
    assert "lpnode: error: cannot reach the Hugging Face Hub" in result.stderr
    assert "Traceback" not in result.stderr
    bad = run_cli("models", "pull", "not-a-repo-id", "--models-dir", str(tmp_path), env=env)
    assert bad.returncode == 2
    assert "expected org/name" in bad.stderr


def test_up_prints_a_curl_line_that_works(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*LPNODE, "up", "--data-dir", str(tmp_path / "data"), "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env(),
        )
        try:
            deadline = time.monotonic() + 120
            command = None
            while time.monotonic() < deadline and proc.poll() is None:
                match = re.search(r"^\s+(curl .*)$", log_path.read_text(), re.MULTILINE)
                if match:
                    command = match.group(1)
                    break
                time.sleep(0.2)
            assert command, log_path.read_text()
            assert f"http://127.0.0.1:{port}/text-to-image" in command
            result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stderr
            (media,) = json.loads(result.stdout)["images"]
            image = Image.open(io.BytesIO(base64.b64decode(media["url"].split(",", 1)[1])))
            assert image.size == (64, 64) and media["seed"] == 42
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    assert "Traceback" not in log_path.read_text()
