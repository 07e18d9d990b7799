"""Image and video generation: text-to-image, image-to-image, image-to-video and upscale.

JSON bodies are plain models. Multipart bodies are "form" models whose ``bytes`` fields are file
uploads; the route builder turns them into ``Form``/``File`` parameters, so the OpenAPI document names
them ``Body_<operationId>`` exactly as upstream does.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, WithJsonSchema

from lpnode.schemas.common import Media

# Upstream declares optional integers as plain `integer` with no default (Go clients cannot express
# OpenAPI 3.1 optionals); absent means "choose for me".
OptionalInt = Annotated[int | None, WithJsonSchema({"type": "integer"})]

_MODEL_ID = "Hugging Face model ID of the model to use; empty means the loaded model."
_LORAS = 'LoRA adapters and their weights as a JSON object, e.g. {"latent-consistency/lcm-lora-sdxl": 1.0}. At most 4.'
_SAFETY = "Run the safety checker and flag images that may be offensive (flags only, never alters)."
_SEED = "Seed for the random number generator; image i uses seed + i. Random when absent."
_NEGATIVE = "Text describing what to keep out of the image. Ignored when guidance_scale < 1."
_GUIDANCE = "How closely the image follows the prompt; higher values may lower quality."


class TextToImageParams(BaseModel):
    """Generate images from a text prompt."""

    model_id: str = Field(default="", description=_MODEL_ID)
    loras: str = Field(default="", description=_LORAS)
    prompt: str = Field(..., description="Text prompt(s); '|' separates prompts for multi-encoder models.")
    height: int = Field(default=576, description="Height of the generated image in pixels.")
    width: int = Field(default=1024, description="Width of the generated image in pixels.")
    guidance_scale: float = Field(default=7.5, description=_GUIDANCE)
    negative_prompt: str = Field(default="", description=_NEGATIVE)
    safety_check: bool = Field(default=True, description=_SAFETY)
    seed: OptionalInt = Field(default=None, description=_SEED)
    num_inference_steps: int = Field(
        default=50, description="Number of denoising steps; more is slower and usually better."
    )
    num_images_per_prompt: int = Field(default=1, description="Number of images to generate.")


class ImageToImageForm(BaseModel):
    """Transform an uploaded image guided by a prompt."""

    prompt: str = Field(..., description="Text prompt(s) guiding the transformation.")
    image: bytes = Field(..., description="The image to transform.")
    model_id: str = Field(default="", description=_MODEL_ID)
    loras: str = Field(default="", description=_LORAS)
    strength: float = Field(default=0.8, description="How far to move away from the input image (0 to 1).")
    guidance_scale: float = Field(default=7.5, description=_GUIDANCE)
    image_guidance_scale: float = Field(
        default=1.5, description="How closely to stay with the input image (instruct-pix2pix models)."
    )
    negative_prompt: str = Field(default="", description=_NEGATIVE)
    safety_check: bool = Field(default=True, description=_SAFETY)
    seed: OptionalInt = Field(default=None, description=_SEED)
    num_inference_steps: int = Field(default=100, description="Number of denoising steps, scaled by strength.")
    num_images_per_prompt: int = Field(default=1, description="Number of images to generate.")


class ImageToVideoForm(BaseModel):
    """Animate an uploaded image into a short video."""

    image: bytes = Field(..., description="The image to animate.")
    model_id: str = Field(default="", description=_MODEL_ID)
    height: int = Field(default=576, description="Height of the video frames in pixels (multiple of 8).")
    width: int = Field(default=1024, description="Width of the video frames in pixels (multiple of 8).")
    fps: int = Field(default=6, description="Frames per second the motion is conditioned on.")
    motion_bucket_id: int = Field(default=127, description="Amount of motion; higher moves more.")
    noise_aug_strength: float = Field(
        default=0.02, description="Noise added to the input image; higher departs further from it."
    )
    safety_check: bool = Field(default=True, description=_SAFETY + " Checks the input image.")
    seed: OptionalInt = Field(default=None, description="Seed for the random number generator.")
    num_inference_steps: int = Field(default=25, description="Number of denoising steps.")


class UpscaleForm(BaseModel):
    """Upscale an uploaded image (4x for the SD x4 upscaler family)."""

    prompt: str = Field(..., description="Text prompt guiding the upscale.")
    image: bytes = Field(..., description="The image to upscale.")
    model_id: str = Field(default="", description=_MODEL_ID)
    safety_check: bool = Field(default=True, description=_SAFETY)
    seed: OptionalInt = Field(default=None, description="Seed for the random number generator.")
    num_inference_steps: int = Field(default=75, description="Number of denoising steps.")


class ImageResponse(BaseModel):
    """Generated images."""

    images: list[Media] = Field(..., description="The images, in order.")


class VideoResponse(BaseModel):
    """Generated video frames: one list of frames per generated video."""

    frames: list[list[Media]] = Field(..., description="Frames of each video, in order.")
