"""text-to-image: Stable Diffusion family models through diffusers' AutoPipelineForText2Image.

Model-specific behaviour, keyed on the model id as in the reference runner:
- ``ByteDance/SDXL-Lightning[-2step|-4step|-8step]``: SDXL base with the Lightning UNet, trailing Euler
  schedule, guidance 0, steps fixed to the variant's count (8 when unnamed).
- ids with ``-turbo``/``_turbo`` (``stabilityai/sd-turbo``, ``sdxl-turbo``): guidance 0.
- ``SG161222/Realistic_Vision_V6.0_B1_noVAE``: the ``stabilityai/sd-vae-ft-ema`` VAE.
"""

from __future__ import annotations

import re
from typing import Any

from lpnode.runner.diffusion import (
    choose_seed,
    generate_images,
    load_diffusers,
    split_prompts,
    to_media,
)
from lpnode.runner.loras import LoraAdapters
from lpnode.runner.model_files import cached_file, pull_hint
from lpnode.runner.optimizations import apply_optimizations
from lpnode.runner.pipelines.base import BatchPipeline, Job, LoadContext, RouteSpec
from lpnode.runner.safety import safety_checker_for
from lpnode.schemas import ImageResponse, TextToImageParams
from lpnode.schemas.checks import parse_loras

LIGHTNING_REPO = "ByteDance/SDXL-Lightning"
SDXL_BASE = "stabilityai/stable-diffusion-xl-base-1.0"


def lightning_steps(model_id: str) -> int | None:
    """Step count of an SDXL-Lightning model id, or None for other models."""
    if LIGHTNING_REPO not in model_id:
        return None
    match = re.search(r"(\d)step", model_id)
    return int(match.group(1)) if match else 8


def is_turbo(model_id: str) -> bool:
    return re.search(r"[-_]turbo", model_id, re.IGNORECASE) is not None


def load_lightning(ctx: LoadContext, steps: int) -> Any:
    """SDXL base with the SDXL-Lightning UNet for ``steps`` steps and a trailing Euler schedule."""
    import diffusers
    from safetensors.torch import load_file

    from lpnode.errors import ModelNotFoundError

    filename = f"sdxl_lightning_{steps}step_unet.safetensors"
    weights = cached_file(ctx.model_dir, LIGHTNING_REPO, filename)
    if weights is None:
        raise ModelNotFoundError(
            f"{filename} of {LIGHTNING_REPO!r} is not in the models dir {ctx.model_dir}; "
            + pull_hint(LIGHTNING_REPO, ctx.model_dir)
            + " --include '*unet.safetensors'"
        )
    pipe = load_diffusers(diffusers.StableDiffusionXLPipeline, ctx, model_id=SDXL_BASE)
    unet_cls: Any = diffusers.UNet2DConditionModel
    scheduler_cls: Any = diffusers.EulerDiscreteScheduler
    unet = unet_cls.from_config(pipe.unet.config)
    unet.load_state_dict(load_file(str(weights), device="cpu"))
    pipe.unet = unet.to(ctx.device, pipe.unet.dtype)
    pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config, timestep_spacing="trailing")
    return pipe


class TextToImagePipeline(BatchPipeline[TextToImageParams]):
    route = RouteSpec(
        name="text-to-image",
        operation_id="genTextToImage",
        sdk_name="textToImage",
        summary="Text To Image",
        description="Generate images from a text prompt.",
        params=TextToImageParams,
        response=ImageResponse,
        multipart=False,
        default_error="Text-to-image pipeline error.",
        oom_error="Out of memory error. Try reducing output image resolution.",
    )

    def __init__(self, ctx: LoadContext) -> None:
        super().__init__(ctx)
        from diffusers import AutoPipelineForText2Image

        self.lightning_steps = lightning_steps(ctx.model_id)
        self.turbo = is_turbo(ctx.model_id)
        if self.lightning_steps is not None:
            self.pipe = load_lightning(ctx, self.lightning_steps)
        elif "Realistic_Vision_V6.0_B1_noVAE" in ctx.model_id:
            from diffusers import AutoencoderKL

            vae = load_diffusers(AutoencoderKL, ctx, model_id="stabilityai/sd-vae-ft-ema")
            self.pipe = load_diffusers(AutoPipelineForText2Image, ctx, vae=vae)
        else:
            self.pipe = load_diffusers(AutoPipelineForText2Image, ctx)
        apply_optimizations(self.pipe, ctx)
        self.loras = LoraAdapters(self.pipe, ctx)
        self.safety = safety_checker_for(ctx)

    def run(self, params: TextToImageParams, job: Job) -> ImageResponse:
        self.loras.apply(parse_loras(params.loras))
        seed = choose_seed(params.seed)
        kwargs: dict[str, Any] = {
            **split_prompts("prompt", params.prompt),
            "height": params.height,
            "width": params.width,
            "guidance_scale": params.guidance_scale,
        }
        if params.negative_prompt:
            kwargs.update(split_prompts("negative_prompt", params.negative_prompt))
        if params.num_inference_steps >= 1:
            kwargs["num_inference_steps"] = params.num_inference_steps
        if self.lightning_steps is not None:
            kwargs.update(guidance_scale=0.0, num_inference_steps=self.lightning_steps)
        elif self.turbo:
            kwargs["guidance_scale"] = 0.0
        count = params.num_images_per_prompt
        images = generate_images(self.pipe, kwargs, seed, count, self.ctx.device, job)
        seeds = [seed + i for i in range(count)]
        checker = self.safety if params.safety_check else None
        return ImageResponse(images=to_media(images, seeds, checker))
