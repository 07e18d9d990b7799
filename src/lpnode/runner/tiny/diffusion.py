"""Tiny random-weight diffusers pipelines: SD1.5, instruct-pix2pix, SDXL, x4 upscale, SVD.

Every builder constructs the real diffusers/transformers classes shrunk to a
few hundred kilobytes and saves them with ``save_pretrained``, so the snapshot
loads through the same ``from_pretrained`` path as a real checkpoint. Sizing
rules that keep them loadable and runnable: ``norm_num_groups`` 4 where the
class has the argument (tiny channel counts), multiples of 32 where GroupNorm
is hard-coded (the SVD UNet), CLIP text ``max_position_embeddings`` equal to
the tokenizer's 77, and CLIP image size 224 wherever a pipeline resizes to 224
before the image encoder.

diffusers and transformers are imported inside the builders, so importing this
module (and listing the registry) stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import _lazy
from ._registry import register, seeded
from ._tokenizers import clip_tokenizer
from .safety_checker import SAFETY_CHECKER_ID

TEXT_TO_IMAGE_ID = "lpnode/tiny-text-to-image"
IMAGE_TO_IMAGE_ID = "lpnode/tiny-image-to-image"
INSTRUCT_PIX2PIX_ID = "lpnode/tiny-instruct-pix2pix"
SDXL_TURBO_ID = "lpnode/tiny-sdxl-turbo"
UPSCALE_ID = "lpnode/tiny-upscale"
IMAGE_TO_VIDEO_ID = "lpnode/tiny-image-to-video"

_HIDDEN = 32  # hidden size of every tiny CLIP text/vision encoder

# Stable Diffusion's beta schedule, shared by the SD1.5/SDXL schedulers.
_SD_BETAS: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
}


# --- components ---------------------------------------------------------------


def _clip_text_encoder(key: str, tokenizer: Any, *, with_projection: bool = False) -> Any:
    transformers = _lazy.transformers()

    config = transformers.CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=_HIDDEN,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=_HIDDEN,
        # Must cover the tokenizer's model_max_length: pipelines pad prompts to it.
        max_position_embeddings=tokenizer.model_max_length,
        # The pooled output is read at eos_token_id, so these must be the real ids.
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    cls = transformers.CLIPTextModelWithProjection if with_projection else transformers.CLIPTextModel
    with seeded(key):
        return cls(config).eval()


def _clip_vision_encoder(key: str) -> Any:
    transformers = _lazy.transformers()

    config = transformers.CLIPVisionConfig(
        hidden_size=_HIDDEN,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=_HIDDEN,
        image_size=224,  # SVD resizes PIL input to 224x224 itself
        patch_size=32,  # 7x7 patches keep it tiny
    )
    with seeded(key):
        return transformers.CLIPVisionModelWithProjection(config).eval()


def _unet_2d(key: str, **overrides: Any) -> Any:
    diffusers = _lazy.diffusers()

    kwargs: dict[str, Any] = {
        "sample_size": 32,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": (8, 16),
        "layers_per_block": 1,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        "cross_attention_dim": _HIDDEN,
        "attention_head_dim": 4,
        "norm_num_groups": 4,  # must divide every channel count
    }
    kwargs.update(overrides)
    with seeded(key):
        return diffusers.UNet2DConditionModel(**kwargs).eval()


def _vae(key: str, block_out_channels: tuple[int, ...], **overrides: Any) -> Any:
    """An ``AutoencoderKL``; its scale factor is 2 ** (len(block_out_channels) - 1)."""
    diffusers = _lazy.diffusers()

    n = len(block_out_channels)
    kwargs: dict[str, Any] = {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * n,
        "up_block_types": ("UpDecoderBlock2D",) * n,
        "block_out_channels": block_out_channels,
        "latent_channels": 4,
        "layers_per_block": 1,
        "norm_num_groups": 4,
        "sample_size": 64,
    }
    kwargs.update(overrides)
    with seeded(key):
        return diffusers.AutoencoderKL(**kwargs).eval()


def _pndm() -> Any:
    diffusers = _lazy.diffusers()

    return diffusers.PNDMScheduler(
        **_SD_BETAS,
        skip_prk_steps=True,
        steps_offset=1,  # 0 triggers a deprecation warning at load
        set_alpha_to_one=False,
    )


def _save(pipe: Any, folder: Path) -> None:
    pipe.save_pretrained(folder, safe_serialization=True)


# --- pipelines ----------------------------------------------------------------


def _sd15_components(model_id: str, *, unet_in_channels: int = 4) -> dict[str, Any]:
    tokenizer = clip_tokenizer()
    return {
        "vae": _vae(f"{model_id}/vae", (8, 16)),
        "text_encoder": _clip_text_encoder(f"{model_id}/text_encoder", tokenizer),
        "tokenizer": tokenizer,
        "unet": _unet_2d(f"{model_id}/unet", in_channels=unet_in_channels),
    }


def _save_sd15(model_id: str, folder: Path) -> None:
    diffusers = _lazy.diffusers()

    pipe = diffusers.StableDiffusionPipeline(
        **_sd15_components(model_id),
        scheduler=_pndm(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    _save(pipe, folder)


def save_text_to_image(folder: Path) -> None:
    """SD1.5-style ``StableDiffusionPipeline``; default output 64x64."""
    _save_sd15(TEXT_TO_IMAGE_ID, folder)


def save_image_to_image(folder: Path) -> None:
    """Same architecture as text-to-image; served with ``AutoPipelineForImage2Image``."""
    _save_sd15(IMAGE_TO_IMAGE_ID, folder)


def save_instruct_pix2pix(folder: Path) -> None:
    """``StableDiffusionInstructPix2PixPipeline``: UNet takes noise + image latents (8 ch)."""
    diffusers = _lazy.diffusers()

    pipe = diffusers.StableDiffusionInstructPix2PixPipeline(
        **_sd15_components(INSTRUCT_PIX2PIX_ID, unet_in_channels=8),
        scheduler=diffusers.EulerAncestralDiscreteScheduler(**_SD_BETAS),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    _save(pipe, folder)


def save_sdxl_turbo(folder: Path) -> None:
    """SDXL: two text encoders, ``text_time`` added conditioning, trailing Euler."""
    diffusers = _lazy.diffusers()

    mid = SDXL_TURBO_ID
    tokenizer = clip_tokenizer()
    tokenizer_2 = clip_tokenizer(pad_token="!")  # as in SDXL's second tokenizer
    time_embed_dim = 8
    unet = _unet_2d(
        f"{mid}/unet",
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        transformer_layers_per_block=(1, 1),
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        # 6 micro-conditioning values (sizes, crop, target) + pooled text embeds
        projection_class_embeddings_input_dim=6 * time_embed_dim + _HIDDEN,
        cross_attention_dim=2 * _HIDDEN,  # both encoders' hidden states concatenated
    )
    pipe = diffusers.StableDiffusionXLPipeline(
        # force_upcast only matters in fp16; off, SDXL img2img skips a noisy
        # "modules ... should be kept in float32" log on every call.
        vae=_vae(f"{mid}/vae", (8, 16), scaling_factor=0.13025, force_upcast=False),
        text_encoder=_clip_text_encoder(f"{mid}/text_encoder", tokenizer),
        text_encoder_2=_clip_text_encoder(f"{mid}/text_encoder_2", tokenizer_2, with_projection=True),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=diffusers.EulerDiscreteScheduler(**_SD_BETAS, timestep_spacing="trailing"),
        add_watermarker=False,
    )
    _save(pipe, folder)


def save_upscale(folder: Path) -> None:
    """``StableDiffusionUpscalePipeline``: 3-block VAE, so the output is 4x the input."""
    diffusers = _lazy.diffusers()

    mid = UPSCALE_ID
    tokenizer = clip_tokenizer()
    upscaler_betas: dict[str, Any] = {
        "num_train_timesteps": 1000,
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "beta_schedule": "scaled_linear",
    }
    pipe = diffusers.StableDiffusionUpscalePipeline(
        vae=_vae(f"{mid}/vae", (8, 8, 16), scaling_factor=0.08333),
        text_encoder=_clip_text_encoder(f"{mid}/text_encoder", tokenizer),
        tokenizer=tokenizer,
        unet=_unet_2d(
            f"{mid}/unet",
            sample_size=16,
            in_channels=7,  # 4 latents + 3 low-res RGB
            use_linear_projection=True,
            num_class_embeds=1000,  # noise-level embedding; > max_noise_level used
        ),
        low_res_scheduler=diffusers.DDPMScheduler(**upscaler_betas),
        scheduler=diffusers.DDIMScheduler(
            **upscaler_betas,
            prediction_type="v_prediction",
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
        ),
        max_noise_level=350,
    )
    _save(pipe, folder)


def save_image_to_video(folder: Path) -> None:
    """``StableVideoDiffusionPipeline``; 4 frames by default.

    Callers must pass a small ``height``/``width``: when omitted the pipeline
    uses its own constants, 576x1024, not the config.
    """
    diffusers = _lazy.diffusers()
    transformers = _lazy.transformers()

    mid = IMAGE_TO_VIDEO_ID
    time_embed_dim = 8
    with seeded(f"{mid}/unet"):
        # GroupNorm is hard-coded to 32 groups here: channels must be 32-multiples.
        unet = diffusers.UNetSpatioTemporalConditionModel(
            sample_size=16,
            in_channels=8,  # noise latents + conditioning-image latents
            out_channels=4,
            down_block_types=(
                "CrossAttnDownBlockSpatioTemporal",
                "DownBlockSpatioTemporal",
            ),
            up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
            block_out_channels=(32, 32),
            layers_per_block=1,
            cross_attention_dim=_HIDDEN,  # image encoder projection_dim
            num_attention_heads=(2, 2),
            addition_time_embed_dim=time_embed_dim,
            # fps, motion bucket and noise augmentation, 8 each
            projection_class_embeddings_input_dim=3 * time_embed_dim,
            num_frames=4,
        ).eval()
    with seeded(f"{mid}/vae"):
        vae = diffusers.AutoencoderKLTemporalDecoder(
            down_block_types=("DownEncoderBlock2D",) * 3,
            block_out_channels=(32, 32, 32),
            latent_channels=4,
            layers_per_block=1,
            sample_size=64,
        ).eval()
    scheduler = diffusers.EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="v_prediction",
        timestep_type="continuous",
        use_karras_sigmas=True,
        sigma_max=700.0,
        sigma_min=0.002,
        interpolation_type="linear",
        timestep_spacing="leading",
        steps_offset=1,
    )
    pipe = diffusers.StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=_clip_vision_encoder(f"{mid}/image_encoder"),
        unet=unet,
        scheduler=scheduler,
        feature_extractor=transformers.CLIPImageProcessor(),  # 224, as the real SVD repo
    )
    _save(pipe, folder)


_SC = (SAFETY_CHECKER_ID,)
LORA_ID = "lpnode/tiny-lora"  # built by the lora module

register(
    TEXT_TO_IMAGE_ID,
    "text-to-image",
    "SD1.5-style StableDiffusionPipeline, random weights, 64x64 by default",
    save_text_to_image,
    needs=(*_SC, LORA_ID),
)
register(
    SDXL_TURBO_ID,
    "text-to-image",
    "SDXL-style pipeline (2 text encoders, trailing Euler), random weights, 64x64",
    save_sdxl_turbo,
    needs=_SC,
)
register(
    IMAGE_TO_IMAGE_ID,
    "image-to-image",
    "SD1.5-style pipeline for AutoPipelineForImage2Image, random weights",
    save_image_to_image,
    needs=(*_SC, LORA_ID),
)
register(
    INSTRUCT_PIX2PIX_ID,
    "image-to-image",
    "StableDiffusionInstructPix2PixPipeline (8-channel UNet), random weights",
    save_instruct_pix2pix,
    needs=_SC,
)
register(
    UPSCALE_ID,
    "upscale",
    "StableDiffusionUpscalePipeline, random weights, 4x (32x32 in, 128x128 out)",
    save_upscale,
    needs=_SC,
)
register(
    IMAGE_TO_VIDEO_ID,
    "image-to-video",
    "StableVideoDiffusionPipeline, random weights, 4 frames by default",
    save_image_to_video,
    needs=_SC,
)
