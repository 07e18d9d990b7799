"""A tiny random-weight ``StableDiffusionSafetyChecker`` with its image processor.

Like the real ``CompVis/stable-diffusion-safety-checker`` repo, one snapshot
holds both the model (``config.json`` + ``model.safetensors``) and the
``CLIPImageProcessor`` (``preprocessor_config.json``, 224 crop). Its concept
embeddings and thresholds are all ones, so the cosine-similarity scores are
never positive: it never flags an image, and pipelines keep their output.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from . import _lazy
from ._registry import register, seeded

SAFETY_CHECKER_ID = "lpnode/tiny-safety-checker"


def save_safety_checker(folder: Path) -> None:
    """Write the safety checker and its ``CLIPImageProcessor`` into ``folder``."""
    transformers = _lazy.transformers()
    module = importlib.import_module("diffusers.pipelines.stable_diffusion.safety_checker")

    config = transformers.CLIPConfig(
        text_config={
            "vocab_size": 100,
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            # CLIP's defaults (49406/49407) lie outside this vocab and warn at load.
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 224,  # pipelines feed the processor's 224 crop
            "patch_size": 32,
        },
        projection_dim=32,
    )
    with seeded(f"{SAFETY_CHECKER_ID}/model"):
        model = module.StableDiffusionSafetyChecker(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    transformers.CLIPImageProcessor().save_pretrained(folder)


register(
    SAFETY_CHECKER_ID,
    "",
    "StableDiffusionSafetyChecker + CLIPImageProcessor, random weights, never flags",
    save_safety_checker,
)
