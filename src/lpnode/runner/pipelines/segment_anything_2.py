"""segment-anything-2: promptable segmentation of one image with SAM2.

Two backends produce the same triple as ``SAM2ImagePredictor.predict`` (masks at image size, one score
per mask, low-resolution logits):

- transformers ``Sam2Model`` for ``-hf`` checkpoints (``facebook/sam2-hiera-large-hf``) and the tiny
  model. Pre- and post-processing are done here, as the ``sam2`` package does them, because
  ``Sam2Processor`` needs torchvision: resize to the model's square input, ImageNet normalization,
  prompts scaled into that frame (see :mod:`lpnode.runner.sam2_prompts`), low-res logits upsampled
  bilinearly to the image size and thresholded at 0.
- the ``sam2`` package's ``SAM2ImagePredictor`` for the original ``.pt`` checkpoints
  (``facebook/sam2-hiera-large``, upstream's default), used only when that package is installed.

The response matches upstream: masks sorted by descending score, every field ``str(array.tolist())``
of a float32 array (``masks`` holds 0.0/1.0 when ``return_logits`` is false).
"""

from __future__ import annotations

import importlib
import json
import logging
from typing import Any, Protocol

import numpy as np
from PIL import Image

from lpnode.errors import ModelStoreError
from lpnode.logs import log_event
from lpnode.runner.media import decode_image
from lpnode.runner.model_files import pull_hint, require_cached
from lpnode.runner.pipelines.base import BatchPipeline, Job, LoadContext, RouteSpec
from lpnode.runner.sam2_prompts import (
    BOX_LABELS,
    FloatArray,
    Sam2Prompts,
    check_inside,
    parse_prompts,
    to_model_frame,
)
from lpnode.schemas.vision import MasksResponse, SegmentAnything2Form

log = logging.getLogger("lpnode.runner")

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
LOGIT_CLAMP = 32.0  # the sam2 package clamps the returned low-res logits to ±32

# Original-format checkpoints (.pt + a yaml packaged with `sam2`), as the sam2 package maps them.
ORIGINAL_CHECKPOINTS: dict[str, tuple[str, str]] = {
    f"facebook/sam2{v}-hiera-{size}": (f"configs/sam2{v}/sam2{v}_hiera_{short}.yaml", f"sam2{v}_hiera_{name}.pt")
    for v in ("", ".1")
    for size, short, name in (
        ("tiny", "t", "tiny"),
        ("small", "s", "small"),
        ("base-plus", "b+", "base_plus"),
        ("large", "l", "large"),
    )
}

Prediction = tuple[FloatArray, FloatArray, FloatArray]


class _Predictor(Protocol):
    mask_size: int  # side of the low-resolution masks (256 for SAM2)

    def predict(self, image: Image.Image, prompts: Sam2Prompts, form: SegmentAnything2Form) -> Prediction: ...


class TransformersSam2:
    """transformers ``Sam2Model`` with the ``sam2`` package's pre- and post-processing."""

    def __init__(self, ctx: LoadContext) -> None:
        import torch
        from transformers import Sam2Model

        if not ctx.allow_downloads:
            config_path = require_cached(ctx.model_dir, ctx.model_id, "config.json", "transformers SAM2 model")
            model_type = json.loads(config_path.read_text()).get("model_type")
            if model_type != "sam2":
                raise ModelStoreError(
                    f"model {ctx.model_id!r} is a {model_type!r} model, not SAM2 (model_type 'sam2'); "
                    "serve a transformers SAM2 checkpoint such as facebook/sam2-hiera-large-hf"
                )
        try:
            model: Any = Sam2Model.from_pretrained(
                ctx.model_id,
                cache_dir=str(ctx.model_dir),
                local_files_only=not ctx.allow_downloads,
                dtype=torch.float32,
            )
        except (OSError, ValueError) as exc:
            raise ModelStoreError(f"could not load {ctx.model_id!r} from {ctx.model_dir}: {exc}") from exc
        self.model = model.to(ctx.device).eval()
        self.device = ctx.device
        # The model's square input size lives in its config; the low-res masks are a quarter of it.
        self.image_size = int(model.config.prompt_encoder_config.image_size)
        self.mask_size = int(model.prompt_encoder.mask_input_size[0])

    def _pixels(self, image: Image.Image) -> Any:
        import torch

        resized = image.resize((self.image_size, self.image_size), Image.Resampling.BILINEAR)
        array = (np.asarray(resized, dtype=np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        return torch.from_numpy(array).permute(2, 0, 1)[None].to(self.device)

    def _points(self, prompts: Sam2Prompts, width: int, height: int, normalize: bool) -> tuple[Any, Any]:
        """Points and labels as (1, 1, K, 2) and (1, 1, K): the box first as two corner points labelled
        2 and 3, then the clicks, as the sam2 package feeds its prompt encoder."""
        import torch

        coords: list[FloatArray] = []
        labels: list[np.ndarray[Any, np.dtype[np.int32]]] = []
        if prompts.box is not None:
            coords.append(to_model_frame(prompts.box.reshape(2, 2), width, height, self.image_size, normalize))
            labels.append(np.array(BOX_LABELS, dtype=np.int32))
        if prompts.point_coords is not None and prompts.point_labels is not None:
            coords.append(to_model_frame(prompts.point_coords, width, height, self.image_size, normalize))
            labels.append(prompts.point_labels)
        points = torch.from_numpy(np.concatenate(coords))[None, None].to(self.device)
        return points, torch.from_numpy(np.concatenate(labels))[None, None].to(self.device)

    def predict(self, image: Image.Image, prompts: Sam2Prompts, form: SegmentAnything2Form) -> Prediction:
        import torch
        import torch.nn.functional as F

        width, height = image.size
        points, labels = self._points(prompts, width, height, form.normalize_coords)
        masks_in = None if prompts.mask_input is None else torch.from_numpy(prompts.mask_input)[None].to(self.device)
        with torch.inference_mode():
            out = self.model(
                pixel_values=self._pixels(image),
                input_points=points,
                input_labels=labels,
                input_masks=masks_in,
                multimask_output=form.multimask_output,
            )
            low_res = out.pred_masks[0, 0].float()  # (C, M, M)
            masks = F.interpolate(low_res[None], size=(height, width), mode="bilinear", align_corners=False)[0]
            if not form.return_logits:
                masks = masks > 0.0
            low_res = low_res.clamp(-LOGIT_CLAMP, LOGIT_CLAMP)
            return (
                masks.float().cpu().numpy(),
                out.iou_scores[0, 0].float().cpu().numpy(),
                low_res.cpu().numpy(),
            )


class PackageSam2:
    """The ``sam2`` package's ``SAM2ImagePredictor`` on an original ``.pt`` checkpoint."""

    def __init__(self, ctx: LoadContext, build_sam: Any) -> None:
        predictor_module: Any = importlib.import_module("sam2.sam2_image_predictor")
        files = getattr(build_sam, "HF_MODEL_ID_TO_FILENAMES", ORIGINAL_CHECKPOINTS)
        config_name, checkpoint = files[ctx.model_id]
        if ctx.allow_downloads:
            from huggingface_hub import hf_hub_download

            path = hf_hub_download(ctx.model_id, checkpoint, cache_dir=str(ctx.model_dir))
        else:
            path = str(require_cached(ctx.model_dir, ctx.model_id, checkpoint, "SAM2 checkpoint"))
        model = build_sam.build_sam2(config_name, path, device=ctx.device)
        self.predictor: Any = predictor_module.SAM2ImagePredictor(model)
        self.mask_size = int(model.sam_prompt_encoder.mask_input_size[0])

    def predict(self, image: Image.Image, prompts: Sam2Prompts, form: SegmentAnything2Form) -> Prediction:
        self.predictor.set_image(np.asarray(image))
        masks, scores, low_res = self.predictor.predict(
            point_coords=prompts.point_coords,
            point_labels=prompts.point_labels,
            box=prompts.box,
            mask_input=prompts.mask_input,
            multimask_output=form.multimask_output,
            return_logits=form.return_logits,
            normalize_coords=form.normalize_coords,
        )
        return masks, scores, low_res


def load_predictor(ctx: LoadContext) -> _Predictor:
    """The backend for ``ctx.model_id``: the sam2 package for original checkpoints, else transformers."""
    if ctx.model_id not in ORIGINAL_CHECKPOINTS:
        return TransformersSam2(ctx)
    try:
        build_sam = importlib.import_module("sam2.build_sam")
    except ImportError:
        hf_id = ctx.model_id + "-hf"
        raise ModelStoreError(
            f"model {ctx.model_id!r} is an original SAM2 checkpoint (.pt + yaml), which needs the `sam2` "
            f"package, and it is not installed. Serve its transformers conversion instead: --model-id {hf_id} "
            f"({pull_hint(hf_id, ctx.model_dir)})"
        ) from None
    return PackageSam2(ctx, build_sam)


def encode_masks(masks: FloatArray, scores: FloatArray, logits: FloatArray) -> MasksResponse:
    """Upstream's encoding: sorted by descending score, each field ``str(array.tolist())``."""
    order = np.argsort(scores)[::-1]
    return MasksResponse(
        masks=str(masks[order].tolist()),
        scores=str(scores[order].tolist()),
        logits=str(logits[order].tolist()),
    )


class SegmentAnything2Pipeline(BatchPipeline[SegmentAnything2Form]):
    route = RouteSpec(
        name="segment-anything-2",
        operation_id="genSegmentAnything2",
        sdk_name="segmentAnything2",
        summary="Segment Anything 2",
        description="Segment objects in an image.",
        params=SegmentAnything2Form,
        response=MasksResponse,
        multipart=True,
        default_error="Segment-anything-2 pipeline error.",
        oom_error="Out of memory error. Try reducing input image resolution.",
    )

    def __init__(self, ctx: LoadContext) -> None:
        super().__init__(ctx)
        self.predictor = load_predictor(ctx)
        log_event(
            log,
            "sam2 model loaded",
            model_id=ctx.model_id,
            backend=type(self.predictor).__name__,
            mask_size=self.predictor.mask_size,
            device=ctx.device,
        )

    def _prompts(self, params: SegmentAnything2Form) -> Sam2Prompts:
        return parse_prompts(
            params.point_coords, params.point_labels, params.box, params.mask_input, self.predictor.mask_size
        )

    def check(self, params: SegmentAnything2Form) -> None:
        self._prompts(params)  # first, as before: a request with bad prompts and a bad image hears of the prompts
        super().check(params)

    def run(self, params: SegmentAnything2Form, job: Job) -> MasksResponse:
        image = decode_image(params.image)
        prompts = self._prompts(params)
        check_inside(prompts, image.width, image.height, params.normalize_coords)
        job.checkpoint()
        masks, scores, logits = self.predictor.predict(image, prompts, params)
        job.checkpoint()
        return encode_masks(masks, scores, logits)
