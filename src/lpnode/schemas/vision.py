"""Image understanding: image-to-text (captioning) and segment-anything-2 (promptable segmentation).

Both are multipart forms: the ``bytes`` field is the uploaded image, the rest are form fields. Names,
types, defaults and required sets follow upstream's ``Body_genImageToText`` and
``Body_genSegmentAnything2``; the SAM2 prompt fields are JSON arrays sent as strings, as upstream.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, WithJsonSchema

# Upstream declares these as plain `string` with no default (its Go client cannot express OpenAPI 3.1
# optionals); absent means "no such prompt".
OptionalStr = Annotated[str | None, WithJsonSchema({"type": "string"})]

_MODEL_ID = "Hugging Face model ID of the model to use; empty means the loaded model."


class ImageToTextForm(BaseModel):
    """Describe an uploaded image in text."""

    image: bytes = Field(..., description="The image to describe.")
    prompt: str = Field(
        default="", description="Optional start of the caption for the model to continue; it is kept in the output."
    )
    model_id: str = Field(default="", description=_MODEL_ID)


class ImageToTextResponse(BaseModel):
    """Response model for text generation."""

    text: str = Field(..., description="The generated text.")


class SegmentAnything2Form(BaseModel):
    """Segment an object in an uploaded image from point, box and mask prompts."""

    image: bytes = Field(..., description="The image to segment.")
    model_id: str = Field(default="", description=_MODEL_ID)
    point_coords: OptionalStr = Field(
        default=None,
        description='Point prompts as a JSON array of [x, y] pairs, e.g. "[[120, 80], [40, 200]]".',
    )
    point_labels: OptionalStr = Field(
        default=None,
        description='One label per point as a JSON array: 1 foreground, 0 background, e.g. "[1, 0]".',
    )
    box: OptionalStr = Field(default=None, description="A box prompt as a JSON array [x1, y1, x2, y2] (XYXY).")
    mask_input: OptionalStr = Field(
        default=None,
        description="Low-resolution mask logits from a previous response (one of its logits), as a JSON "
        "array of shape 1xHxW (H=W=256 for SAM2).",
    )
    multimask_output: bool = Field(
        default=True, description="Return three candidate masks (better for ambiguous prompts) instead of one."
    )
    return_logits: bool = Field(
        default=True, description="Return un-thresholded mask logits in masks instead of binary masks."
    )
    normalize_coords: bool = Field(
        default=True,
        description="Coordinates are in pixels of the uploaded image; false: already normalized to [0, 1].",
    )


class MasksResponse(BaseModel):
    """Response model for object segmentation."""

    masks: str = Field(..., description="The masks, best first, as a Python-style nested list of shape CxHxW.")
    scores: str = Field(..., description="The predicted quality score of each mask, highest first.")
    logits: str = Field(
        ..., description="Low-resolution mask logits of each mask (Cx256x256 for SAM2), usable as mask_input."
    )
