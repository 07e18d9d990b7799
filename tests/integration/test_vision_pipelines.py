"""image-to-text and segment-anything-2 over HTTP on real runners with the tiny models."""

from __future__ import annotations

import ast
import importlib.util
import io
from typing import Any

import pytest
from PIL import Image

from procs import RunnerProcess

I2T = "lpnode/tiny-image-to-text"
SAM2 = "lpnode/tiny-segment-anything-2"
TOKEN = "vision-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def png_bytes(size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (30, 160, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


def image_file(size: tuple[int, int] = (64, 48)) -> dict[str, tuple[str, bytes, str]]:
    return {"image": ("in.png", png_bytes(size), "image/png")}


def ready(proc: RunnerProcess) -> RunnerProcess:
    assert proc.wait_status({"IDLE", "ERROR"})[-1] == "IDLE", proc.log()
    return proc


@pytest.fixture(scope="module")
def i2t(start_runner) -> RunnerProcess:  # type: ignore[no-untyped-def]
    return ready(start_runner("image-to-text", I2T, "--auth-token", TOKEN))


@pytest.fixture(scope="module")
def sam2(start_runner) -> RunnerProcess:  # type: ignore[no-untyped-def]
    return ready(start_runner("segment-anything-2", SAM2))


def error(r: Any, status: int) -> str:
    assert r.status_code == status, r.text[:500]
    msg: str = r.json()["detail"]["msg"]
    return msg


# --- image-to-text ----------------------------------------------------------------


@pytest.mark.parametrize("prompt", ["", "a photo of"])
def test_image_to_text_returns_text(i2t: RunnerProcess, prompt: str) -> None:
    r = i2t.post("/image-to-text", data={"prompt": prompt}, files=image_file(), headers=AUTH)
    assert r.status_code == 200, r.text[:500]
    body = r.json()
    assert list(body) == ["text"]
    assert isinstance(body["text"], str)
    if prompt:  # BLIP continues the prompt and keeps it, as upstream returns it
        assert body["text"].startswith(prompt)


def test_image_to_text_bad_image_gets_400(i2t: RunnerProcess) -> None:
    r = i2t.post("/image-to-text", files={"image": ("x.png", b"not an image", "image/png")}, headers=AUTH)
    assert "not a readable image" in error(r, 400)


def test_image_to_text_upload_over_50_mib_gets_413(i2t: RunnerProcess) -> None:
    big = b"\0" * (50 * 1024 * 1024 + 10)
    r = i2t.post("/image-to-text", files={"image": ("big.png", big, "image/png")}, headers=AUTH)
    assert error(r, 413).startswith("File size exceeds limit")


def test_image_to_text_model_id_guard_has_no_final_period(i2t: RunnerProcess) -> None:
    r = i2t.post("/image-to-text", data={"model_id": "other/model"}, files=image_file(), headers=AUTH)
    assert error(r, 400) == f"pipeline configured with {I2T} but called with other/model"
    ok = i2t.post("/image-to-text", data={"model_id": I2T}, files=image_file(), headers=AUTH)
    assert ok.status_code == 200, ok.text[:500]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
def test_image_to_text_401_has_no_final_period(i2t: RunnerProcess, headers: dict[str, str]) -> None:
    r = i2t.post("/image-to-text", files=image_file(), headers=headers)
    assert error(r, 401) == "Invalid bearer token"
    assert r.headers["WWW-Authenticate"] == "Bearer"


# --- segment-anything-2 -------------------------------------------------------------


def segment(proc: RunnerProcess, size: tuple[int, int] = (64, 48), **fields: object) -> Any:
    data = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in fields.items()}
    return proc.post("/segment-anything-2", data=data, files=image_file(size))


def parsed(r: Any) -> tuple[list[Any], list[float], list[Any]]:
    assert r.status_code == 200, r.text[:500]
    body = r.json()
    assert sorted(body) == ["logits", "masks", "scores"]
    assert all(isinstance(v, str) for v in body.values())
    return ast.literal_eval(body["masks"]), ast.literal_eval(body["scores"]), ast.literal_eval(body["logits"])


def shape(nested: list[Any]) -> tuple[int, ...]:
    dims = []
    while isinstance(nested, list):
        dims.append(len(nested))
        nested = nested[0]
    return tuple(dims)


def test_points_give_three_masks_of_the_image_size_sorted_by_score(sam2: RunnerProcess) -> None:
    masks, scores, logits = parsed(segment(sam2, point_coords="[[10, 20], [50, 30]]", point_labels="[1, 0]"))
    assert shape(masks) == (3, 48, 64)  # C x H x W of the uploaded image
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    assert shape(logits) == (3, 32, 32)  # low-res: the tiny model's 128 input / 4
    assert any(v not in (0.0, 1.0) for v in masks[0][0])  # return_logits defaults to true: raw logits


def test_single_mask_box_prompt_and_binary_masks(sam2: RunnerProcess) -> None:
    masks, scores, logits = parsed(
        segment(sam2, (40, 70), box="[4, 6, 30, 60]", multimask_output=False, return_logits=False)
    )
    assert shape(masks) == (1, 70, 40)
    assert len(scores) == 1 and shape(logits) == (1, 32, 32)
    # Upstream's masks are float32 arrays: thresholded ones print as 0.0 / 1.0.
    assert {v for row in masks[0] for v in row} <= {0.0, 1.0}


def test_normalized_coordinates_and_mask_input_round_trip(sam2: RunnerProcess) -> None:
    _, _, logits = parsed(segment(sam2, point_coords="[[0.5, 0.5]]", point_labels="[1]", normalize_coords=False))
    masks, _, _ = parsed(
        segment(sam2, point_coords="[[32, 24]]", point_labels="[1]", box="[0, 0, 64, 48]", mask_input=str(logits[:1]))
    )
    assert shape(masks) == (3, 48, 64)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"point_coords": "[[1, 2]", "point_labels": "[1]"}, "Error parsing JSON for point_coords: "),
        ({"point_coords": "[1, 2]", "point_labels": "[1]"}, "point_coords must be a JSON array of [x, y] pairs"),
        ({"point_coords": "[[1, 2, 3]]", "point_labels": "[1]"}, "point_coords must be a JSON array of [x, y] pairs"),
        ({"point_coords": "[[1, 2], [3]]", "point_labels": "[1, 1]"}, "point_coords must be a JSON array of numbers"),
        (
            {"point_coords": "[[1, 2], [3, 4]]", "point_labels": "[1]"},
            "point_labels has 1 labels but point_coords has 2",
        ),
        ({"point_coords": "[[1, 2]]"}, "point_coords needs point_labels"),
        ({"point_coords": "[[1, 2]]", "point_labels": "[7]"}, "point_labels must be 1 (foreground) or 0"),
        ({"point_coords": "[[100, 2]]", "point_labels": "[1]"}, "point_coords[0] = [100, 2] is outside the 64x48"),
        ({"box": "[1, 2, 3]"}, "box must be one JSON array [x1, y1, x2, y2]"),
        ({"box": "[30, 2, 3, 40]"}, "x1 <= x2"),
        ({"box": "[0, 0, 10, 10]", "mask_input": "[[1, 2]]"}, "mask_input must be low-resolution mask logits of shape"),
        ({"multimask_output": True}, "Give a prompt"),
    ],
)
def test_bad_prompts_get_400_naming_the_field(sam2: RunnerProcess, fields: dict[str, object], expected: str) -> None:
    assert expected in error(segment(sam2, **fields), 400)


def test_answers_too_large_to_encode_are_refused_up_front(sam2: RunnerProcess) -> None:
    r = segment(sam2, (2000, 2000), box="[0, 0, 100, 100]")  # 3 full-size logit masks: ~275 MB of text
    msg = error(r, 400)
    assert "2000x2000 image" in msg and "return_logits=false" in msg


def test_bad_image_gets_400_and_the_runner_keeps_serving(sam2: RunnerProcess) -> None:
    r = sam2.post(
        "/segment-anything-2",
        data={"point_coords": "[[1, 1]]", "point_labels": "[1]"},
        files={"image": ("x.png", b"garbage", "image/png")},
    )
    assert "not a readable image" in error(r, 400)
    guard = segment(sam2, model_id="other/model", box="[0, 0, 8, 8]")
    assert error(guard, 400) == f"pipeline configured with {SAM2} but called with other/model."
    assert sam2.health() == "IDLE"
    masks, _, _ = parsed(segment(sam2, point_coords="[[5, 5]]", point_labels="[1]", multimask_output=False))
    assert shape(masks) == (1, 48, 64)
    assert "Traceback" not in sam2.log()


def test_original_sam2_checkpoint_without_the_sam2_package_points_at_the_hf_repo(
    start_runner,  # type: ignore[no-untyped-def]
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    if importlib.util.find_spec("sam2") is not None:
        pytest.skip("the sam2 package is installed, so the original checkpoint format is served")
    proc = start_runner("segment-anything-2", "facebook/sam2-hiera-large", models=tmp_path_factory.mktemp("empty"))
    assert proc.wait_status({"IDLE", "ERROR"})[-1] == "ERROR"
    log = proc.log()
    assert "needs the `sam2` package" in log
    assert "lpnode models pull facebook/sam2-hiera-large-hf" in log
