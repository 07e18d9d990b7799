"""Tiny random-weight models: build them, then load and run them like a server would."""

from __future__ import annotations

import os

# Must be set before huggingface_hub/diffusers/transformers are imported: the
# flag is read at import time.
os.environ["HF_HUB_OFFLINE"] = "1"

import hashlib
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from lpnode.runner import tiny
from lpnode.runner.tiny import _layout

torch.set_num_threads(1)  # tiny ops on a shared 2-core box: 1 thread is fastest

IDS = [
    "lpnode/tiny-safety-checker",
    "lpnode/tiny-text-to-image",
    "lpnode/tiny-sdxl-turbo",
    "lpnode/tiny-image-to-image",
    "lpnode/tiny-instruct-pix2pix",
    "lpnode/tiny-upscale",
    "lpnode/tiny-image-to-video",
    "lpnode/tiny-lora",
    "lpnode/tiny-audio-to-text",
    "lpnode/tiny-image-to-text",
    "lpnode/tiny-text-to-speech",
    "lpnode/tiny-segment-anything-2",
    "lpnode/tiny-llm",
]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("models")
    built = tiny.build(d)
    assert [m.model_id for m in built] == [m.model_id for m in tiny.available()]
    return d


def _tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _image(size: int = 64) -> Image.Image:
    return Image.new("RGB", (size, size), (120, 30, 200))


# --- registry and layout --------------------------------------------------------


def test_registry() -> None:
    assert sorted(m.model_id for m in tiny.available()) == sorted(IDS)
    assert tiny.pipelines() == [
        "text-to-image",
        "image-to-image",
        "image-to-video",
        "upscale",
        "audio-to-text",
        "segment-anything-2",
        "llm",
        "image-to-text",
        "text-to-speech",
    ]
    for m in tiny.available():
        assert m.description and "\n" not in m.description
    helpers = [m.model_id for m in tiny.available() if m.pipeline == ""]
    assert sorted(helpers) == ["lpnode/tiny-lora", "lpnode/tiny-safety-checker"]


def test_unknown_pipeline_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown pipeline 'nope'; choose from: ") as exc:
        tiny.build(tmp_path, "nope")
    for name in ["all", *tiny.pipelines()]:
        assert name in str(exc.value)
    assert list(tmp_path.iterdir()) == []


def test_layout(models_dir: Path) -> None:
    for model_id in IDS:
        org, name = model_id.split("/")
        repo = models_dir / f"models--{org}--{name}"
        rev = (repo / "refs" / "main").read_text().strip()
        assert len(rev) == 40 and int(rev, 16) >= 0
        snap = tiny.snapshot_dir(models_dir, model_id)
        assert snap == repo / "snapshots" / rev
        assert snap.is_dir()
        # no leftover temp folders next to the snapshot
        assert [p.name for p in (repo / "snapshots").iterdir()] == [rev]


def test_second_build_rebuilds_nothing(models_dir: Path) -> None:
    before = {m: tiny.snapshot_dir(models_dir, m).stat().st_mtime_ns for m in IDS}
    assert tiny.build(models_dir) == []
    assert tiny.build(models_dir, "text-to-image") == []
    after = {m: tiny.snapshot_dir(models_dir, m).stat().st_mtime_ns for m in IDS}
    assert before == after


def test_pipeline_build_includes_safety_checker_and_is_deterministic(models_dir: Path, tmp_path: Path) -> None:
    ids = ["lpnode/tiny-safety-checker", "lpnode/tiny-upscale"]
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    built = tiny.build(tmp_path, "upscale")
    assert torch.equal(torch.rand(3), expected_draw)  # caller's RNG left alone
    assert sorted(m.model_id for m in built) == ids
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "models--lpnode--tiny-safety-checker",
        "models--lpnode--tiny-upscale",
    ]
    for model_id in ids:  # same weights as the fixture's build, byte for byte
        expected = _tree_digest(tiny.snapshot_dir(models_dir, model_id))
        assert _tree_digest(tiny.snapshot_dir(tmp_path, model_id)) == expected
    rebuilt = tiny.build(tmp_path, "upscale", force=True)
    assert sorted(m.model_id for m in rebuilt) == ids
    up = "lpnode/tiny-upscale"
    assert _tree_digest(tiny.snapshot_dir(tmp_path, up)) == _tree_digest(tiny.snapshot_dir(models_dir, up))


def test_failed_save_leaves_no_snapshot(tmp_path: Path) -> None:
    def broken(folder: Path) -> None:
        (folder / "config.json").write_text("{}")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _layout.write_snapshot(tmp_path, "lpnode/broken", broken)
    assert not _layout.is_present(tmp_path, "lpnode/broken")
    assert list((_layout.repo_dir(tmp_path, "lpnode/broken") / "snapshots").iterdir()) == []


# --- load and run like a server -------------------------------------------------


def _load(class_name: str, model_id: str, models_dir: Path, **kwargs: Any) -> Any:
    """``diffusers.<class_name>.from_pretrained(model_id, cache_dir=models_dir)``."""
    cls: Any = getattr(importlib.import_module("diffusers"), class_name)
    return cls.from_pretrained(model_id, cache_dir=models_dir, **kwargs)


def _t2i(d: Path, model_id: str) -> Any:
    pipe = _load("AutoPipelineForText2Image", model_id, d)
    kwargs: dict[str, Any] = {"num_inference_steps": 2}
    if "sdxl" in model_id:
        assert type(pipe).__name__ == "StableDiffusionXLPipeline"
        kwargs = {"num_inference_steps": 1, "guidance_scale": 0.0}
    else:
        assert type(pipe).__name__ == "StableDiffusionPipeline"
    out = pipe(prompt="a photo of a cat", generator=torch.Generator().manual_seed(0), **kwargs)
    assert [im.size for im in out.images] == [(64, 64)]  # default size: 32 * 2
    out = pipe(prompt="a cat", height=48, width=80, **kwargs)
    assert out.images[0].size == (80, 48)
    return pipe


def _i2i(d: Path, model_id: str) -> Any:
    pipe = _load("AutoPipelineForImage2Image", model_id, d)
    assert type(pipe).__name__ == "StableDiffusionImg2ImgPipeline"
    out = pipe(prompt="a cat", image=_image(), strength=0.8, num_inference_steps=2)
    assert out.images[0].size == (64, 64)
    return pipe


def _pix2pix(d: Path, model_id: str) -> Any:
    pipe = _load("StableDiffusionInstructPix2PixPipeline", model_id, d)
    assert pipe.unet.config.in_channels == 8
    out = pipe(prompt="make it red", image=_image(), num_inference_steps=2)
    assert out.images[0].size == (64, 64)
    return pipe


def _upscale(d: Path, model_id: str) -> Any:
    pipe = _load("StableDiffusionUpscalePipeline", model_id, d)
    out = pipe(prompt="a cat", image=_image(32), num_inference_steps=2)
    assert out.images[0].size == (128, 128)
    return pipe


def _i2v(d: Path, model_id: str) -> Any:
    pipe = _load("StableVideoDiffusionPipeline", model_id, d)
    out = pipe(
        image=_image(),
        height=64,
        width=64,
        num_inference_steps=2,
        decode_chunk_size=4,
        generator=torch.Generator().manual_seed(0),
    )
    assert len(out.frames) == 1
    assert len(out.frames[0]) == 4  # unet.config.num_frames
    assert {f.size for f in out.frames[0]} == {(64, 64)}
    return pipe


RUNNERS: dict[str, Callable[[Path, str], Any]] = {
    "lpnode/tiny-text-to-image": _t2i,
    "lpnode/tiny-sdxl-turbo": _t2i,
    "lpnode/tiny-image-to-image": _i2i,
    "lpnode/tiny-instruct-pix2pix": _pix2pix,
    "lpnode/tiny-upscale": _upscale,
    "lpnode/tiny-image-to-video": _i2v,
}


@pytest.mark.parametrize("model_id", list(RUNNERS))
def test_load_and_run(models_dir: Path, model_id: str) -> None:
    RUNNERS[model_id](models_dir, model_id)


def test_pix2pix_model_index(models_dir: Path) -> None:
    import json

    index = json.loads((tiny.snapshot_dir(models_dir, "lpnode/tiny-instruct-pix2pix") / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionInstructPix2PixPipeline"


def test_safety_checker(models_dir: Path) -> None:
    import numpy as np
    from diffusers.pipelines.stable_diffusion.safety_checker import (
        StableDiffusionSafetyChecker,
    )
    from transformers import CLIPImageProcessor

    sc_id = "lpnode/tiny-safety-checker"
    snap = tiny.snapshot_dir(models_dir, sc_id)
    assert (snap / "preprocessor_config.json").is_file()
    checker = StableDiffusionSafetyChecker.from_pretrained(sc_id, cache_dir=models_dir)
    processor = CLIPImageProcessor.from_pretrained(sc_id, cache_dir=models_dir)

    clip_input = processor([_image(), _image(48)], return_tensors="pt").pixel_values
    assert tuple(clip_input.shape) == (2, 3, 224, 224)
    images = np.zeros((2, 64, 64, 3), dtype=np.float32)
    _, nsfw = checker(images=images, clip_input=clip_input)
    assert nsfw == [False, False]

    # As a pipeline component, the way the serving code plugs it in.
    pipe = _load(
        "AutoPipelineForText2Image",
        "lpnode/tiny-text-to-image",
        models_dir,
        safety_checker=checker,
        feature_extractor=processor,
    )
    out = pipe(prompt="a cat", num_inference_steps=2)
    assert out.nsfw_content_detected == [False]
    assert out.images[0].size == (64, 64)
