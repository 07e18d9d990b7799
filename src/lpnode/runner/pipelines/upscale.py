"""upscale: the Stable Diffusion x4 upscaler family (StableDiffusionUpscalePipeline)."""

from __future__ import annotations

from lpnode.runner.diffusion import (
    choose_seed,
    generator,
    load_diffusers,
    model_lock,
    step_callbacks,
    to_media,
)
from lpnode.runner.media import decode_image
from lpnode.runner.optimizations import apply_optimizations
from lpnode.runner.pipelines.base import BatchPipeline, Job, LoadContext, RouteSpec
from lpnode.runner.safety import safety_checker_for
from lpnode.schemas import ImageResponse, UpscaleForm


class UpscalePipeline(BatchPipeline[UpscaleForm]):
    route = RouteSpec(
        name="upscale",
        operation_id="genUpscale",
        sdk_name="upscale",
        summary="Upscale",
        description="Upscale an image by increasing its resolution.",
        params=UpscaleForm,
        response=ImageResponse,
        multipart=True,
        default_error="Upscale pipeline error.",
        oom_error="Out of memory error. Try reducing input image resolution.",
    )

    def __init__(self, ctx: LoadContext) -> None:
        super().__init__(ctx)
        from diffusers import StableDiffusionUpscalePipeline

        self.pipe = load_diffusers(StableDiffusionUpscalePipeline, ctx)
        apply_optimizations(self.pipe, ctx)
        self.safety = safety_checker_for(ctx)

    def run(self, params: UpscaleForm, job: Job) -> ImageResponse:
        image = decode_image(params.image)
        seed = choose_seed(params.seed)
        kwargs = {"prompt": params.prompt, "image": image}
        with model_lock(self.pipe):
            output = self.pipe(
                **kwargs,
                **({"num_inference_steps": params.num_inference_steps} if params.num_inference_steps >= 1 else {}),
                generator=generator(self.ctx.device, seed),
                **step_callbacks(self.pipe, job),
            )
        checker = self.safety if params.safety_check else None
        return ImageResponse(images=to_media(output.images[:1], [seed], checker))
