"""SAM2 prompts: parsing the JSON form fields of /segment-anything-2, checking them, and moving them into
the model's input frame.

Coordinate semantics are those of the ``sam2`` package's ``SAM2ImagePredictor.predict``:

- ``normalize_coords=true`` (default): ``point_coords`` and ``box`` are pixels of the uploaded image,
  x to the right in ``0..width``, y down in ``0..height``. They are divided by the image size.
- ``normalize_coords=false``: they are already normalized to ``0..1`` of the image.

Either way they are then multiplied by the model's square input size (1024 for SAM2, 128 for the tiny
model), which is the frame the prompt encoder works in. A coordinate outside the image (or outside
``0..1``) is refused with a 400 rather than clipped: it almost always means the caller swapped x and y
or sent coordinates for a different image size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lpnode.errors import BadRequestError

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int32]

POINT_LABELS = (0, 1)  # background, foreground
BOX_LABELS = (2, 3)  # SAM2 encodes a box as two corner points with these labels


@dataclass(frozen=True)
class Sam2Prompts:
    """Validated prompts, still in the caller's coordinates."""

    point_coords: FloatArray | None = None  # (N, 2) x, y
    point_labels: IntArray | None = None  # (N,) 0 or 1
    box: FloatArray | None = None  # (4,) x1, y1, x2, y2
    mask_input: FloatArray | None = None  # (1, M, M) low-resolution logits


def _fmt(values: npt.ArrayLike) -> str:
    return "[" + ", ".join(f"{v:g}" for v in np.asarray(values).ravel()) + "]"


def parse_json_array(value: str | None, field: str) -> npt.NDArray[np.float64] | None:
    """``value`` as a numeric array; None when absent or empty (as upstream). 400 naming ``field``
    when it is not JSON, not a rectangular array of numbers, or holds NaN/Infinity."""
    if value is None or not value.strip():
        return None
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        # Upstream's wording, so clients matching on it keep working.
        raise BadRequestError(f"Error parsing JSON for {field}: {exc}") from None
    try:
        array = np.array(data, dtype=np.float64)
    except (ValueError, TypeError):
        raise BadRequestError(
            f"{field} must be a JSON array of numbers with every row the same length, got {value[:80]!r}."
        ) from None
    if not np.all(np.isfinite(array)):
        raise BadRequestError(f"{field} must hold finite numbers only (no NaN, Infinity or null).")
    return array


def _points(value: str | None) -> FloatArray | None:
    array = parse_json_array(value, "point_coords")
    if array is None:
        return None
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] == 0:
        raise BadRequestError(
            f"point_coords must be a JSON array of [x, y] pairs, e.g. [[120, 80]]; got shape {array.shape}."
        )
    return array.astype(np.float32)


def _labels(value: str | None) -> IntArray | None:
    array = parse_json_array(value, "point_labels")
    if array is None:
        return None
    if array.ndim != 1:
        raise BadRequestError(f"point_labels must be a flat JSON array such as [1, 0]; got shape {array.shape}.")
    if not np.all(np.isin(array, POINT_LABELS)):
        raise BadRequestError(
            f"point_labels must be 1 (foreground) or 0 (background) for each point; got {_fmt(array)}."
        )
    return array.astype(np.int32)


def _box(value: str | None) -> FloatArray | None:
    array = parse_json_array(value, "box")
    if array is None:
        return None
    if array.shape not in {(4,), (1, 4)}:
        raise BadRequestError(f"box must be one JSON array [x1, y1, x2, y2]; got shape {array.shape}.")
    box = array.reshape(4).astype(np.float32)
    if box[2] < box[0] or box[3] < box[1]:
        raise BadRequestError(
            f"box must be [x1, y1, x2, y2] with x1 <= x2 and y1 <= y2 (top-left, then bottom-right); got {_fmt(box)}."
        )
    return box


def _mask(value: str | None, mask_size: int) -> FloatArray | None:
    array = parse_json_array(value, "mask_input")
    if array is None:
        return None
    if array.ndim == 2:
        array = array[None]
    if array.shape != (1, mask_size, mask_size):
        raise BadRequestError(
            f"mask_input must be low-resolution mask logits of shape 1x{mask_size}x{mask_size} (one mask of a "
            f"previous response's logits, wrapped in a list); got shape {array.shape}."
        )
    return array.astype(np.float32)


def parse_prompts(
    point_coords: str | None,
    point_labels: str | None,
    box: str | None,
    mask_input: str | None,
    mask_size: int,
) -> Sam2Prompts:
    """Parse and cross-check the prompt fields. ``mask_size`` is the model's low-resolution mask side."""
    points = _points(point_coords)
    labels = _labels(point_labels)
    if points is not None and labels is None:
        raise BadRequestError("point_coords needs point_labels: one label per point, 1 foreground or 0 background.")
    if labels is not None and points is None:
        raise BadRequestError("point_labels was given without point_coords.")
    if points is not None and labels is not None and len(labels) != len(points):
        raise BadRequestError(
            f"point_labels has {len(labels)} labels but point_coords has {len(points)} points; "
            "give one label per point."
        )
    parsed_box = _box(box)
    if points is None and parsed_box is None:
        raise BadRequestError("Give a prompt: point_coords with point_labels, a box, or both.")
    return Sam2Prompts(points, labels, parsed_box, _mask(mask_input, mask_size))


def check_inside(prompts: Sam2Prompts, width: int, height: int, normalize_coords: bool) -> None:
    """400 when a point or box corner lies outside the image (pixels) or outside 0..1 (normalized)."""
    limit_x, limit_y = (float(width), float(height)) if normalize_coords else (1.0, 1.0)
    frame = (
        f"the {width}x{height} image (x in 0..{width}, y in 0..{height})"
        if normalize_coords
        else "0..1 (normalize_coords=false: coordinates are fractions of the image size)"
    )
    corners: list[tuple[str, FloatArray]] = []
    if prompts.point_coords is not None:
        corners += [(f"point_coords[{i}] = {_fmt(p)}", p) for i, p in enumerate(prompts.point_coords)]
    if prompts.box is not None:
        corners += [(f"box {_fmt(prompts.box)}", c) for c in prompts.box.reshape(2, 2)]
    for name, (x, y) in corners:
        if not (0.0 <= x <= limit_x and 0.0 <= y <= limit_y):
            raise BadRequestError(f"{name} is outside {frame}.")


def to_model_frame(coords: FloatArray, width: int, height: int, model_size: int, normalize_coords: bool) -> FloatArray:
    """(..., 2) x, y coordinates → the model's ``model_size`` square input frame (SAM2Transforms)."""
    scale = np.full(2, model_size, dtype=np.float32)
    if normalize_coords:
        scale /= np.array([width, height], dtype=np.float32)
    return (coords * scale).astype(np.float32)
