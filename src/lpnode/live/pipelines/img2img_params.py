"""Params of the ``img2img`` live pipeline (cheap to import: no torch, no diffusers)."""

from __future__ import annotations

from pydantic import Field

from lpnode.live.pipeline import BaseParams

TINY_MODEL_ID = "lpnode/tiny-image-to-image"


class Img2ImgParams(BaseParams):
    """Unlike ai-runner's 384 px minimum, sizes go down to 64 px so the pipeline keeps up on a CPU."""

    width: int = Field(default=128, ge=64, le=1024, multiple_of=64, description="Output width in pixels.")
    height: int = Field(default=128, ge=64, le=1024, multiple_of=64, description="Output height in pixels.")
    prompt: str = Field(default="a watercolor painting", max_length=2000, description="What to turn frames into.")
    strength: float = Field(
        default=0.5, ge=0.05, le=1.0, description="How far from the input frame to go: 0 keeps it, 1 ignores it."
    )
    seed: int = Field(default=42, ge=0, description="Seed of the noise (fixed for a stream, for steady output).")
    model_id: str = Field(
        default=TINY_MODEL_ID,
        description="Stable Diffusion 1.5-architecture checkpoint in the models dir; changing it reloads.",
    )
