"""A tiny CLIP BPE tokenizer built offline (no download).

The vocabulary is the 256 byte-level symbols, the same 256 with the ``</w>``
end-of-word suffix, the tokens made by merging a short word list letter by
letter, then ``<|startoftext|>`` and ``<|endoftext|>`` (which is also unk and
pad). It behaves like the real ``openai/clip-vit-large-patch14`` tokenizer:
lower-cases, pads and truncates to ``model_max_length`` (77), and wraps the
ids in bos/eos, but its vocabulary has about 540 entries instead of 49,408.
"""

from __future__ import annotations

from typing import Any

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"

# Words that get whole-word tokens; anything else falls back to byte symbols.
_WORDS = (
    *("a", "an", "the", "of", "and", "in", "on", "with", "to", "at", "by", "for"),
    *("is", "it", "this", "that", "photo", "picture", "image", "painting"),
    *("drawing", "portrait", "landscape", "cat", "dog", "bird", "horse", "car"),
    *("house", "tree", "flower", "city", "street", "forest", "mountain", "river"),
    *("sea", "sky", "sun", "moon", "night", "day", "light", "red", "green", "blue"),
    *("white", "black", "astronaut", "riding", "beautiful", "high", "quality"),
    *("detailed", "make", "turn", "into", "style"),
)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte to printable-unicode table (256 entries)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The vocabulary and merge list of the tiny CLIP tokenizer."""
    symbols = list(bytes_to_unicode().values())
    tokens: list[str] = symbols + [s + "</w>" for s in symbols]
    merges: list[tuple[str, str]] = []
    seen_tokens = set(tokens)
    seen_merges: set[tuple[str, str]] = set()
    for word in _WORDS:
        pieces = list(word)
        pieces[-1] += "</w>"
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            merged = pair[0] + pair[1]
            if pair not in seen_merges:
                seen_merges.add(pair)
                merges.append(pair)
            if merged not in seen_tokens:
                seen_tokens.add(merged)
                tokens.append(merged)
            pieces = [merged, *pieces[2:]]
    tokens += [BOS, EOS]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def clip_tokenizer(model_max_length: int = 77, pad_token: str = EOS) -> Any:
    """A ``transformers.CLIPTokenizer`` with the tiny vocabulary.

    ``pad_token`` may be set to ``"!"`` to mimic SDXL's second tokenizer.
    """
    from ._lazy import transformers

    vocab, merges = clip_vocab_and_merges()
    return transformers().CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=EOS,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=pad_token,
        model_max_length=model_max_length,
    )
