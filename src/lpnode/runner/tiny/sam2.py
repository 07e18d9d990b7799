"""Tiny random-weight SAM2 for segment-anything-2 (transformers ``Sam2Model``).

The real architecture (Hiera backbone, FPN neck, prompt encoder, two-way mask decoder) shrunk to
about 0.9 MB, following the sizes of transformers' own SAM2 tests: 128×128 model input, stage widths
12/24/48/96, a 32-wide FPN and decoder. Low-resolution masks are 32×32 (input/4), where the real
``facebook/sam2-hiera-large-hf`` has 1024 and 256.

Only ``config.json`` and ``model.safetensors`` are written. The serving pipeline does its own pre- and
post-processing (``Sam2Processor`` needs torchvision) and reads the model's input size from the config
(``prompt_encoder_config.image_size``), so no processor files are needed.
"""

from __future__ import annotations

from pathlib import Path

from . import _lazy
from ._registry import register, seeded

SEGMENT_ANYTHING_2_ID = "lpnode/tiny-segment-anything-2"

_IMAGE_SIZE = 128
_HIDDEN = 32


def save_segment_anything_2(folder: Path) -> None:
    transformers = _lazy.transformers()

    stage_dims = [12, 24, 48, 96]
    backbone = transformers.Sam2HieraDetConfig(
        hidden_size=stage_dims[0],
        image_size=_IMAGE_SIZE,
        patch_stride=4,
        patch_kernel_size=7,
        patch_padding=3,
        blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=stage_dims,
        num_attention_heads_per_stage=[1, 1, 2, 2],
        global_attention_blocks=[3],
    )
    vision = transformers.Sam2VisionConfig(
        backbone_config=backbone.to_dict(),
        backbone_channel_list=stage_dims[::-1],
        # Feature maps at input/4, /8 and /16.
        backbone_feature_sizes=[[_IMAGE_SIZE // s] * 2 for s in (4, 8, 16)],
        fpn_hidden_size=_HIDDEN,
    )
    prompt_encoder = transformers.Sam2PromptEncoderConfig(
        hidden_size=_HIDDEN, image_size=_IMAGE_SIZE, patch_size=16, mask_input_channels=8
    )
    mask_decoder = transformers.Sam2MaskDecoderConfig(
        hidden_size=_HIDDEN, mlp_dim=64, num_attention_heads=4, iou_head_hidden_dim=_HIDDEN
    )
    config = transformers.Sam2Config(
        vision_config=vision.to_dict(),
        prompt_encoder_config=prompt_encoder.to_dict(),
        mask_decoder_config=mask_decoder.to_dict(),
    )
    with seeded(f"{SEGMENT_ANYTHING_2_ID}/model"):
        model = transformers.Sam2Model(config).eval()
    model.save_pretrained(folder)


register(
    SEGMENT_ANYTHING_2_ID,
    "segment-anything-2",
    "SAM2 segmenter (transformers Sam2Model), 128x128 model input, ~0.9 MB",
    save_segment_anything_2,
)
