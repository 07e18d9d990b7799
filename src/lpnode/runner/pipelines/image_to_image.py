"""image-to-image: img2img with Stable Diffusion family models, and instruct-pix2pix style models.

The pipeline class comes from the model itself: a repo whose ``model_index.json`` names
``StableDiffusionInstructPix2PixPipeline`` is served as instruct-pix2pix (Euler ancestral schedule,
``image_guidance_scale``); anything else goes through AutoPipelineForImage2Image. SDXL-Lightning and
turbo ids get the same treatment as in text-to-image.

img2img runs ``int(num_inference_steps × strength)`` denoising steps; a request that leaves none (one step at
strength 0.8, say) is refused before it is queued, since the library would fail on it (turbo ids raise
``strength`` so that one step always runs).
"""

from __future__ import annotations

from typing import Any

from lpnode.errors import BadRequestError
from lpnode.runner.diffusion import (
    choose_seed,
    generate_images,
    load_diffusers,
    read_model_index,
    split_prompts,
    to_media,
)
from lpnode.runner.loras import LoraAdapters
from lpnode.runner.media import decode_image
from lpnode.runner.optimizations import apply_optimizations
from lpnode.runner.pipelines.base import BatchPipeline, Job, LoadContext, RouteSpec
from lpnode.runner.pipelines.text_to_image import is_turbo, lightning_steps, load_lightning
from lpnode.runner.safety import safety_checker_for
from lpnode.schemas import ImageResponse, ImageToImageForm
from lpnode.schemas.checks import parse_loras

PIX2PIX_CLASS = "StableDiffusionInstructPix2PixPipeline"
DIFFUSERS_DEFAULT_STEPS = 50  # what the library runs when a request asks for 0 or fewer steps


class ImageToImagePipeline(BatchPipeline[ImageToImageForm]):
    route = RouteSpec(
        name="image-to-image",
        operation_id="genImageToImage",
        sdk_name="imageToImage",
        summary="Image To Image",
        description="Transform an uploaded image guided by a text prompt.",
        params=ImageToImageForm,
        response=ImageResponse,
        multipart=True,
        default_error="Image-to-image pipeline error.",
        oom_error="Out of memory error. Try reducing input image resolution.",
    )

    def __init__(self, ctx: LoadContext) -> None:
        super().__init__(ctx)
        from diffusers import AutoPipelineForImage2Image

        self.lightning_steps = lightning_steps(ctx.model_id)
        self.turbo = is_turbo(ctx.model_id)
        self.pix2pix = False
        if self.lightning_steps is not None:
            self.pipe = AutoPipelineForImage2Image.from_pipe(load_lightning(ctx, self.lightning_steps))
        elif (
            not ctx.allow_downloads and read_model_index(ctx).get("_class_name") == PIX2PIX_CLASS
        ) or "instruct-pix2pix" in ctx.model_id:
            self.pipe = self._load_pix2pix(ctx)
        else:
            self.pipe = load_diffusers(AutoPipelineForImage2Image, ctx)
        apply_optimizations(self.pipe, ctx)
        self.loras = LoraAdapters(self.pipe, ctx)
        self.safety = safety_checker_for(ctx)

    def _load_pix2pix(self, ctx: LoadContext) -> Any:
        import diffusers

        self.pix2pix = True
        pipe = load_diffusers(diffusers.StableDiffusionInstructPix2PixPipeline, ctx)
        scheduler_cls: Any = diffusers.EulerAncestralDiscreteScheduler
        pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config)
        return pipe

    def _schedule(self, params: ImageToImageForm) -> dict[str, Any]:
        """The steps, strength and guidance this model runs a request with."""
        kwargs: dict[str, Any] = {"strength": params.strength, "guidance_scale": params.guidance_scale}
        if params.num_inference_steps >= 1:
            kwargs["num_inference_steps"] = params.num_inference_steps
        if self.lightning_steps is not None:
            kwargs.update(guidance_scale=0.0, num_inference_steps=self.lightning_steps)
        elif self.turbo:
            steps = max(params.num_inference_steps, 1)
            kwargs.update(guidance_scale=0.0, strength=max(1.0 / steps, params.strength))
        return kwargs

    def check(self, params: ImageToImageForm) -> None:
        super().check(params)
        if self.pix2pix:
            return  # instruct-pix2pix runs every step; it takes no strength
        schedule = self._schedule(params)
        steps = schedule.get("num_inference_steps", DIFFUSERS_DEFAULT_STEPS)
        strength = schedule["strength"]
        if int(steps * strength) < 1:
            raise BadRequestError(
                f"num_inference_steps x strength must be at least 1, so that one denoising step runs; got "
                f"{steps} x {strength} = {steps * strength:g}. Raise num_inference_steps or strength."
            )

    def run(self, params: ImageToImageForm, job: Job) -> ImageResponse:
        image = decode_image(params.image)
        self.loras.apply(parse_loras(params.loras))
        seed = choose_seed(params.seed)
        kwargs: dict[str, Any] = {**split_prompts("prompt", params.prompt), "image": image, **self._schedule(params)}
        if self.pix2pix:
            kwargs["image_guidance_scale"] = params.image_guidance_scale
        if params.negative_prompt:
            kwargs.update(split_prompts("negative_prompt", params.negative_prompt))
        count = params.num_images_per_prompt
        images = generate_images(self.pipe, kwargs, seed, count, self.ctx.device, job)
        seeds = [seed + i for i in range(count)]
        checker = self.safety if params.safety_check else None
        return ImageResponse(images=to_media(images, seeds, checker))
