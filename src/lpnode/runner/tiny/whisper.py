"""A tiny "scripted" Whisper for audio-to-text: it transcribes any audio as `` hello world``.

A random-weight Whisper emits junk and wanders through the long-form decoding loop for seconds; this one
is wired so its output is fixed, which lets tests assert on text and timestamps. The decoder ignores
its inputs: the output projections of every decoder block (self-attention, cross-attention, MLP) and the
token embeddings are zero, so the hidden state at position ``p`` is just the learned position embedding
``e_p`` (a unit vector). ``proj_out`` maps ``e_p`` to the token ``SCRIPT[p]``, so the decoder always
says, after ``<|startoftranscript|>``::

    <|en|> <|transcribe|> <|0.00|> Ġhello Ġworld <|1.00|> <|endoftext|>

Language detection reads position 0 (``<|en|>``); with timestamps off the prompt ends in
``<|notimestamps|>`` at position 3 and the text still follows. Cross-attention weights exist (eager
attention), so word-level timestamps work too. The encoder is a real, random 2-layer Whisper encoder;
its output is computed and ignored.

The tokenizer is byte-level BPE with just enough merges for ``Ġhello`` and ``Ġworld``, then
``<|endoftext|>``, the Whisper special tokens ending with ``<|notimestamps|>``, then the 1,501
timestamp tokens as *non-special* tokens (the decoder finds the first timestamp id both as
``<|notimestamps|>`` + 1 and as the last special id + 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import _lazy
from ._registry import register, seeded
from ._tokenizers import bytes_to_unicode

AUDIO_TO_TEXT_ID = "lpnode/tiny-audio-to-text"

EOT = "<|endoftext|>"
SCRIPT = ("<|en|>", "<|transcribe|>", "<|0.00|>", "Ġhello", "Ġworld", "<|1.00|>", EOT)
_WORDS = ("hello", "world")
_D_MODEL = 32  # must be at least len(SCRIPT): position p is the unit vector e_p


def _special_tokens() -> list[str]:
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return [
        "<|startoftranscript|>",
        *(f"<|{code}|>" for code in LANGUAGES),
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",  # must be the last special token, right before the timestamps
    ]


def _tokenizer() -> Any:
    transformers = _lazy.transformers()

    vocab = {symbol: i for i, symbol in enumerate(bytes_to_unicode().values())}
    merges: list[tuple[str, str]] = []
    for word in _WORDS:
        pieces = ["Ġ", *word]
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            if pair not in merges:
                merges.append(pair)
            vocab.setdefault(pair[0] + pair[1], len(vocab))
            pieces = [pair[0] + pair[1], *pieces[2:]]
    vocab[EOT] = len(vocab)
    tokenizer = transformers.WhisperTokenizer(vocab=vocab, merges=merges, pad_token=EOT)
    added = transformers.AddedToken
    specials = [added(t, special=True, normalized=False) for t in _special_tokens()]
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    stamps = [added(f"<|{i * 0.02:.2f}|>", special=False, normalized=False) for i in range(1501)]
    tokenizer.add_tokens(stamps)
    return tokenizer


def _generation_config(tokenizer: Any) -> Any:
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    ids = tokenizer.convert_tokens_to_ids
    eot = ids(EOT)
    return _lazy.transformers().GenerationConfig(
        decoder_start_token_id=ids("<|startoftranscript|>"),
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        is_multilingual=True,
        lang_to_id={f"<|{code}|>": ids(f"<|{code}|>") for code in LANGUAGES},
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        no_timestamps_token_id=ids("<|notimestamps|>"),
        prev_sot_token_id=ids("<|startofprev|>"),
        max_initial_timestamp_index=50,
        alignment_heads=[[1, 0], [1, 1]],  # (decoder layer, head) pairs used for word timestamps
        begin_suppress_tokens=[ids("Ġ"), eot],
        suppress_tokens=[],
        max_length=448,
        # As real Whisper configs have: without it the prompt gets no task token.
        forced_decoder_ids=[[1, None], [2, ids("<|transcribe|>")]],
    )


def _script_weights(model: Any, tokenizer: Any) -> None:
    """Make the decoder ignore its inputs and say SCRIPT, one token per position."""
    import torch

    decoder = model.model.decoder
    script_ids = tokenizer.convert_tokens_to_ids(list(SCRIPT))
    with torch.no_grad():
        decoder.embed_tokens.weight.zero_()
        for layer in decoder.layers:
            for module in (layer.self_attn.out_proj, layer.encoder_attn.out_proj, layer.fc2):
                module.weight.zero_()
                if module.bias is not None:
                    module.bias.zero_()
        positions = decoder.embed_positions.weight
        positions.zero_()
        last = len(SCRIPT) - 1
        for p in range(positions.shape[0]):
            positions[p, min(p, last)] = 1.0  # positions past the script repeat its last entry (eot)
        model.proj_out.weight.zero_()
        for p, token_id in enumerate(script_ids):
            model.proj_out.weight[token_id, p] = 10.0


def save_audio_to_text(folder: Path) -> None:
    """``WhisperForConditionalGeneration`` + ``WhisperProcessor`` that always say " hello world"."""
    transformers = _lazy.transformers()

    tokenizer = _tokenizer()
    eot = tokenizer.convert_tokens_to_ids(EOT)
    sot = tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
    config = transformers.WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=80,
        d_model=_D_MODEL,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=1500,  # fixed: the encoder takes exactly 3000 mel frames (30 s)
        max_target_positions=448,
        decoder_start_token_id=sot,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        begin_suppress_tokens=[tokenizer.convert_tokens_to_ids("Ġ"), eot],
        suppress_tokens=[],
        tie_word_embeddings=False,  # proj_out must not share weights with the token embeddings
    )
    with seeded(f"{AUDIO_TO_TEXT_ID}/model"):
        model = transformers.WhisperForConditionalGeneration(config).eval()
    _script_weights(model, tokenizer)
    model.generation_config = _generation_config(tokenizer)
    processor = transformers.WhisperProcessor(
        feature_extractor=transformers.WhisperFeatureExtractor(feature_size=80),
        tokenizer=tokenizer,
    )
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)


register(
    AUDIO_TO_TEXT_ID,
    "audio-to-text",
    'Whisper (2+2 layers) wired to transcribe any audio as " hello world", with timestamps',
    save_audio_to_text,
)
