"""image-to-text: image captioning with the BLIP family (BlipForConditionalGeneration + BlipProcessor).

With a ``prompt`` BLIP does conditional captioning: it continues the prompt, and the prompt stays at the
start of the returned text, as upstream returns it. Generation is greedy and bounded by
``MAX_NEW_TOKENS`` new tokens (upstream relies on transformers' default ``max_length`` of 20 tokens,
prompt included, which can cut captions short).

Upstream's wording differs on this route: the 401 and the model-id refusal carry no final period
(``auth_message`` and ``guard_period`` in the route spec).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from lpnode.errors import BadRequestError, ModelStoreError
from lpnode.logs import log_event
from lpnode.runner.media import decode_image
from lpnode.runner.model_files import require_cached
from lpnode.runner.pipelines.base import BatchPipeline, Job, LoadContext, RouteSpec
from lpnode.schemas.vision import ImageToTextForm, ImageToTextResponse

log = logging.getLogger("lpnode.runner")

MAX_NEW_TOKENS = 50


class ImageToTextPipeline(BatchPipeline[ImageToTextForm]):
    route = RouteSpec(
        name="image-to-text",
        operation_id="genImageToText",
        sdk_name="imageToText",
        summary="Image To Text",
        description="Transform image files to text.",
        params=ImageToTextForm,
        response=ImageToTextResponse,
        multipart=True,
        default_error="Image-to-text pipeline error.",
        oom_error="Out of memory error. Try reducing input image resolution.",
        extra_error_codes=(413,),
        auth_message="Invalid bearer token",
        guard_period=False,
    )

    def __init__(self, ctx: LoadContext) -> None:
        super().__init__(ctx)
        import torch
        from transformers import BlipForConditionalGeneration, BlipProcessor

        if not ctx.allow_downloads:
            config_path = require_cached(ctx.model_dir, ctx.model_id, "config.json", "transformers model")
            model_type = json.loads(config_path.read_text()).get("model_type")
            if model_type != "blip":
                raise ModelStoreError(
                    f"model {ctx.model_id!r} is a {model_type!r} model, not BLIP (model_type 'blip'); serve a BLIP "
                    "captioning checkpoint such as Salesforce/blip-image-captioning-large"
                )
        self.dtype = torch.float32
        if not ctx.device.startswith("cpu"):
            self.dtype = torch.bfloat16 if ctx.flag("BFLOAT16") else torch.float16
        options: dict[str, Any] = {"cache_dir": str(ctx.model_dir), "local_files_only": not ctx.allow_downloads}
        try:
            model: Any = BlipForConditionalGeneration.from_pretrained(ctx.model_id, dtype=self.dtype, **options)
            self.processor: Any = BlipProcessor.from_pretrained(ctx.model_id, **options)
        except (OSError, ValueError) as exc:
            raise ModelStoreError(f"could not load {ctx.model_id!r} from {ctx.model_dir}: {exc}") from exc
        self.model = model.to(ctx.device).eval()
        self.max_positions = int(model.config.text_config.max_position_embeddings)
        log_event(
            log,
            "blip model loaded",
            model_id=ctx.model_id,
            dtype=str(self.dtype).removeprefix("torch."),
            device=ctx.device,
        )

    def run(self, params: ImageToTextForm, job: Job) -> ImageToTextResponse:
        import torch

        image = decode_image(params.image)
        inputs = self.processor(images=image, text=params.prompt or None, return_tensors="pt")
        prompt_tokens = int(inputs["input_ids"].shape[-1]) if "input_ids" in inputs else 1
        room = self.max_positions - prompt_tokens
        if room < 1:
            raise BadRequestError(
                f"prompt is too long: {prompt_tokens} tokens; this model reads at most {self.max_positions - 1}."
            )
        inputs = inputs.to(self.ctx.device, self.dtype)
        job.checkpoint()
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=min(MAX_NEW_TOKENS, room), do_sample=False)
        text: str = self.processor.decode(out[0], skip_special_tokens=True)
        return ImageToTextResponse(text=text)
