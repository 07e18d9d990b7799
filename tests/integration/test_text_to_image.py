"""text-to-image over HTTP on a real `lpnode runner`: output, seeds, errors, auth, health, metrics."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from pathlib import Path

import pytest
import requests
import torch
from PIL import Image

from procs import RunnerProcess, child_env

MODEL = "lpnode/tiny-text-to-image"
TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SMALL = {"width": 64, "height": 64, "num_inference_steps": 2}


def decode_png(url: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    image = Image.open(io.BytesIO(base64.b64decode(url[len(prefix) :])))
    assert image.format == "PNG"
    return image


# The disconnect test needs a job that runs for a minute: more steps than the default limit allows.
SLOW_JOBS = child_env(LPNODE_LIMITS=json.dumps({"text-to-image": {"max_steps": 5000}}))


@pytest.fixture(scope="module")
def runner(start_runner) -> RunnerProcess:  # type: ignore[no-untyped-def]
    proc: RunnerProcess = start_runner(
        "text-to-image", MODEL, "--auth-token", TOKEN, "--max-in-flight", "1", "--max-queue", "1", env=SLOW_JOBS
    )
    seen = proc.wait_status({"IDLE", "ERROR"})
    assert seen[-1] == "IDLE", proc.log()
    return proc


def test_health_reports_loading_until_the_model_is_loaded(start_runner) -> None:  # type: ignore[no-untyped-def]
    proc = start_runner("text-to-image", MODEL)
    seen = proc.wait_status({"IDLE", "ERROR"})
    assert seen[0] == "LOADING"
    assert seen[-1] == "IDLE"
    assert "model loaded" in proc.log()


def test_generates_requested_count_and_size_with_seed_per_image(runner: RunnerProcess) -> None:
    body = {"prompt": "a lighthouse", "seed": 7, "num_images_per_prompt": 2, **SMALL, "width": 48}
    response = runner.post("/text-to-image", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    images = response.json()["images"]
    assert [m["seed"] for m in images] == [7, 8]
    assert [m["nsfw"] for m in images] == [False, False]
    for media in images:
        assert decode_png(media["url"]).size == (48, 64)


def test_same_seed_gives_same_bytes_and_other_seed_differs(runner: RunnerProcess) -> None:
    def url(seed: int) -> str:
        r = runner.post("/text-to-image", json={"prompt": "a cat", "seed": seed, **SMALL}, headers=AUTH)
        assert r.status_code == 200, r.text
        return str(r.json()["images"][0]["url"])

    assert url(11) == url(11)
    assert url(11) != url(12)


def test_second_image_of_a_batch_equals_a_single_image_with_its_seed(runner: RunnerProcess) -> None:
    pair = runner.post(
        "/text-to-image", json={"prompt": "x", "seed": 20, "num_images_per_prompt": 2, **SMALL}, headers=AUTH
    ).json()["images"]
    single = runner.post("/text-to-image", json={"prompt": "x", "seed": 21, **SMALL}, headers=AUTH).json()["images"]
    assert pair[1]["url"] == single[0]["url"]


def test_random_seed_is_reported_when_absent(runner: RunnerProcess) -> None:
    r = runner.post("/text-to-image", json={"prompt": "x", **SMALL}, headers=AUTH)
    assert r.status_code == 200
    assert isinstance(r.json()["images"][0]["seed"], int)


def test_trailing_slash_route_works(runner: RunnerProcess) -> None:
    r = runner.post("/text-to-image/", json={"prompt": "x", "seed": 1, **SMALL}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert runner.get("/health/").json()["status"] in {"IDLE", "OK"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}])
def test_job_routes_need_the_bearer_token(runner: RunnerProcess, headers: dict[str, str]) -> None:
    r = runner.post("/text-to-image", json={"prompt": "x", **SMALL}, headers=headers)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert r.json() == {"detail": {"msg": "Invalid bearer token."}}


def test_health_version_hardware_need_no_token(runner: RunnerProcess) -> None:
    assert runner.get("/version").json() == {"pipeline": "text-to-image", "model_id": MODEL, "version": "0.1.0"}
    assert runner.get("/hardware/info").json() == {"pipeline": "text-to-image", "model_id": MODEL, "gpu_info": {}}
    assert runner.get("/hardware/stats").json() == {"pipeline": "text-to-image", "model_id": MODEL, "gpu_stats": {}}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"prompt": ""}, 400, "Prompt must be provided."),
        (
            {"prompt": "x", "model_id": "someone/else"},
            400,
            f"pipeline configured with {MODEL} but called with someone/else.",
        ),
        (
            {"prompt": "x", "width": 60},
            400,
            "`height` and `width` have to be positive and divisible by 8 but are 576 and 60.",
        ),
        ({"prompt": "x", "num_images_per_prompt": 0}, 400, "num_images_per_prompt must be at least 1."),
        ({"prompt": "x", "seed": -1}, 400, "seed must be between 0 and 9223372036854775806, got -1."),
        ({"prompt": "x", "loras": "{nope"}, 400, "Unable to parse '{nope' as JSON."),
        ({"prompt": "x", "loras": '{"a/b": -1}'}, 400, "All strengths must be numbers greater than or equal to 0.0."),
        (
            {"prompt": "x", "loras": '{"a/b":1,"c/d":1,"e/f":1,"g/h":1,"i/j":1}'},
            400,
            "Too many LoRas provided. Maximum is 4.",
        ),
        ({"prompt": "x", "loras": '{"missing/lora": 1.0}', **SMALL}, 400, "LoRa repository 'missing/lora' not found."),
    ],
)
def test_bad_requests_get_400_with_a_clear_message(
    runner: RunnerProcess, body: dict[str, object], status: int, message: str
) -> None:
    r = runner.post("/text-to-image", json=body, headers=AUTH)
    assert r.status_code == status, r.text
    assert r.json() == {"detail": {"msg": message}}


@pytest.mark.parametrize(
    "body",
    [{}, {"prompt": 5}, {"prompt": "x", "height": "tall"}, {"prompt": "x", "guidance_scale": [1]}],
)
def test_invalid_bodies_get_422_with_field_locations(runner: RunnerProcess, body: dict[str, object]) -> None:
    r = runner.post("/text-to-image", json=body, headers=AUTH)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert isinstance(detail, list) and detail
    assert all(item["loc"][0] == "body" and item["msg"] for item in detail)


def test_malformed_json_gets_422(runner: RunnerProcess) -> None:
    r = runner.post("/text-to-image", data=b"{not json", headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 422


def test_routes_of_other_pipelines_are_not_mounted(runner: RunnerProcess) -> None:
    assert runner.post("/image-to-image", headers=AUTH).status_code == 404


def slow_body(seed: int, steps: int = 150) -> dict[str, object]:
    # Enough steps to keep the tiny model busy for a few seconds.
    return {"prompt": "slow", "seed": seed, "width": 64, "height": 64, "num_inference_steps": steps}


def test_health_answers_while_a_job_runs_and_overflow_gets_503(runner: RunnerProcess) -> None:
    results: dict[str, int] = {}

    def call(name: str) -> None:
        results[name] = runner.post("/text-to-image", json=slow_body(1), headers=AUTH).status_code

    first = threading.Thread(target=call, args=("first",))
    first.start()
    deadline = time.monotonic() + 20
    while runner.health() != "OK" and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    assert runner.health() == "OK"  # busy, and still answering
    assert time.monotonic() - started < 1.0
    second = threading.Thread(target=call, args=("second",))
    second.start()  # queued (max-queue 1)
    deadline = time.monotonic() + 10
    while (
        'lpnode_runner_jobs_queued{model_id="lpnode/tiny-text-to-image",pipeline="text-to-image"} 1.0'
        not in (runner.get("/metrics").text)
        and time.monotonic() < deadline
    ):
        time.sleep(0.02)
    overflow = runner.post("/text-to-image", json=slow_body(2), headers=AUTH)
    assert overflow.status_code == 503
    assert int(overflow.headers["Retry-After"]) >= 1
    assert "capacity" in overflow.json()["detail"]["msg"]
    first.join(60)
    second.join(60)
    assert results == {"first": 200, "second": 200}
    assert runner.health() == "IDLE"


def test_client_disconnect_cancels_the_running_job(runner: RunnerProcess) -> None:
    def cancelled_count() -> float:
        for line in runner.get("/metrics").text.splitlines():
            if line.startswith("lpnode_runner_jobs_cancelled_total"):
                return float(line.split()[-1])
        return 0.0

    before = cancelled_count()
    with pytest.raises(requests.Timeout):
        # About a minute of work if it ran to the end.
        runner.post("/text-to-image", json=slow_body(3, steps=2000), headers=AUTH, timeout=1.0)
    deadline = time.monotonic() + 10
    while cancelled_count() == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cancelled_count() == before + 1
    # The slot is free again at once: the job stopped between steps instead of running to the end.
    deadline = time.monotonic() + 3
    while runner.health() != "IDLE" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runner.health() == "IDLE"
    assert "job cancelled" in runner.log()


def test_metrics_count_requests_by_route_and_status(runner: RunnerProcess) -> None:
    runner.post("/text-to-image", json={"prompt": ""}, headers=AUTH)
    text = runner.get("/metrics").text
    assert 'lpnode_runner_requests_total{route="/text-to-image",status="400"}' in text
    assert 'version{app="ai-runner",version="0.1.0"} 1.0' in text
    assert "lpnode_runner_model_load_seconds" in text


def test_openapi_document_is_served(runner: RunnerProcess) -> None:
    doc = runner.get("/openapi.json").json()
    assert "/text-to-image" in doc["paths"]
    assert doc["components"]["schemas"]["TextToImageParams"]["required"] == ["prompt"]


def test_loras_change_the_image_and_switch_off_again(runner: RunnerProcess) -> None:
    def url(loras: str) -> str:
        r = runner.post("/text-to-image", json={"prompt": "x", "seed": 5, "loras": loras, **SMALL}, headers=AUTH)
        assert r.status_code == 200, r.text[:300]
        return str(r.json()["images"][0]["url"])

    plain = url("")
    with_lora = url('{"lpnode/tiny-lora": 1.0}')
    assert with_lora != plain
    assert url('{"lpnode/tiny-lora": 1.0}') == with_lora
    assert url('{"lpnode/tiny-lora": 0.0}') == plain
    assert url("") == plain
    assert "lora loaded" in runner.log()


def test_loras_that_do_not_fit_are_clear_400s(runner: RunnerProcess, models_dir: Path) -> None:
    # A LoRA whose tensors have the wrong shapes for this UNet, in a repo of its own.
    from safetensors.torch import load_file, save_file

    source = next((models_dir / "models--lpnode--tiny-lora").rglob("pytorch_lora_weights.safetensors"))
    wrong = {k: torch.zeros(v.shape[0] + 3, v.shape[1] + 5) for k, v in load_file(source).items()}
    snapshot = models_dir / "models--test--mismatched-lora" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    save_file(wrong, snapshot / "pytorch_lora_weights.safetensors")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)

    def message(loras: str) -> str:
        r = runner.post("/text-to-image", json={"prompt": "x", "loras": loras, **SMALL}, headers=AUTH)
        assert r.status_code == 400, r.text[:300]
        return str(r.json()["detail"]["msg"])

    assert message('{"test/mismatched-lora": 1}') == "LoRa incompatible with base model: 'lpnode/tiny-text-to-image'."
    assert message('{"lpnode/tiny-upscale": 1}') == (
        "LoRa repository 'lpnode/tiny-upscale' needs exactly one .safetensors weights file at its top level; "
        "found none."
    )
    # The runner still serves after refusing them.
    assert runner.post("/text-to-image", json={"prompt": "x", **SMALL}, headers=AUTH).status_code == 200
