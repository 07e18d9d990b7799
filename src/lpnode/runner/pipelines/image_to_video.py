"""image-to-video: Stable Video Diffusion (StableVideoDiffusionPipeline).

The safety check runs on the input image and its flag is given to every frame. Unlike the reference
runner, ``nsfw`` is ``false`` (never null) when the check is off.
"""

from __future__ import annotations

from lpnode.runner.diffusion import (
    choose_seed,
    generator,
    load_diffusers,
    model_lock,
    step_callbacks,
)
from lpnode.runner.media import decode_image, png_data_url
from lpnode.runner.optimizations import apply_optimizations
from lpnode.runner.pipelines.base import BatchPipeline, Job, LoadContext, RouteSpec
from lpnode.runner.safety import safety_checker_for
from lpnode.schemas import ImageToVideoForm, Media, VideoResponse

DECODE_CHUNK_SIZE = 4


class ImageToVideoPipeline(BatchPipeline[ImageToVideoForm]):
    route = RouteSpec(
        name="image-to-video",
        operation_id="genImageToVideo",
        sdk_name="imageToVideo",
        summary="Image To Video",
        description="Generate a short video from an uploaded image.",
        params=ImageToVideoForm,
        response=VideoResponse,
        multipart=True,
        default_error="Image-to-video pipeline error.",
        oom_error="Out of memory error. Try reducing input or output video resolution.",
    )

    def __init__(self, ctx: LoadContext) -> None:
        super().__init__(ctx)
        from diffusers import StableVideoDiffusionPipeline

        self.pipe = load_diffusers(StableVideoDiffusionPipeline, ctx)
        apply_optimizations(self.pipe, ctx)
        self.safety = safety_checker_for(ctx)

    def run(self, params: ImageToVideoForm, job: Job) -> VideoResponse:
        image = decode_image(params.image)
        seed = choose_seed(params.seed)
        nsfw = self.safety.flags([image])[0] if params.safety_check else False
        kwargs = {
            "image": image,
            "height": params.height,
            "width": params.width,
            "fps": params.fps,
            "motion_bucket_id": params.motion_bucket_id,
            "noise_aug_strength": params.noise_aug_strength,
            "decode_chunk_size": DECODE_CHUNK_SIZE,
        }
        if params.num_inference_steps >= 1:
            kwargs["num_inference_steps"] = params.num_inference_steps
        with model_lock(self.pipe):
            output = self.pipe(**kwargs, generator=generator(self.ctx.device, seed), **step_callbacks(self.pipe, job))
        frames = [[Media(url=png_data_url(frame), seed=seed, nsfw=nsfw) for frame in video] for video in output.frames]
        return VideoResponse(frames=frames)
