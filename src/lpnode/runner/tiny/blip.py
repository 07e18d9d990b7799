"""Tiny random-weight BLIP captioner for image-to-text (``BlipForConditionalGeneration``).

The model is the real transformers class shrunk to about 0.2 MB: hidden size 32, two layers in the
vision and text towers, 32×32 input images in 8×8 patches. Its processor (``processor_config.json``
with the image processor embedded, plus ``tokenizer.json``) is what ``BlipProcessor.from_pretrained``
reads for a real checkpoint such as ``Salesforce/blip-image-captioning-large``.

The tokenizer is a ``BertTokenizer`` built offline from a small vocabulary: the BERT special tokens,
letters and digits, ``##`` continuation pieces and a few caption words, plus ``[DEC]`` as the bos
token BLIP's decoder starts from. Captions are noise; they are strings, which is all tests assert.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import _lazy
from ._registry import register, seeded

IMAGE_TO_TEXT_ID = "lpnode/tiny-image-to-text"

_HIDDEN = 32
_IMAGE_SIZE = 32
_MAX_POSITIONS = 128  # room for a prompt plus the pipeline's max_new_tokens

_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"
_WORDS = ("a", "an", "the", "of", "with", "on", "in", "photo", "picture", "image", "cat", "dog", "red", "blue")


def _tokenizer() -> Any:
    transformers = _lazy.transformers()

    tokens = [*_SPECIALS, *_CHARS, *(f"##{c}" for c in _CHARS), *_WORDS]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    tokenizer = transformers.BertTokenizer(vocab=vocab, model_max_length=_MAX_POSITIONS)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    return tokenizer


def _image_processor() -> Any:
    transformers = _lazy.transformers()
    # The PIL image processor: the default one wants torchvision and logs a fallback warning without
    # it. Both save the same processor_config.json ("BlipImageProcessor").
    cls = getattr(transformers, "BlipImageProcessorPil", None) or transformers.BlipImageProcessor
    return cls(size={"height": _IMAGE_SIZE, "width": _IMAGE_SIZE})


def save_image_to_text(folder: Path) -> None:
    transformers = _lazy.transformers()

    tokenizer = _tokenizer()
    text_config = transformers.BlipTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=_HIDDEN,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=_MAX_POSITIONS,
        encoder_hidden_size=_HIDDEN,  # cross-attends to the vision tower's hidden states
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.sep_token_id,
        sep_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision_config = transformers.BlipVisionConfig(
        hidden_size=_HIDDEN,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=_IMAGE_SIZE,  # must match the image processor's size
        patch_size=8,
    )
    config = transformers.BlipConfig(
        text_config=text_config.to_dict(), vision_config=vision_config.to_dict(), projection_dim=_HIDDEN
    )
    with seeded(f"{IMAGE_TO_TEXT_ID}/model"):
        model = transformers.BlipForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    processor = transformers.BlipProcessor(image_processor=_image_processor(), tokenizer=tokenizer)
    processor.save_pretrained(folder)


register(
    IMAGE_TO_TEXT_ID,
    "image-to-text",
    "BLIP captioner (BlipForConditionalGeneration + BlipProcessor), 32x32 input, ~0.2 MB",
    save_image_to_text,
)
