"""Inputs a model cannot take, and requests over the operator's limits, are 400s from a real runner that says
what is wrong; the runner stays healthy and serves the next request."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from procs import RunnerProcess, child_env


def png_bytes(size: tuple[int, int] = (64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 40, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def img2img(start_runner) -> RunnerProcess:  # type: ignore[no-untyped-def]
    env = child_env(LPNODE_LIMITS=json.dumps({"image-to-image": {"max_steps": 20}}))
    runner: RunnerProcess = start_runner("image-to-image", "lpnode/tiny-image-to-image", env=env)
    assert runner.wait_status({"IDLE", "ERROR"})[-1] == "IDLE", runner.log()
    return runner


def post(runner: RunnerProcess, size: tuple[int, int] = (64, 64), **fields: object) -> tuple[int, str]:
    data = {"prompt": "make it blue", "seed": "1", **{k: str(v) for k, v in fields.items()}}
    r = runner.post("/image-to-image", data=data, files={"image": ("in.png", png_bytes(size), "image/png")})
    return r.status_code, r.json()["detail"]["msg"] if r.status_code != 200 else ""


def test_one_step_at_strength_0_8_is_a_400_saying_why_and_the_runner_serves_on(img2img: RunnerProcess) -> None:
    # int(1 x 0.8) = 0 denoising steps: the model library fails on it (a 500 before), so it is refused first.
    assert post(img2img, num_inference_steps=1) == (
        400,
        "num_inference_steps x strength must be at least 1, so that one denoising step runs; got 1 x 0.8 = 0.8. "
        "Raise num_inference_steps or strength.",
    )
    assert post(img2img, num_inference_steps=2, strength=0.5) == (200, "")
    assert img2img.health() == "IDLE"


def test_an_image_too_small_for_the_model_is_a_400(img2img: RunnerProcess) -> None:
    assert post(img2img, size=(1, 1), num_inference_steps=2) == (
        400,
        "The uploaded image is 1x1 pixels; this pipeline needs at least 8 pixels on each side.",
    )


def test_the_operators_limit_is_applied_and_named(img2img: RunnerProcess) -> None:
    assert post(img2img, num_inference_steps=21) == (
        400,
        "num_inference_steps must be at most 20 on this node, got 21.",
    )
    assert post(img2img, num_inference_steps=2147483648) == (
        400,
        "num_inference_steps must be at most 20 on this node, got 2147483648.",
    )
