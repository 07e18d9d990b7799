"""A tiny LoRA adapter for the SD1.5-style tiny models, so the ``loras`` field can be tried offline.

It targets the attention projections of the tiny UNet (the architecture of ``lpnode/tiny-text-to-image``
and ``lpnode/tiny-image-to-image``) and is saved with diffusers' ``save_lora_weights`` as
``pytorch_lora_weights.safetensors``, the file name real LoRA repos use.
"""

from __future__ import annotations

from pathlib import Path

from . import _lazy
from ._registry import register, seeded
from .diffusion import LORA_ID, _unet_2d


def save_lora(folder: Path) -> None:
    import torch
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    diffusers = _lazy.diffusers()
    unet = _unet_2d(f"{LORA_ID}/base")
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    with seeded(f"{LORA_ID}/weights"), torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_" in name:
                # peft starts lora_B at zero (no effect); give both halves weights so the adapter shows.
                param.normal_(0.0, 0.5)
    layers = diffusers.utils.convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    diffusers.StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=layers, safe_serialization=True)


register(LORA_ID, "", "LoRA adapter (rank 4) for the SD1.5-style tiny models, random weights", save_lora)
