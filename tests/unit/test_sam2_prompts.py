"""SAM2 prompt parsing, bounds and coordinate frames (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from lpnode.errors import BadRequestError
from lpnode.runner.sam2_prompts import check_inside, parse_json_array, parse_prompts, to_model_frame


def test_points_box_and_mask_parse() -> None:
    mask = str([[[0.5] * 4] * 4])
    p = parse_prompts("[[1, 2], [3.5, 4]]", "[1, 0]", "[[0, 0, 10, 20]]", mask, mask_size=4)
    assert p.point_coords is not None and p.point_coords.dtype == np.float32
    assert p.point_coords.tolist() == [[1.0, 2.0], [3.5, 4.0]]
    assert p.point_labels is not None and p.point_labels.tolist() == [1, 0]
    assert p.box is not None and p.box.tolist() == [0.0, 0.0, 10.0, 20.0]
    assert p.mask_input is not None and p.mask_input.shape == (1, 4, 4)


def test_empty_fields_are_absent_like_upstream() -> None:
    assert parse_json_array("", "box") is None
    assert parse_json_array(None, "box") is None
    p = parse_prompts("", "", "[0, 0, 1, 1]", "", mask_size=4)
    assert p.point_coords is None and p.mask_input is None


def test_json_errors_use_upstreams_wording() -> None:
    with pytest.raises(BadRequestError, match=r"^Error parsing JSON for box: Expecting value"):
        parse_prompts(None, None, "[0, 0, 1,", None, mask_size=4)


@pytest.mark.parametrize("value", ["[NaN, 1]", "[[1, null]]", "[Infinity, 0]"])
def test_non_finite_numbers_are_refused(value: str) -> None:
    with pytest.raises(BadRequestError, match="finite"):
        parse_json_array(value, "point_coords")


def test_a_2d_mask_gets_its_leading_axis_and_wrong_sizes_name_the_expected_one() -> None:
    p = parse_prompts(None, None, "[0, 0, 1, 1]", str([[0.0] * 4] * 4), mask_size=4)
    assert p.mask_input is not None and p.mask_input.shape == (1, 4, 4)
    with pytest.raises(BadRequestError, match="1x256x256"):
        parse_prompts(None, None, "[0, 0, 1, 1]", str([[0.0] * 4] * 4), mask_size=256)


def test_bounds_in_pixels_and_normalized() -> None:
    p = parse_prompts("[[64, 48], [0, 0]]", "[1, 1]", None, None, mask_size=4)
    check_inside(p, 64, 48, normalize_coords=True)  # edges are inside
    with pytest.raises(BadRequestError, match=r"point_coords\[0\] = \[64, 48\] is outside 0..1"):
        check_inside(p, 64, 48, normalize_coords=False)
    box = parse_prompts(None, None, "[0, 0, 65, 10]", None, mask_size=4)
    with pytest.raises(BadRequestError, match=r"box \[0, 0, 65, 10\] is outside the 64x48 image"):
        check_inside(box, 64, 48, normalize_coords=True)


def test_model_frame_matches_sam2_transforms() -> None:
    coords = np.array([[32.0, 12.0], [64.0, 48.0]], dtype=np.float32)
    # Pixels: divided by (W, H), then scaled to the square model input.
    assert to_model_frame(coords, 64, 48, 1024, normalize_coords=True).tolist() == [[512.0, 256.0], [1024.0, 1024.0]]
    # Already normalized: only scaled.
    half = np.array([[0.5, 0.25]], dtype=np.float32)
    assert to_model_frame(half, 64, 48, 128, normalize_coords=False).tolist() == [[64.0, 32.0]]
