"""A tiny VITS (the MMS-TTS architecture) for text-to-speech: random weights, speaks noise.

``VitsModel`` + ``VitsTokenizer`` shrunk to about 0.2 MB, at 16 kHz like ``facebook/mms-tts-*``. The
tokenizer is character-level (no phonemizer, no uroman) over lower-case letters, digits, space and
common punctuation; other characters are dropped, as MMS-TTS tokenizers do. The vocoder upsamples
64x, so the noise lasts about as long as speech would (roughly 0.05-0.1 s per character). VITS draws
durations and noise at random: callers seed the generation.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

from . import _lazy
from ._registry import register, seeded

TEXT_TO_SPEECH_ID = "lpnode/tiny-text-to-speech"

PAD = "<pad>"  # id 0: also the blank VITS puts between characters
UNK = "<unk>"
CHARACTERS = " " + string.ascii_lowercase + string.digits + ".,!?;:'\"-()"


def vocab() -> dict[str, int]:
    return {token: i for i, token in enumerate([PAD, UNK, *CHARACTERS])}


def save_text_to_speech(folder: Path) -> None:
    """``VitsModel`` + ``VitsTokenizer`` (vocab.json), 16 kHz output."""
    transformers = _lazy.transformers()

    vocab_path = folder / "vocab.json"
    vocab_path.write_text(json.dumps(vocab(), indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    tokenizer = transformers.VitsTokenizer(
        str(vocab_path),
        pad_token=PAD,
        unk_token=UNK,
        add_blank=True,
        normalize=True,
        phonemize=False,  # True would need the phonemizer package and espeak
        is_uroman=False,
    )
    config = transformers.VitsConfig(
        vocab_size=len(vocab()),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        ffn_dim=32,
        flow_size=16,
        spectrogram_bins=33,
        upsample_initial_channel=16,
        upsample_rates=[8, 8],  # 64 samples per frame
        upsample_kernel_sizes=[16, 16],
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3]],
        duration_predictor_filter_channels=16,
        duration_predictor_num_flows=2,
        prior_encoder_num_flows=2,
        prior_encoder_num_wavenet_layers=2,
        posterior_encoder_num_wavenet_layers=2,
        depth_separable_num_layers=2,
        sampling_rate=16000,
        pad_token_id=0,
    )
    with seeded(f"{TEXT_TO_SPEECH_ID}/model"):
        model = transformers.VitsModel(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


register(
    TEXT_TO_SPEECH_ID,
    "text-to-speech",
    "VITS (MMS-TTS architecture), random weights, 16 kHz noise about as long as the text would take to say",
    save_text_to_speech,
)
