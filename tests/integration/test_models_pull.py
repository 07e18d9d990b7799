"""`lpnode models pull --ai-models` against a Hub stand-in, and a diffusion runner without its safety checker.

The Hugging Face Hub cannot be reached from here: ``fake_hub.FakeHub`` serves the same HTTP calls on loopback
(``HF_ENDPOINT``). Everything else is real: the `lpnode` command, its runner and orchestrator processes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from fake_hub import FakeHub
from procs import LPNODE, OrchestratorProcess, RunnerProcess, child_env, run_cli

CHECKER = "CompVis/stable-diffusion-safety-checker"
BIG = b"w" * 400_000  # sent in 4 KB pieces 50 ms apart: ~5 s, time to interrupt it


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    hub = FakeHub()
    hub.add(
        "acme/diffusion",
        {"model_index.json": b'{"_class_name": "StableDiffusionPipeline"}', "unet/config.json": b'{"a": 1}'},
    )
    hub.add(CHECKER, {"config.json": b'{"b": 2}', "preprocessor_config.json": b'{"c": 3}'})
    hub.add("acme/gated", {"config.json": b'{"d": 4}'}, token="hf_open")
    with hub.running():
        yield hub


def hub_env(hub: FakeHub) -> dict[str, str]:
    return child_env(HF_HUB_OFFLINE="0", HF_ENDPOINT=hub.url, HF_HUB_DISABLE_TELEMETRY="1", HF_TOKEN="")


def write(path: Path, entries: list[dict[str, object]]) -> Path:
    path.write_text(json.dumps(entries))
    return path


def test_pull_fetches_every_model_of_ai_models_with_the_safety_checker(hub: FakeHub, tmp_path: Path) -> None:
    config = write(
        tmp_path / "aiModels.json",
        [
            {"pipeline": "text-to-image", "model_id": "acme/diffusion", "warm": True},
            {"pipeline": "image-to-image", "model_id": "acme/diffusion"},
            {"pipeline": "llm", "model_id": "acme/gated"},
            {"pipeline": "upscale", "model_id": "acme/missing"},
            {"pipeline": "llm", "model_id": "meta-llama/x", "url": "http://llm:8000"},
            {"pipeline": "live-video-to-video", "model_id": "noop"},
        ],
    )
    models = tmp_path / "models"
    args = ("models", "pull", "--ai-models", str(config), "--models-dir", str(models))
    first = run_cli(*args, env=hub_env(hub))
    assert first.returncode == 1, first.stdout + first.stderr
    lines = first.stdout.splitlines()
    assert lines[:2] == [
        "skipped llm meta-llama/x: served by the external runner at http://llm:8000",
        "skipped live-video-to-video noop: a live pipeline: its runner prepares its own models",
    ]
    assert lines[2].startswith("[1/4] acme/diffusion (text-to-image, image-to-image): fetched 2 file(s)")
    assert lines[3].startswith(f"[2/4] {CHECKER} (safety checker): fetched 2 file(s)")
    assert lines[4] == "[3/4] acme/gated (llm): failed: acme/gated is gated: accept its licence on huggingface.co, " + (
        "then pass --token or set HF_TOKEN"
    )
    assert lines[5].startswith("[4/4] acme/missing (upscale): failed: acme/missing was not found on the Hub")
    assert lines[6] == f"2 fetched, 0 already present, 2 failed (models dir {models})"
    assert "Traceback" not in first.stderr
    listed = run_cli("models", "list", "--models-dir", str(models), "--json")
    assert {m["model_id"] for m in json.loads(listed.stdout)} == {"acme/diffusion", CHECKER}

    downloads = len(hub.gets())
    again = run_cli(*args, "--token", "hf_open", env=hub_env(hub))
    assert again.returncode == 1  # acme/missing still fails
    assert "[1/4] acme/diffusion (text-to-image, image-to-image): already present" in again.stdout
    assert f"[2/4] {CHECKER} (safety checker): already present" in again.stdout
    assert "[3/4] acme/gated (llm): fetched 1 file(s)" in again.stdout
    assert again.stdout.splitlines()[-1] == f"1 fetched, 2 already present, 1 failed (models dir {models})"
    assert [p for p in hub.gets()[downloads:] if not p.startswith("/acme/gated/")] == []


def test_a_killed_pull_continues_without_fetching_finished_files_again(hub: FakeHub, tmp_path: Path) -> None:
    hub.add("acme/big", {"config.json": b'{"e": 5}', "model.safetensors": BIG})
    hub.slow.add("acme/big/model.safetensors")
    config = write(tmp_path / "aiModels.json", [{"pipeline": "llm", "model_id": "acme/big"}])
    models = tmp_path / "models"
    args = [*LPNODE, "models", "pull", "--ai-models", str(config), "--models-dir", str(models)]
    pull = subprocess.Popen(args, env=hub_env(hub), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    blobs = models / "models--acme--big" / "blobs"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (
        list(blobs.glob("*.incomplete")) and [p for p in blobs.glob("*") if not p.name.endswith(".incomplete")]
    ):
        time.sleep(0.05)
    pull.send_signal(signal.SIGKILL)  # as an operator's reboot or OOM kill would
    pull.communicate(timeout=10)
    assert list(blobs.glob("*.incomplete")), "the big file should have been cut mid-way"
    assert not (
        models / "models--acme--big" / "snapshots" / "0123456789abcdef0123456789abcdef01234567" / "model.safetensors"
    ).exists()

    hub.slow.clear()
    before = len(hub.gets())
    again = run_cli(*args[3:], env=hub_env(hub))
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.splitlines()[0].startswith("[1/1] acme/big (llm): fetched 1 file(s), 390.6 KB")
    assert [p.rsplit("/", 1)[1] for p in hub.gets()[before:]] == ["model.safetensors"]
    assert not list(blobs.glob("*.incomplete")), "the killed pull's partial file is left behind"
    snapshot = next((models / "models--acme--big" / "snapshots").iterdir())
    assert (snapshot / "model.safetensors").read_bytes() == BIG


def test_an_unusable_ai_models_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "aiModels.json"
    bad.write_text('[{"pipeline": "text-to-image", "model_id": "a/b",}]')
    result = run_cli("models", "pull", "--ai-models", str(bad), "--models-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith("lpnode: error: aiModels.json: not valid JSON: ")
    assert len(result.stderr.splitlines()) == 1
    write(bad, [{"pipeline": "text-to-imag", "model_id": "a/b"}])
    result = run_cli("models", "pull", "--ai-models", str(bad), "--models-dir", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "text-to-image" in result.stderr and "upscale" in result.stderr  # the valid names
    both = run_cli("models", "pull", "a/b", "--ai-models", str(bad))
    assert both.returncode == 2 and "not both" in both.stderr
    neither = run_cli("models", "pull")
    assert neither.returncode == 2 and "--ai-models FILE" in neither.stderr


@pytest.fixture(scope="module")
def no_checker_dir(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models dir holding the tiny text-to-image model but not the safety checker its runner loads."""
    path = tmp_path_factory.mktemp("no-checker")
    folder = "models--lpnode--tiny-text-to-image"
    (path / folder).symlink_to(models_dir / folder, target_is_directory=True)
    return path


def test_runner_without_its_safety_checker_says_so_on_health_and_in_its_log(
    no_checker_dir: Path, tmp_path: Path
) -> None:
    runner = RunnerProcess(
        ["--pipeline", "text-to-image", "--model-id", "lpnode/tiny-text-to-image", "--models-dir",
         str(no_checker_dir), "--safety-checker", "lpnode/tiny-safety-checker"],
        tmp_path / "runner.log",
    )  # fmt: skip
    try:
        runner.wait_status({"IDLE"})
        health = runner.get("/health").json()
        assert health["status"] == "IDLE"  # it serves: a go-livepeer orchestrator must keep it
        [warning] = health["warnings"]
        assert warning.startswith("Safety checker unavailable: model 'lpnode/tiny-safety-checker' is not in")
        assert "lpnode models pull --ai-models aiModels.json" in warning
        body = {"prompt": "a cat", "width": 64, "height": 64, "num_inference_steps": 1}
        refused = runner.post("/text-to-image", json=body)
        assert refused.status_code == 500 and "Safety checker unavailable" in refused.json()["detail"]["msg"]
        unchecked = runner.post("/text-to-image", json={**body, "safety_check": False})
        assert unchecked.status_code == 200 and unchecked.json()["images"][0]["nsfw"] is False
        assert runner.log().count("safety checker unavailable") == 1
    finally:
        runner.stop()


def test_orchestrator_logs_the_missing_checker_and_doctor_gives_the_fix(no_checker_dir: Path, tmp_path: Path) -> None:
    config = write(
        tmp_path / "aiModels.json",
        [{"pipeline": "text-to-image", "model_id": "lpnode/tiny-text-to-image", "warm": True}],
    )
    orch = OrchestratorProcess(config, no_checker_dir, tmp_path / "orch", plain=True)
    try:
        orch.wait_ready()
        deadline = time.monotonic() + 120
        while "runner ready" not in orch.log() and time.monotonic() < deadline:
            time.sleep(0.3)
        degraded = [line for line in orch.log().splitlines() if "runner degraded" in line]
        assert len(degraded) == 1 and "Safety checker unavailable" in degraded[0], orch.log()
        doctor = run_cli(
            "doctor", "--orchestrator", orch.base_url, "--gateway", "http://127.0.0.1:9",
            "--ai-models", str(config), "--models-dir", str(no_checker_dir), timeout=60,
        )  # fmt: skip
        out = doctor.stdout
        assert doctor.returncode == 1
        fix = f"      fix: lpnode models pull --ai-models {config} --models-dir {no_checker_dir}"
        assert "FAIL  model files lpnode/tiny-safety-checker (loaded by text-to-image): not in" in out, out
        assert "FAIL  runner text-to-image lpnode/tiny-text-to-image: loaded on cpu (IDLE), but: Safety checker" in out
        assert out.count(fix) == 2, out
        assert "Traceback" not in doctor.stderr
    finally:
        assert orch.stop() == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(orch.base_url + "/healthz", timeout=2)
