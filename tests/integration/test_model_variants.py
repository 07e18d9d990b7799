"""Model-specific behaviour keyed on real model ids, exercised with tiny models saved under those ids
(the loading code cannot tell them apart from the real checkpoints)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from procs import RunnerProcess

SMALL = {"prompt": "x", "width": 64, "height": 64, "num_inference_steps": 30, "seed": 1}


def copy_repo(models_dir: Path, source: str, target: str, into: Path) -> Path:
    src = models_dir / ("models--" + source.replace("/", "--"))
    dst = into / ("models--" + target.replace("/", "--"))
    shutil.copytree(src, dst)
    return next((dst / "snapshots").iterdir())


@pytest.fixture(scope="module")
def variants_dir(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    into = tmp_path_factory.mktemp("variant-models")
    for helper in ("lpnode/tiny-safety-checker",):
        copy_repo(models_dir, helper, helper, into)
    # SDXL-Lightning: the SDXL base plus a UNet weights file in ByteDance/SDXL-Lightning.
    base = copy_repo(models_dir, "lpnode/tiny-sdxl-turbo", "stabilityai/stable-diffusion-xl-base-1.0", into)
    lightning = into / "models--ByteDance--SDXL-Lightning" / "snapshots" / ("1" * 40)
    lightning.mkdir(parents=True)
    shutil.copy(
        base / "unet" / "diffusion_pytorch_model.safetensors", lightning / "sdxl_lightning_4step_unet.safetensors"
    )
    (lightning.parents[1] / "refs").mkdir()
    (lightning.parents[1] / "refs" / "main").write_text("1" * 40)
    # A plain SD model under the real instruct-pix2pix id is still found by its model_index class.
    copy_repo(models_dir, "lpnode/tiny-instruct-pix2pix", "timbrooks/instruct-pix2pix", into)
    return into


def steps_of_last_job(runner: RunnerProcess) -> int:
    return int(re.findall(r"job finished steps=(\d+)", runner.log())[-1])


def test_sdxl_lightning_runs_its_fixed_step_count(start_runner, variants_dir: Path) -> None:  # type: ignore[no-untyped-def]
    runner = start_runner("text-to-image", "ByteDance/SDXL-Lightning-4step", models=variants_dir)
    assert runner.wait_status({"IDLE", "ERROR"})[-1] == "IDLE", runner.log()
    r = runner.post("/text-to-image", json=SMALL)
    assert r.status_code == 200, r.text[:300]
    assert steps_of_last_job(runner) == 4  # asked for 30


def test_sdxl_lightning_without_its_unet_file_says_what_to_pull(
    start_runner,
    variants_dir: Path,  # type: ignore[no-untyped-def]
) -> None:
    runner = start_runner("text-to-image", "ByteDance/SDXL-Lightning-8step", models=variants_dir)
    assert runner.wait_status({"IDLE", "ERROR"})[-1] == "ERROR"
    assert "sdxl_lightning_8step_unet.safetensors" in runner.log()
    assert "lpnode models pull ByteDance/SDXL-Lightning" in runner.log()


def test_instruct_pix2pix_by_id(start_runner, variants_dir: Path) -> None:  # type: ignore[no-untyped-def]
    runner = start_runner("image-to-image", "timbrooks/instruct-pix2pix", models=variants_dir)
    assert runner.wait_status({"IDLE", "ERROR"})[-1] == "IDLE", runner.log()
    assert "StableDiffusionInstructPix2PixPipeline" in runner.log()
