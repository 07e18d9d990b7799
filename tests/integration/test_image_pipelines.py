"""image-to-image (incl. instruct-pix2pix), upscale and image-to-video over HTTP on real runners."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from procs import RunnerProcess


def png_bytes(size: tuple[int, int] = (64, 64), color: tuple[int, int, int] = (200, 40, 90)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def decode(url: str) -> Image.Image:
    assert url.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert image.format == "PNG"
    return image


def ready(proc: RunnerProcess) -> RunnerProcess:
    assert proc.wait_status({"IDLE", "ERROR"})[-1] == "IDLE", proc.log()
    return proc


@pytest.fixture(scope="module")
def img2img(start_runner) -> RunnerProcess:  # type: ignore[no-untyped-def]
    return ready(start_runner("image-to-image", "lpnode/tiny-image-to-image"))


@pytest.fixture(scope="module")
def pix2pix(start_runner) -> RunnerProcess:  # type: ignore[no-untyped-def]
    return ready(start_runner("image-to-image", "lpnode/tiny-instruct-pix2pix"))


@pytest.fixture(scope="module")
def upscaler(start_runner) -> RunnerProcess:  # type: ignore[no-untyped-def]
    return ready(start_runner("upscale", "lpnode/tiny-upscale"))


@pytest.fixture(scope="module")
def img2vid(start_runner) -> RunnerProcess:  # type: ignore[no-untyped-def]
    return ready(start_runner("image-to-video", "lpnode/tiny-image-to-video"))


def form(**fields: object) -> dict[str, str]:
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in fields.items()}


def test_image_to_image_returns_images_of_the_input_size(img2img: RunnerProcess) -> None:
    r = img2img.post(
        "/image-to-image",
        data=form(prompt="make it blue", seed=5, num_inference_steps=4, strength=0.5, num_images_per_prompt=2),
        files={"image": ("in.png", png_bytes((64, 48)), "image/png")},
    )
    assert r.status_code == 200, r.text[:500]
    images = r.json()["images"]
    assert [m["seed"] for m in images] == [5, 6]
    assert all(decode(m["url"]).size == (64, 48) for m in images)
    again = img2img.post(
        "/image-to-image",
        data=form(prompt="make it blue", seed=5, num_inference_steps=4, strength=0.5),
        files={"image": ("in.png", png_bytes((64, 48)), "image/png")},
    )
    assert again.json()["images"][0]["url"] == images[0]["url"]


def test_image_to_image_accepts_jpeg_and_grayscale(img2img: RunnerProcess) -> None:
    buffer = io.BytesIO()
    Image.new("L", (64, 64), 128).save(buffer, format="JPEG")
    r = img2img.post(
        "/image-to-image",
        data=form(prompt="x", num_inference_steps=2, seed=1),
        files={"image": ("in.jpg", buffer.getvalue(), "image/jpeg")},
    )
    assert r.status_code == 200, r.text[:500]
    assert decode(r.json()["images"][0]["url"]).mode == "RGB"


def test_instruct_pix2pix_models_are_served_as_image_to_image(pix2pix: RunnerProcess) -> None:
    r = pix2pix.post(
        "/image-to-image",
        data=form(prompt="turn it into a painting", image_guidance_scale=1.2, num_inference_steps=2, seed=3),
        files={"image": ("in.png", png_bytes(), "image/png")},
    )
    assert r.status_code == 200, r.text[:500]
    assert decode(r.json()["images"][0]["url"]).size == (64, 64)
    assert "StableDiffusionInstructPix2PixPipeline" in pix2pix.log()


@pytest.mark.parametrize(
    ("payload", "message_part"),
    [(b"definitely not an image", "not a readable image"), (b"", "is empty")],
)
def test_bad_image_bytes_get_400(img2img: RunnerProcess, payload: bytes, message_part: str) -> None:
    r = img2img.post(
        "/image-to-image",
        data=form(prompt="x", num_inference_steps=2),
        files={"image": ("in.png", payload, "image/png")},
    )
    assert r.status_code == 400, r.text[:500]
    assert message_part in r.json()["detail"]["msg"]


def test_missing_image_gets_422_naming_the_field(img2img: RunnerProcess) -> None:
    r = img2img.post("/image-to-image", data=form(prompt="x"))
    assert r.status_code == 422
    assert ["body", "image"] in [item["loc"] for item in r.json()["detail"]]


def test_upload_over_50_mib_gets_413(img2img: RunnerProcess) -> None:
    big = b"\0" * (50 * 1024 * 1024 + 10)
    r = img2img.post("/image-to-image", data=form(prompt="x"), files={"image": ("big.png", big, "image/png")})
    assert r.status_code == 413
    assert r.json() == {"detail": {"msg": "File size exceeds limit."}}
    assert img2img.health() == "IDLE"


def test_strength_out_of_range_gets_400(img2img: RunnerProcess) -> None:
    r = img2img.post(
        "/image-to-image", data=form(prompt="x", strength=1.5), files={"image": ("in.png", png_bytes(), "image/png")}
    )
    assert r.status_code == 400
    assert "strength" in r.json()["detail"]["msg"]


def test_upscale_multiplies_the_size_by_four(upscaler: RunnerProcess) -> None:
    r = upscaler.post(
        "/upscale",
        data=form(prompt="sharp", num_inference_steps=2, seed=9),
        files={"image": ("in.png", png_bytes((32, 24)), "image/png")},
    )
    assert r.status_code == 200, r.text[:500]
    (media,) = r.json()["images"]
    assert media["seed"] == 9 and media["nsfw"] is False
    assert decode(media["url"]).size == (128, 96)
    again = upscaler.post(
        "/upscale",
        data=form(prompt="sharp", num_inference_steps=2, seed=9),
        files={"image": ("in.png", png_bytes((32, 24)), "image/png")},
    )
    assert again.json()["images"][0]["url"] == media["url"]


def test_upscale_seed_zero_is_kept(upscaler: RunnerProcess) -> None:
    r = upscaler.post(
        "/upscale",
        data=form(prompt="x", num_inference_steps=1, seed=0),
        files={"image": ("in.png", png_bytes((16, 16)), "image/png")},
    )
    assert r.status_code == 200, r.text[:500]
    assert r.json()["images"][0]["seed"] == 0


def test_image_to_video_returns_frames_of_the_requested_size(img2vid: RunnerProcess) -> None:
    fields = form(height=64, width=64, num_inference_steps=2, seed=4, safety_check=False)
    r = img2vid.post("/image-to-video", data=fields, files={"image": ("in.png", png_bytes(), "image/png")})
    assert r.status_code == 200, r.text[:500]
    frames = r.json()["frames"]
    assert len(frames) == 1 and len(frames[0]) == 4
    for media in frames[0]:
        assert media["seed"] == 4
        assert media["nsfw"] is False  # never null, even with the safety check off
        assert decode(media["url"]).size == (64, 64)
    again = img2vid.post("/image-to-video", data=fields, files={"image": ("in.png", png_bytes(), "image/png")})
    assert again.json()["frames"] == frames


def test_image_to_video_checks_sizes(img2vid: RunnerProcess) -> None:
    r = img2vid.post(
        "/image-to-video", data=form(height=60, width=64), files={"image": ("in.png", png_bytes(), "image/png")}
    )
    assert r.status_code == 400
    assert r.json()["detail"]["msg"] == (
        "`height` and `width` have to be positive and divisible by 8 but are 60 and 64."
    )


def test_image_to_video_with_safety_check_flags_every_frame(img2vid: RunnerProcess) -> None:
    r = img2vid.post(
        "/image-to-video",
        data=form(height=64, width=64, num_inference_steps=1, seed=1),
        files={"image": ("in.png", png_bytes(), "image/png")},
    )
    assert r.status_code == 200, r.text[:500]
    assert {m["nsfw"] for m in r.json()["frames"][0]} == {False}
