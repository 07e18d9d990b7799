"""A tiny chat LLM: a Llama-architecture causal LM with a byte-level BPE tokenizer trained on the spot
and a chat template, so the llm pipeline's real transformers path (chat template, generate,
streaming, stop criteria) runs offline in milliseconds. Its text is gibberish."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import _lazy
from ._registry import register, seeded

LLM_ID = "lpnode/tiny-llm"

_SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
_CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "livepeer runs open video and ai infrastructure on a network of orchestrators",
    "a gateway routes each request to an orchestrator that serves the model",
    "hello world, how are you today? i am fine, thank you.",
    "numbers 0 1 2 3 4 5 6 7 8 9 and punctuation ! ? . , ; : ' \" ( ) - _",
]


def _tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    transformers = _lazy.transformers()
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS * 20, trainer=trainer)
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<s>",
        eos_token="<|end|>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=512,
    )
    tokenizer.chat_template = _CHAT_TEMPLATE
    return tokenizer


def save_llm(folder: Path) -> None:
    transformers = _lazy.transformers()
    tokenizer = _tokenizer()
    end_id = tokenizer.convert_tokens_to_ids("<|end|>")
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=end_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with seeded(f"{LLM_ID}/model"):
        model = transformers.LlamaForCausalLM(config).eval()
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[end_id, tokenizer.convert_tokens_to_ids("</s>")],
        pad_token_id=tokenizer.pad_token_id,
        do_sample=True,
        temperature=0.7,
        max_new_tokens=32,
    )
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


register(LLM_ID, "llm", "Llama-architecture chat model with a chat template, random weights", save_llm)
